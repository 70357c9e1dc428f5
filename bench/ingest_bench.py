#!/usr/bin/env python3
"""Ingest benchmark: drives the real collector with the fleet simulator on this machine.

For 100 and 1,000 concurrent agents it runs
  * an open-loop run at the target rate (default 50,000 reports/s), and
  * a saturation run (offered load far above capacity) for peak throughput,
and prints durable reports/s (committed, then acknowledged) and ack latency
p50/p99, as the simulator saw it and as the collector measured it. Every run
checks that the store holds exactly the acknowledged reports.

Prints figures; asserts no timings (DESIGN §5 bar: >= 50k reports/s with
ack p99 <= 50 ms at 1,000 agents, 2 cores, load generator on the same box).
"""
import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time


def make_cert(work):
    cert, key = os.path.join(work, "c.crt"), os.path.join(work, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def process_cpu_seconds(pid):
    """User + system CPU a process has used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_tokens(bin_dir, work, db):
    """A token for customer Bench in the store at `db`; returns the simulator's tokens file."""
    collector = os.path.join(bin_dir, "collector", "deskpulse-collector")
    token = subprocess.run([collector, "token", "create", "--db", db, "--customer", "Bench"],
                           capture_output=True, text=True, check=True).stdout.strip()
    tokens = os.path.join(work, "tokens.txt")
    with open(tokens, "w") as f:
        f.write(f"Bench {token} typical\n")
    return tokens


def start_collector(bin_dir, work, db, tls_args):
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "collector.log"), "w")
    proc = subprocess.Popen([os.path.join(bin_dir, "collector", "deskpulse-collector"), "serve",
                             "--db", db, "--listen", "127.0.0.1:0", "--port-file", port_file,
                             *tls_args],
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(300):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, log, int(open(port_file).read())
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    log.close()
    with open(log.name) as f:
        raise RuntimeError("collector did not start: " + f.read()[-2000:])


def collector_ack_latency(log_path):
    text = open(log_path).read()
    m = re.search(r"ack latency at the collector .*?p50 ([\d.]+) ms p99 ([\d.]+) ms", text)
    w = re.search(r"writer: commit p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms; "
                  r"([\d.]+) reports per group", text)
    return ({"p50": float(m.group(1)), "p99": float(m.group(2))} if m else None,
            {"commit_p50_ms": float(w.group(1)), "commit_p99_ms": float(w.group(2)),
             "commit_max_ms": float(w.group(3)), "reports_per_group": float(w.group(4))}
            if w else None)


def run(bin_dir, agents, rate, seconds, batch, linger_ms, tls, config=None):
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as work:
        db = os.path.join(work, "bench.db")
        tokens = make_tokens(bin_dir, work, db)
        server_tls, client_tls = [], []
        if tls:
            cert, key = make_cert(work)
            server_tls, client_tls = ["--tls-cert", cert, "--tls-key", key], ["--ca", cert]
        catalog = os.path.join(work, "catalog.sqlite")
        subprocess.run([os.path.join(bin_dir, "collector", "deskpulse-catalog"), "build", "--out",
                        catalog], capture_output=True, text=True, check=True)
        if config:
            server_tls = [*server_tls, "--config", os.path.abspath(config)]
        proc, log, port = start_collector(bin_dir, work, db, server_tls)
        sim = subprocess.run(
            [os.path.join(bin_dir, "agent", "deskpulse-fleetsim"), "--collector",
             f"127.0.0.1:{port}", "--tokens", tokens, "--catalog", catalog,
             "--endpoints", str(agents),
             "--duration", str(seconds), "--rate", str(rate), "--batch", str(batch),
             "--linger", str(linger_ms), "--window", "4", "--timeout", str(seconds + 120),
             "--log-level", "warn", *client_tls], capture_output=True, text=True)
        cpu_s = process_cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        log.close()
        summary = json.loads(sim.stdout.strip().splitlines()[-1])
        con = sqlite3.connect(db)
        stored = con.execute("SELECT count(*) FROM reports").fetchone()[0]
        con.close()
        at_collector, writer = collector_ack_latency(os.path.join(work, "collector.log"))
        return {
            "agents": agents, "offered_per_s": rate, "seconds": seconds,
            "durable_per_s": summary["acked_per_s"],
            "acked": summary["reports_acked"], "stored": stored,
            "exactly_once": stored == summary["reports_acked"] and rc == 0 and sim.returncode == 0,
            "ack_ms_simulator": summary["ack_latency_ms"],
            "ack_ms_collector": at_collector, "writer": writer,
            "collector_cpu_us_per_report": cpu_s * 1e6 / max(stored, 1),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--rate", type=int, default=50000, help="target reports/s for the open-loop run")
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--agents", default="100,1000")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--tls", action="store_true", help="agents connect over TLS")
    ap.add_argument("--no-saturation", action="store_true", help="skip the saturation runs")
    ap.add_argument("--collector-config", help="serve the collector with this TOML config")
    args = ap.parse_args()

    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"deskpulse ingest benchmark: {os.cpu_count()} cores ({cpu}); collector and simulator "
          f"on this machine; SQLite WAL, synchronous=FULL (fsync per group commit); "
          f"{'TLS' if args.tls else 'plain TCP on loopback'}")
    results = []
    for agents in [int(a) for a in args.agents.split(",")]:
        runs = [("target", args.rate)] + ([] if args.no_saturation else
                                          [("saturation", args.rate * 4)])
        for label, rate in runs:
            r = run(args.bin, agents, rate, args.seconds, batch=100, linger_ms=100, tls=args.tls,
                    config=args.collector_config)
            r["run"] = label
            results.append(r)
            sim, col = r["ack_ms_simulator"], r["ack_ms_collector"] or {}
            print(f"  {agents:>5} agents  {label:<10} offered {rate:>7}/s  durable "
                  f"{r['durable_per_s']:>8.0f} reports/s  ack p50 {sim['p50']:>6.1f} ms  "
                  f"p99 {sim['p99']:>6.1f} ms (collector: p50 {col.get('p50', float('nan')):.1f} "
                  f"p99 {col.get('p99', float('nan')):.1f})  collector CPU "
                  f"{r['collector_cpu_us_per_report']:.1f} us/report  "
                  f"stored==acked: {r['exactly_once']}",
                  flush=True)
    print("bar (DESIGN §5): >= 50,000 reports/s committed then acked, ack p99 <= 50 ms at 1,000 "
          "agents")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["exactly_once"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
