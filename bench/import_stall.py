#!/usr/bin/env python3
"""Import stall: a 16 MiB vendor import while agents report and API clients call.

Serves a fresh store with the JSON API, runs a fleet (200 simulated agents at
1,000 reports/s in all, each report sent at once) for 30 s, and 10 s in posts a
16 MiB tickets CSV (about 190,000 rows) to POST /api/v1/imports/tickets while a
client calls GET /api/v1/customers 20 times a second. Prints how long the import
took, the API calls' latency during it, the agents' ack p99 over the run against
a run without the import (and per half second, to show the commit's own stall),
and the collector's RSS before, at its peak and after. The bar (docs/quality.md):
ack p99 within 2x its quiet value, API calls answered meanwhile (under 100 ms).
With --baseline BIN, the same run measures another build too (the previous
one), on one machine at one time.

Usage: python3 bench/import_stall.py --bin build [--baseline OLD_BUILD]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import tool_version
from api_first_byte import read_reply, serve_with_api


def quantile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def call(port, request, timeout=120):
    """Sends one request on a new connection; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return read_reply(s)


def tickets_csv(customer, target_bytes=16 << 20):
    rows = ["customer,ticket_id,opened,first_response,resolved,severity"]
    size, i = len(rows[0]) + 1, 0
    while size < target_bytes - 200:
        d = f"2026-10-{1 + i % 28:02d}"
        row = f"{customer},TCK-{i:09d},{d}T09:30:00Z,{d}T10:30:00Z,{d}T12:30:00Z,high"
        rows.append(row)
        size += len(row) + 1
        i += 1
    return ("\n".join(rows) + "\n").encode(), i


def run_build(bin_dir, work, seconds, import_at):
    """The fleet's run once without an import (its ack p99 is the quiet value) and once
    with one `import_at` seconds in."""
    quiet = run_once(bin_dir, os.path.join(work, "quiet"), seconds, None)
    r = run_once(bin_dir, os.path.join(work, "import"), seconds, import_at)
    r["quiet_run_p99"] = quiet["run_ack_p99"]
    return r


def run_once(bin_dir, work, seconds, import_at):
    os.makedirs(work, exist_ok=True)
    collector = os.path.join(bin_dir, "collector", "deskpulse-collector")
    sim = os.path.join(bin_dir, "agent", "deskpulse-fleetsim")
    catalog = os.path.join(work, "catalog.sqlite")
    subprocess.run([os.path.join(bin_dir, "collector", "deskpulse-catalog"), "build", "--out",
                    catalog], check=True, capture_output=True)
    db = os.path.join(work, "store.db")
    token = subprocess.run([collector, "token", "create", "--db", db, "--customer", "Bench"],
                           check=True, capture_output=True, text=True).stdout.strip()
    tokens = os.path.join(work, "tokens.txt")
    with open(tokens, "w") as f:
        f.write(f"Bench {token} typical\n")
    vendor = subprocess.run([collector, "api-token", "create", "--db", db, "--role", "vendor"],
                            check=True, capture_output=True, text=True).stdout.strip()
    proc, log, port, http_port = serve_with_api(collector, work, db)
    try:
        body, rows = tickets_csv("Bench")
        fleet = subprocess.Popen([sim, "--collector", f"127.0.0.1:{port}", "--tokens", tokens,
                                  "--catalog", catalog, "--endpoints", "200", "--rate", "1000",
                                  "--duration", str(seconds), "--progress", "0.5",
                                  "--timeout", str(seconds + 120)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        if import_at is None:
            out, err = fleet.communicate(timeout=seconds + 180)
            summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
            return {"run_ack_p99": summary["ack_latency_ms"]["p99"]}
        time.sleep(import_at)
        rss_before = rss_mb(proc.pid)
        peak = [rss_before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = {}

        def post():
            start = time.monotonic()
            status, got = call(http_port, (
                f"POST /api/v1/imports/tickets HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {vendor}\r\nContent-Type: text/csv\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            result.update(status=status, start=start - t0, end=time.monotonic() - t0,
                          body=got[:200])

        poster = threading.Thread(target=post)
        poster.start()
        api_ms = []
        get = (f"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {vendor}\r\n"
               "\r\n").encode()
        while poster.is_alive():
            s = time.monotonic()
            status, _ = call(http_port, get)
            if status in (200, 503):
                api_ms.append((time.monotonic() - s) * 1000)
            # A dashboard's pace (20 calls a second), not a flood that would take a core.
            time.sleep(max(0.0, 0.05 - (time.monotonic() - s)))
        poster.join()
        time.sleep(5)
        done.set()
        sampler.join()
        rss_after = rss_mb(proc.pid)
        out, err = fleet.communicate(timeout=seconds + 180)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    series = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    lo, hi = result["start"], result["end"] + 0.5
    during = [p["ack_ms"]["p99"] for p in series if lo <= p["t_s"] <= hi + 0.5 and p.get("ack_ms")]
    quiet = [p["ack_ms"]["p99"] for p in series
             if p.get("ack_ms") and 2 <= p["t_s"] < seconds and not lo <= p["t_s"] <= hi + 1.0]
    return {"status": result["status"], "rows": rows, "import_s": result["end"] - result["start"],
            "api_ms": api_ms, "quiet_p99": quiet, "during_p99": during,
            "rss": (rss_before, peak[0], rss_after), "acked": summary["reports_acked"],
            "run_ack_p99": summary["ack_latency_ms"]["p99"]}


def report(name, r):
    quiet = statistics.median(r["quiet_p99"]) if r["quiet_p99"] else float("nan")
    during = max(r["during_p99"]) if r["during_p99"] else float("nan")
    api = r["api_ms"]
    print(f"{name}: import answered {r['status']} for {r['rows']} rows in {r['import_s']:.2f} s; "
          f"{len(api)} API calls meanwhile, p50 {quantile(api, 0.5):.1f} ms "
          f"p99 {quantile(api, 0.99):.1f} ms max {max(api) if api else float('nan'):.1f} ms")
    print(f"  agents' ack p99 over the run: {r['run_ack_p99']:.1f} ms with the import, "
          f"{r['quiet_run_p99']:.1f} ms without = {r['run_ack_p99'] / r['quiet_run_p99']:.1f}x "
          f"({r['acked']} reports acknowledged)")
    print(f"  per 0.5 s: quiet {quiet:.1f} ms (median), {during:.1f} ms in the worst half "
          f"second of the import (its commit holds SQLite's write lock)")
    print(f"  collector RSS: {r['rss'][0]:.0f} MB before, {r['rss'][1]:.0f} MB at peak, "
          f"{r['rss'][2]:.0f} MB 5 s after")
    return r["run_ack_p99"] <= 2 * r["quiet_run_p99"] and len(api) > 1 and max(api) < 100


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", required=True, help="the build directory to measure")
    ap.add_argument("--baseline", help="another build to measure in the same run")
    ap.add_argument("--seconds", type=float, default=30, help="how long the fleet reports")
    args = ap.parse_args()
    builds = [("this", args.bin)] + ([("baseline", args.baseline)] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="deskpulse-import-stall-") as work:
        results = {name: run_build(os.path.abspath(b), os.path.join(work, name), args.seconds,
                                   import_at=10)
                   for name, b in builds}
    print("A 16 MiB tickets import while 200 agents report 1,000 reports/s and a client calls "
          "the API 20 times a second:")
    met = {name: report(name, r) for name, r in results.items()}
    return 0 if met["this"] else 1


if __name__ == "__main__":
    sys.exit(main())
