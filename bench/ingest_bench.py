#!/usr/bin/env python3
"""Ingest benchmark: drives the real collector with the fleet simulator on this machine.

For 100 and 1,000 concurrent agents it runs
  * an open-loop run at the target rate (default 50,000 reports/s), and
  * a saturation run (offered load far above capacity) for peak throughput,
and prints durable reports/s (committed, then acknowledged) and ack latency
p50/p99, as the simulator saw it and as the collector measured it. Every run
checks that the store holds exactly the acknowledged reports.

With --db postgresql://... (a server; each run gets a fresh database on it)
the same runs go to one and to two collectors sharing PostgreSQL, next to the
embedded SQLite store in the same run. --postgres starts a throwaway cluster
for that (tests/fakes/pg_cluster.sh).

Prints figures; asserts no timings (docs/quality.md bars: SQLite >= 50k
reports/s with ack p99 <= 50 ms at 1,000 agents; PostgreSQL >= 25k with p99
<= 100 ms; 2 cores, load generator and database on the same box).
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
import threading
import time

import tool_version


def make_cert(work):
    cert, key = os.path.join(work, "c.crt"), os.path.join(work, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def load_flags():
    """The simulator's load every ingest figure is measured under: batches of up to 100
    reports, each waiting up to 100 ms to fill, 4 in flight per agent. (Agents in the field
    send as soon as a report is made, one a minute; 50 a second each, as here, fill batches.)"""
    return ["--batch", "100", "--linger", "100", "--window", "4"]


def process_cpu_seconds(pid):
    """User + system CPU a process has used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def psql(uri, sql):
    r = subprocess.run(["psql", uri, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("psql: " + r.stderr.strip())
    return r.stdout.strip()


_databases = 0


def new_pg_database(server_uri):
    global _databases
    _databases += 1
    name = f"bench_{os.getpid()}_{_databases}"
    psql(server_uri, f"DROP DATABASE IF EXISTS {name}")
    psql(server_uri, f"CREATE DATABASE {name}")
    base, _, rest = server_uri.partition("?")
    base = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{base}/{name}" + (f"?{rest}" if rest else "")


def count_stored(db):
    if db.startswith(("postgresql://", "postgres://")):
        return int(psql(db, "SELECT count(*) FROM reports"))
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM reports").fetchone()[0]
    finally:
        con.close()


def make_tokens(bin_dir, work, db):
    """A token for customer Bench in the store at `db`; returns the simulator's tokens file."""
    collector = os.path.join(bin_dir, "collector", "deskpulse-collector")
    token = subprocess.run([collector, "token", "create", "--db", db, "--customer", "Bench"],
                           capture_output=True, text=True, check=True).stdout.strip()
    tokens = os.path.join(work, "tokens.txt")
    with open(tokens, "w") as f:
        f.write(f"Bench {token} typical\n")
    return tokens


def start_collector(bin_dir, work, db, tls_args, name="collector"):
    port_file = os.path.join(work, f"{name}.port")
    log = open(os.path.join(work, f"{name}.log"), "w")
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


class DirtySampler:
    """The kernel's dirty and under-writeback page cache, once a second."""

    def __init__(self):
        self.samples = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._done.wait(1.0):
            kb = 0
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith(("Dirty:", "Writeback:")):
                        kb += int(line.split()[1])
            self.samples.append(kb / 1024)

    def stop(self):
        self._done.set()
        self._thread.join()


def progress_flags(bin_dir):
    """--progress when this simulator has it (an older build, compared side by side, may not)."""
    sim = os.path.join(bin_dir, "agent", "deskpulse-fleetsim")
    usage = subprocess.run([sim, "--help"], capture_output=True, text=True).stdout
    return ["--progress", "1"] if "--progress" in usage else []


def tail_over_time(r, step=10):
    """Each `step` seconds of the run: the worst interval p99 and the most dirty page cache."""
    parts = []
    for start in range(0, int(r["seconds"]), step):
        p99 = [p["ack_ms"]["p99"] for p in r["series"] if start <= p["t_s"] < start + step]
        dirty = r["dirty_mb"][start:start + step]
        if p99:
            parts.append(f"{start}-{start + step}s p99 {max(p99):.0f} ms"
                         f" (dirty {max(dirty) if dirty else 0:.0f} MB)")
    return "; ".join(parts)


def run(bin_dir, agents, rate, seconds, tls, config=None, pg_server=None, collectors=1):
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as work:
        db = new_pg_database(pg_server) if pg_server else os.path.join(work, "bench.db")
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
        started = [start_collector(bin_dir, work, db, server_tls, f"collector{i}")
                   for i in range(collectors)]
        addresses = ",".join(f"127.0.0.1:{port}" for _, _, port in started)
        dirty = DirtySampler()
        sim = subprocess.run(
            [os.path.join(bin_dir, "agent", "deskpulse-fleetsim"), "--collector", addresses,
             "--tokens", tokens, "--catalog", catalog,
             "--endpoints", str(agents),
             "--duration", str(seconds), "--rate", str(rate), *load_flags(),
             "--timeout", str(seconds + 120),
             *progress_flags(bin_dir), "--log-level", "warn", *client_tls], capture_output=True,
            text=True)
        dirty.stop()
        cpu_s = sum(process_cpu_seconds(proc.pid) for proc, _, _ in started)
        rcs = []
        for proc, log, _ in started:
            proc.send_signal(signal.SIGTERM)
        for proc, log, _ in started:
            rcs.append(proc.wait(timeout=120))
            log.close()
        summary = json.loads(sim.stdout.strip().splitlines()[-1])
        series = [json.loads(line) for line in sim.stderr.splitlines()
                  if '"t_s"' in line]
        stored = count_stored(db)
        at_collector = [collector_ack_latency(os.path.join(work, f"collector{i}.log"))[0]
                        for i in range(collectors)]
        writer = collector_ack_latency(os.path.join(work, "collector0.log"))[1]
        return {
            "backend": "postgresql" if pg_server else "sqlite", "collectors": collectors,
            "agents": agents, "offered_per_s": rate, "seconds": seconds,
            "durable_per_s": summary["acked_per_s"],
            "acked": summary["reports_acked"], "stored": stored,
            "exactly_once": stored == summary["reports_acked"] and all(rc == 0 for rc in rcs)
            and sim.returncode == 0,
            "ack_ms_simulator": summary["ack_latency_ms"],
            "ack_ms_collector": at_collector[0] if collectors == 1 else
            {"p50": max((c or {}).get("p50", float("nan")) for c in at_collector),
             "p99": max((c or {}).get("p99", float("nan")) for c in at_collector)},
            "writer": writer,
            "collector_cpu_us_per_report": cpu_s * 1e6 / max(stored, 1),
            "series": series, "dirty_mb": dirty.samples,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--rate", type=int, default=50000, help="target reports/s for the open-loop run")
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--agents", default="100,1000")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--tls", action="store_true", help="agents connect over TLS")
    ap.add_argument("--no-saturation", action="store_true", help="skip the saturation runs")
    ap.add_argument("--collector-config", help="serve the collector with this TOML config")
    ap.add_argument("--db", help="a postgresql:// server URI: also run on PostgreSQL, with one "
                                 "and with two collectors")
    ap.add_argument("--postgres", action="store_true",
                    help="start a throwaway PostgreSQL cluster and run on it as with --db")
    ap.add_argument("--collectors", default="1,2", help="collector counts on PostgreSQL")
    ap.add_argument("--pg-rate", type=int, default=25000,
                    help="target reports/s of PostgreSQL's open-loop runs")
    args = ap.parse_args()
    cluster_state = None
    if args.postgres and not args.db:
        cluster_state = tempfile.mkdtemp(prefix="deskpulse-bench-pg-")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fakes",
                              "pg_cluster.sh")
        subprocess.run(["bash", script, "start", cluster_state], check=True)
        args.db = open(os.path.join(cluster_state, "uri")).read().strip()
    try:
        return bench(args)
    finally:
        if cluster_state:
            subprocess.run(["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                 "tests", "fakes", "pg_cluster.sh"), "stop",
                            cluster_state])


def bench(args):

    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"deskpulse ingest benchmark: {os.cpu_count()} cores ({cpu}); collectors, simulator "
          f"and database on this machine; SQLite WAL synchronous=FULL / PostgreSQL "
          f"synchronous_commit=on (an fsync per group commit); "
          f"{'TLS' if args.tls else 'plain TCP on loopback'}")
    if args.db:
        shown = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", args.db)
        print(f"PostgreSQL: {shown}")
    backends = [("sqlite", None, 1)]
    if args.db:
        backends += [("postgresql", args.db, int(n)) for n in args.collectors.split(",")]
    results = []
    for agents in [int(a) for a in args.agents.split(",")]:
        runs = [("target", args.rate)] + ([] if args.no_saturation else
                                          [("saturation", args.rate * 4)])
        for (label, rate), (backend, server, collectors) in (
                (r, b) for r in runs for b in backends):
            if backend == "postgresql":
                rate = args.pg_rate if label == "target" else args.pg_rate * 4
            r = run(args.bin, agents, rate, args.seconds, tls=args.tls,
                    config=args.collector_config, pg_server=server, collectors=collectors)
            r["run"] = label
            results.append(r)
            sim, col = r["ack_ms_simulator"], r["ack_ms_collector"] or {}
            where = f"{backend} x{collectors}" if backend == "postgresql" else backend
            print(f"  {where:<14} {agents:>5} agents  {label:<10} offered {rate:>7}/s  durable "
                  f"{r['durable_per_s']:>8.0f} reports/s  ack p50 {sim['p50']:>6.1f} ms  "
                  f"p99 {sim['p99']:>6.1f} ms (collector: p50 {col.get('p50', float('nan')):.1f} "
                  f"p99 {col.get('p99', float('nan')):.1f})  collector CPU "
                  f"{r['collector_cpu_us_per_report']:.1f} us/report  "
                  f"stored==acked: {r['exactly_once']}",
                  flush=True)
            if args.seconds >= 60:
                print(f"    over time: {tail_over_time(r)}", flush=True)
    print("bars: SQLite >= 50,000 reports/s committed then acked with ack p99 <= 50 ms at 1,000 "
          "agents; PostgreSQL >= 25,000 reports/s with ack p99 <= 100 ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["exactly_once"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
