#!/usr/bin/env python3
"""Connected-endpoint memory: what each connected agent costs the real collector.

For 1,000, 10,000 and 50,000 agents (as many as the descriptor limit allows)
it starts a fresh collector, connects the simulated fleet (welcomed, then
nearly silent: one report a second across the fleet, so that what is measured is
the connections, not the data), and prints the
collector's RSS and anonymous memory above its idle base, per endpoint, with
the kernel's TCP socket memory (/proc/net/sockstat) reported apart. It runs on
SQLite and, with --postgres or --db, on PostgreSQL.

Prints figures; asserts none (docs/quality.md bar: <= 1 KB per endpoint above a
fixed base).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from ingest_bench import make_cert, make_tokens, new_pg_database, start_collector  # noqa: E402

import tool_version

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "..", "tests", "fakes", "pg_cluster.sh")


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def tcp_kernel_kb():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def established(port):
    r = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                       capture_output=True, text=True)
    return len(r.stdout.splitlines())


def measure(bin_dir, work, db, agents, backend, tls=False):
    tokens = make_tokens(bin_dir, work, db)
    catalog = os.path.join(work, "catalog.sqlite")
    if not os.path.exists(catalog):
        subprocess.run([os.path.join(bin_dir, "collector", "deskpulse-catalog"), "build", "--out",
                        catalog], check=True, capture_output=True)
    server_tls, client_tls = [], []
    if tls:
        cert, key = make_cert(work)
        server_tls, client_tls = ["--tls-cert", cert, "--tls-key", key], ["--ca", cert]
    proc, log, port = start_collector(bin_dir, work, db, server_tls,
                                      f"collector-{backend}-{agents}")
    time.sleep(1.0)
    base_rss, base_anon = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "RssAnon")
    base_tcp = tcp_kernel_kb()
    # Long enough to connect the whole fleet on the slower backend (each new
    # endpoint is registered in its own transaction); ended once measured.
    connect_s = 60 + agents // 100
    sim = subprocess.Popen(
        [os.path.join(bin_dir, "agent", "deskpulse-fleetsim"), "--collector", f"127.0.0.1:{port}",
         "--tokens", tokens, "--catalog", catalog, "--endpoints", str(agents), "--duration",
         str(connect_s + 60), "--rate", "1", "--timeout", str(connect_s + 180),
         "--log-level", "error", *client_tls], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + connect_s
    connected = 0
    while time.monotonic() < deadline and sim.poll() is None:
        connected = established(port)
        if connected >= agents:
            break
        time.sleep(0.5)
    time.sleep(5)  # every agent welcomed and past its first batch
    collector_exit = proc.poll()
    rss, anon = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "RssAnon")
    tcp = tcp_kernel_kb()
    connected = established(port)
    sim.terminate()
    _, sim_err = sim.communicate(timeout=180)
    if connected < agents:
        print(f"    (only {connected} of {agents} connected within {connect_s} s; simulator: exit "
              f"{sim.returncode}: {sim_err.strip()[-400:]})", flush=True)
    proc.terminate()
    proc.wait(timeout=120)
    log.close()
    if collector_exit is not None:
        tail = open(log.name, errors="replace").read().strip()[-400:]
        print(f"    (the collector exited with {collector_exit} during the run: {tail})", flush=True)
    return {"agents": agents, "connected": connected, "complete": connected >= agents and
            collector_exit is None, "base_rss_kb": base_rss,
            "base_anon_kb": base_anon, "rss_kb": rss, "anon_kb": anon,
            "rss_per_endpoint_b": (rss - base_rss) * 1024 / max(connected, 1),
            "anon_per_endpoint_b": (anon - base_anon) * 1024 / max(connected, 1),
            "kernel_tcp_kb": tcp - base_tcp,
            "kernel_tcp_per_endpoint_b": (tcp - base_tcp) * 1024 / max(connected, 1) / 2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--agents", default="1000,10000,50000")
    ap.add_argument("--db", help="a postgresql:// server URI: also run on PostgreSQL")
    ap.add_argument("--postgres", action="store_true", help="start a throwaway cluster for it")
    ap.add_argument("--tls", action="store_true", help="agents connect over TLS")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Each process needs a descriptor per connection, plus some to spare.
    most = hard - 200
    print(f"connected-endpoint memory: {os.cpu_count()} cores; collector and simulator on this "
          f"machine; descriptor limit {hard} (hard); "
          f"{'TLS' if args.tls else 'plain TCP on loopback'}")
    state = None
    failed = False
    server = args.db
    with tempfile.TemporaryDirectory(prefix="deskpulse-conn-") as work:
        if args.postgres and not server:
            state = os.path.join(work, "pg")
            subprocess.run(["bash", CLUSTER, "start", state], check=True)
            server = open(os.path.join(state, "uri")).read().strip()
        try:
            for backend in ["sqlite"] + (["postgresql"] if server else []):
                previous = None
                counts = [int(a) for a in args.agents.split(",")]
                if any(a > most for a in counts):
                    # As close to the count asked as this machine allows.
                    counts = sorted({min(a, most // 1000 * 1000) for a in counts})
                for agents in [int(a) for a in args.agents.split(",")]:
                    if agents > most:
                        print(f"  {backend:<10} {agents:>6} agents: not run: needs {agents} "
                              f"descriptors per process, the hard limit here is {hard}; "
                              f"measured at {most // 1000 * 1000} instead")
                for agents in counts:
                    db = (new_pg_database(server) if backend == "postgresql"
                          else os.path.join(work, f"conn-{agents}.db"))
                    r = measure(args.bin, work, db, agents, backend, args.tls)
                    if not r["complete"]:
                        # A partial fleet's memory says nothing per endpoint.
                        print(f"  {backend:<10} {agents:>6} agents: FAILED, no figure", flush=True)
                        failed, previous = True, None
                        continue
                    print(f"  {backend:<10} {r['agents']:>6} agents ({r['connected']} connected)  "
                          f"collector RSS {r['base_rss_kb'] / 1024:.1f} -> "
                          f"{r['rss_kb'] / 1024:.1f} MB: {r['rss_per_endpoint_b']:.0f} B per "
                          f"endpoint (anonymous {r['anon_per_endpoint_b']:.0f} B)  kernel TCP "
                          f"memory +{r['kernel_tcp_kb'] / 1024:.1f} MB "
                          f"({r['kernel_tcp_per_endpoint_b']:.0f} B per socket, both ends)",
                          flush=True)
                    if previous:
                        # What each further endpoint costs: the fixed base (the
                        # read buffer, the store's caches, the binary) cancels.
                        added = r["connected"] - previous["connected"]
                        print(f"  {backend:<10} {previous['agents']:>6} -> {agents} agents: "
                              f"{(r['rss_kb'] - previous['rss_kb']) * 1024 / added:.0f} B RSS "
                              f"per further endpoint (anonymous "
                              f"{(r['anon_kb'] - previous['anon_kb']) * 1024 / added:.0f} B)",
                              flush=True)
                    previous = r
        finally:
            if state:
                subprocess.run(["bash", CLUSTER, "stop", state])
    print("bar: <= 1 KB per endpoint above a fixed base (kernel socket memory apart): the "
          "'per further endpoint' lines")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
