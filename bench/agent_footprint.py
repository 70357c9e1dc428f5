#!/usr/bin/env python3
"""Agent footprint benchmark: deskpulse-agent next to Debian's collectd, in the same run.

Both run for --seconds (>= 60) at a 10 s interval on this machine. Every second the benchmark
samples each process's RSS and anonymous memory (/proc/PID/status) and CPU time (schedstat,
nanoseconds). It prints, per process: RSS and anonymous memory (median and max over the steady
part, after the first 15 s), CPU per collection cycle, and what one cycle puts on the wire:
for the agent the stored report sizes (protobuf bytes; batch framing adds ~3 bytes per report),
for collectd the bytes its network plugin sends per interval (to a UDP socket the benchmark holds).

The agent runs twice at once, exactly as deployed: over TLS to a collector with a certificate
(how it runs in the field) and in plain TCP to a loopback collector. This machine has no USB, so
both read a thin client's USB tree (tests/data/peripherals/thin-client: ten devices, one of them
redirected) and the peripherals code runs as it would on an endpoint. collectd runs the plugins a
thin-client monitoring setup would: cpu, memory, load, interface, df, uptime, network.

Prints figures; asserts nothing (docs/quality.md bars: RSS <= 4 MB, anonymous <= 1 MB,
<= 1.5 ms CPU per cycle, <= 512 bytes per report).
"""
import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import tool_version

BARS = {"rss_kb": 4096, "anon_kb": 1024, "cpu_ms": 1.5, "bytes": 512}


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                out[k] = int(v.split()[0])
    return out


def cpu_ns(pid):
    """CPU time of all the process's threads (collectd reads in a thread pool), ns."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # the thread ended
    return total


def wait_file(path, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    sys.exit(f"{what} did not start")


class Collector:
    def __init__(self, exe, work, name, tls):
        self.db = os.path.join(work, f"{name}.db")
        r = subprocess.run([exe, "token", "create", "--db", self.db, "--customer", "Bench"],
                           capture_output=True, text=True, check=True)
        self.token = r.stdout.split()[-1]
        port_file = os.path.join(work, f"{name}.port")
        args = [exe, "serve", "--db", self.db, "--listen", "127.0.0.1:0", "--port-file", port_file]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(work, f"{name}.log"), "w"))
        wait_file(port_file, self.proc, "collector")
        with open(port_file) as f:
            self.port = int(f.read().strip())

    def report_sizes(self):
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return [n for (n,) in con.execute("SELECT length(body) FROM reports ORDER BY rowid")]
        finally:
            con.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


USB_TREE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "peripherals",
                        "thin-client")


def agent_config(work, name, collector, interval, ca=None, catalog=""):
    state = os.path.join(work, f"{name}-state")
    path = os.path.join(work, f"{name}.toml")
    with open(os.path.join(work, "machine-id"), "w") as f:
        f.write("5f0e3b8c2a1d4e6f9a7b0c1d2e3f4a5b\n")
    with open(path, "w") as f:
        f.write(f"""[agent]
state_dir = "{state}"
interval_s = {interval}
machine_id_file = "{work}/machine-id"
[collector]
address = "127.0.0.1:{collector.port}"
token = "{collector.token}"
""" + (f'ca_file = "{ca}"\n' if ca else "") + f"""[probes.peripherals]
sysfs = "{USB_TREE}/sys"
proc = "{USB_TREE}/proc"
udev_data = "{USB_TREE}/udev"
catalog = "{catalog}"
""")
    return path


def collectd_config(work, interval, sink_port):
    path = os.path.join(work, "collectd.conf")
    with open(path, "w") as f:
        f.write(f"""Hostname "bench"
FQDNLookup false
Interval {interval}
BaseDir "{work}/collectd"
PIDFile "{work}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin logfile
<Plugin logfile>
  LogLevel warning
  File "{work}/collectd.log"
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin interface
LoadPlugin df
LoadPlugin uptime
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "{sink_port}"
</Plugin>
""")
    os.makedirs(os.path.join(work, "collectd"), exist_ok=True)
    return path


class UdpSink:
    """Counts the bytes collectd's network plugin sends."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.packets = []  # (monotonic, bytes)
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
                self.packets.append((time.monotonic(), len(data)))
            except socket.timeout:
                pass

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


