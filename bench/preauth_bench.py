#!/usr/bin/env python3
"""Pre-authentication load benchmark: what unauthenticated connections cost the real collector.

For plain TCP and for TLS it opens N connections (default 1,000) from 8 loopback addresses that
each send the largest frame the collector takes before a Hello, all but its last byte, and
stall; meanwhile a simulated fleet reports at a steady rate. It prints the collector's RSS
before and at its peak, and the fleet's ack latency with and without the attackers.

Prints figures; asserts none (docs/quality.md bar: <= 64 MB above base under any pre-authentication
load). tests/e2e/test_hardening.py checks the bound for plain TCP.
"""
import argparse
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from ingest_bench import make_cert, make_tokens, start_collector  # noqa: E402

import tool_version


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def attack(port, n, frame_bytes, tls_context):
    partial = struct.pack(">I", frame_bytes) + b"\x0a" * (frame_bytes - 1)
    held = []
    for i in range(n):
        try:
            s = socket.socket()
            s.bind((f"127.0.0.{2 + i % 8}", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            if tls_context:
                s = tls_context.wrap_socket(s, server_hostname="localhost")
            s.sendall(partial)
            held.append(s)
        except OSError:
            pass  # refused or reset: the collector's defence at work
    return held


def still_open(sockets):
    """How many of `sockets` the collector has not closed (refused, evicted or timed out)."""
    n = 0
    for s in sockets:
        s.setblocking(False)
        try:
            n += 0 if s.recv(1) == b"" else 1
        except (BlockingIOError, ssl.SSLWantReadError):
            n += 1
        except OSError:
            pass
    return n


def fleet(bin_dir, port, tokens, catalog, seconds, client_tls, seed):
    sim = subprocess.run(
        [os.path.join(bin_dir, "agent", "deskpulse-fleetsim"), "--collector", f"127.0.0.1:{port}",
         "--tokens", tokens, "--catalog", catalog, "--endpoints", "50", "--duration",
         str(seconds), "--rate", "500", "--seed", str(seed), "--log-level", "warn", *client_tls],
        capture_output=True, text=True)
    return json.loads(sim.stdout.strip().splitlines()[-1]), sim.returncode


def run(bin_dir, tls, connections, seconds):
    with tempfile.TemporaryDirectory(prefix="deskpulse-preauth-") as work:
        db = os.path.join(work, "bench.db")
        tokens = make_tokens(bin_dir, work, db)
        catalog = os.path.join(work, "catalog.sqlite")
        subprocess.run([os.path.join(bin_dir, "collector", "deskpulse-catalog"), "build", "--out",
                        catalog], capture_output=True, check=True)
        server_tls, client_tls, context = [], [], None
        if tls:
            cert, key = make_cert(work)
            server_tls, client_tls = ["--tls-cert", cert, "--tls-key", key], ["--ca", cert]
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        proc, log, port = start_collector(bin_dir, work, db, server_tls)
        quiet, _ = fleet(bin_dir, port, tokens, catalog, seconds, client_tls, seed=3)
        base = rss_kb(proc.pid, "VmRSS")
        t0 = time.monotonic()
        held = attack(port, connections, 8192, context)
        attack_s = time.monotonic() - t0
        # Another seed: other agent ids, so the second fleet's reports are new ones.
        loaded, rc = fleet(bin_dir, port, tokens, catalog, seconds, client_tls, seed=4)
        peak = rss_kb(proc.pid, "VmHWM")
        open_at_end = still_open(held)
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        return {"tls": tls, "connections": connections, "sent": len(held), "open_at_end": open_at_end,
                "attack_s": attack_s, "rss_base_mb": base / 1024, "rss_peak_mb": peak / 1024,
                "ack_ms_quiet": quiet["ack_latency_ms"], "ack_ms_attacked": loaded["ack_latency_ms"],
                "fleet_all_acked": rc == 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections)), hard))
    print(f"deskpulse pre-authentication benchmark: {args.connections} connections from 8 "
          f"addresses, each stalled one byte short of an 8 KiB pre-Hello frame; 50 agents at "
          f"500 reports/s alongside")
    ok = True
    for tls in (False, True):
        r = run(args.bin, tls, args.connections, args.seconds)
        ok = ok and r["fleet_all_acked"]
        q, a = r["ack_ms_quiet"], r["ack_ms_attacked"]
        print(f"  {'TLS  ' if tls else 'plain'}  RSS {r['rss_base_mb']:.1f} MB -> peak "
              f"{r['rss_peak_mb']:.1f} MB (+{r['rss_peak_mb'] - r['rss_base_mb']:.1f} MB); "
              f"{r['sent']} sent in {r['attack_s']:.1f} s, {r['open_at_end']} still open after the "
              f"fleet's run; fleet ack p50/p99 "
              f"{q['p50']:.1f}/{q['p99']:.1f} ms quiet, {a['p50']:.1f}/{a['p99']:.1f} ms attacked; "
              f"all acked: {r['fleet_all_acked']}", flush=True)
    print("bar (docs/quality.md): <= 64 MB above base under any pre-authentication load")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