def fmt(v, unit):
    return "n/a" if v is None else (f"{v:.2f} {unit}" if isinstance(v, float) else f"{v} {unit}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--seconds", type=int, default=90, help="run length, at least 60")
    ap.add_argument("--interval", type=int, default=10, help="collection interval of both, s")
    ap.add_argument("--catalog", default="",
                    help="peripheral catalog the agents read (deskpulse-catalog build); "
                         "default none, as on an endpoint without it")
    args = ap.parse_args()
    if args.seconds < 60:
        sys.exit("--seconds must be at least 60")
    agent_exe = os.path.join(args.bin, "agent", "deskpulse-agent")
    collector_exe = os.path.join(args.bin, "collector", "deskpulse-collector")
    collectd_exe = shutil.which("collectd") or "/usr/sbin/collectd"
    for exe in (agent_exe, collector_exe, collectd_exe):
        if not os.access(exe, os.X_OK):
            sys.exit(f"missing {exe} (build the project; collectd comes from collectd-core)")

    work = tempfile.mkdtemp(prefix="deskpulse-footprint-")
    cert, key = os.path.join(work, "c.crt"), os.path.join(work, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls_collector = Collector(collector_exe, work, "collector-tls", (cert, key))
    plain_collector = Collector(collector_exe, work, "collector-plain", None)
    sink = UdpSink()
    procs = {
        "deskpulse-agent (TLS)": subprocess.Popen(
            [agent_exe, "--config", agent_config(work, "agent-tls", tls_collector, args.interval, cert,
                                                args.catalog)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "agent-tls.log"), "w")),
        "deskpulse-agent (plain, loopback)": subprocess.Popen(
            [agent_exe, "--config", agent_config(work, "agent-plain", plain_collector, args.interval,
                                                catalog=args.catalog)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "agent-plain.log"), "w")),
        "collectd": subprocess.Popen(
            [collectd_exe, "-f", "-C", collectd_config(work, args.interval, sink.port)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "collectd.err"), "w")),
    }
    print(f"running {args.seconds} s at a {args.interval} s interval (work dir {work}) ...", flush=True)
    samples = {name: [] for name in procs}
    cpu_at = {}
    start = time.monotonic()
    warmup = 15
    while time.monotonic() - start < args.seconds:
        now = time.monotonic() - start
        for name, p in procs.items():
            if p.poll() is not None:
                sys.exit(f"{name} exited with {p.returncode}; see {work}")
            s = status_kb(p.pid)
            if now >= warmup:
                samples[name].append(s)
                if name not in cpu_at:
                    cpu_at[name] = (time.monotonic(), cpu_ns(p.pid))
        time.sleep(1)
    results = {}
    for name, p in procs.items():
        t0, c0 = cpu_at[name]
        t1, c1 = time.monotonic(), cpu_ns(p.pid)
        cycles = (t1 - t0) / args.interval
        rss = [s["VmRSS"] for s in samples[name]]
        anon = [s["RssAnon"] for s in samples[name]]
        results[name] = {"rss_kb": int(statistics.median(rss)), "rss_max_kb": max(rss),
                         "anon_kb": int(statistics.median(anon)), "anon_max_kb": max(anon),
                         "cpu_ms": (c1 - c0) / 1e6 / cycles}
    for p in procs.values():
        p.terminate()
        p.wait(30)
    sink.stop()
    for name, c in (("deskpulse-agent (TLS)", tls_collector), ("deskpulse-agent (plain, loopback)", plain_collector)):
        sizes = c.report_sizes()
        steady = sizes[1:] or sizes  # the first report carries the boot record and the inventory
        results[name]["bytes"] = int(statistics.median(steady)) if steady else None
        results[name]["bytes_first"] = sizes[0] if sizes else None
        results[name]["reports"] = len(sizes)
        c.stop()
    steady_packets = [n for t, n in sink.packets if t - start >= warmup]
    results["collectd"]["bytes"] = (int(sum(steady_packets) / ((args.seconds - warmup) / args.interval))
                                    if steady_packets else None)

    names = list(procs)
    w = 36
    print()
    print(f"{'':22}" + "".join(f"{n:>{w}}" for n in names) + f"{'bar':>12}")
    rows = [("RSS, median (max)", lambda r: f"{r['rss_kb']/1024:.2f} MB ({r['rss_max_kb']/1024:.2f})", "4 MB"),
            ("anonymous, median", lambda r: f"{r['anon_kb']/1024:.2f} MB ({r['anon_max_kb']/1024:.2f})", "1 MB"),
            ("CPU per cycle", lambda r: f"{r['cpu_ms']:.2f} ms", "1.5 ms"),
            ("bytes per cycle", lambda r: "n/a" if r.get("bytes") is None else f"{r['bytes']} B", "512 B")]
    for label, f, bar in rows:
        print(f"{label:22}" + "".join(f"{f(results[n]):>{w}}" for n in names) + f"{bar:>12}")
    for n in names[:2]:
        r = results[n]
        print(f"\n{n}: {r['reports']} reports stored; first report {r['bytes_first']} B "
              f"(boot record and peripheral inventory), then median {r['bytes']} B")
    verdict = []
    for n in names[:2]:
        r = results[n]
        ok = (r["rss_kb"] <= BARS["rss_kb"], r["anon_kb"] <= BARS["anon_kb"], r["cpu_ms"] <= BARS["cpu_ms"],
              r["bytes"] is not None and r["bytes"] <= BARS["bytes"])
        verdict.append(f"{n}: RSS {'meets' if ok[0] else 'MISSES'} the bar, anonymous "
                       f"{'meets' if ok[1] else 'MISSES'}, CPU {'meets' if ok[2] else 'MISSES'}, "
                       f"report size {'meets' if ok[3] else 'MISSES'}")
    print("\n" + "\n".join(verdict))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
