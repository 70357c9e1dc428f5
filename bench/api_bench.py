#!/usr/bin/env python3
"""API benchmark: JSON API latency while the ingest benchmark's load runs.

Fills a store with 500 customers x 100,000 endpoints x 30 days of history
(bench/deskpulse-store-scale), serves it with `deskpulse-collector serve
--http`, and runs the ingest benchmark's open-loop load (1,000 agents at
50,000 reports/s, ingest_bench.load_flags()) in the same run without --http,
with the API idle, and with API clients calling the customers list and one
customer's detail. Prints ingest figures of each run and the API's p50/p99 per
route, and how long the background assessment of the whole book takes. With
--tls, agents and API clients both connect over TLS (the same certificate), as
in the field.

Prints figures; asserts no timings (the issue's bars: API p99 <= 50 ms, ingest
still at its bar: >= 50,000 durable reports/s, ack p99 <= 50 ms, on SQLite).
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ingest_bench  # noqa: E402  (shares the collector and simulator helpers)

import tool_version


def quantile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


class ApiLoad:
    """`clients` keep-alive connections calling the list then one customer's detail, open
    loop: `rate` pairs a second in all (0: back to back, as fast as answers come)."""

    def __init__(self, port, token, customer_ids, clients, rate, ca=None):
        self.port, self.token, self.ids, self.ca = port, token, customer_ids, ca
        self.interval = clients / rate if rate > 0 else 0
        self.lat = {"list": [], "detail": []}
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                         for i in range(clients)]
        for t in self._threads:
            t.start()

    def _call(self, conn, path):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        r = conn.getresponse()
        r.read()
        return r.status, (time.perf_counter() - t0) * 1000

    def _loop(self, i):
        rng = random.Random(i)
        conn = connect(self.port, self.ca, 30)
        next_at = time.monotonic() + rng.random() * self.interval
        while not self._stop.is_set():
            if self.interval:
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                next_at += self.interval
            for kind, path in (("list", "/api/v1/customers?limit=100"),
                               ("detail", f"/api/v1/customers/{rng.choice(self.ids)}")):
                try:
                    status, ms = self._call(conn, path)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = connect(self.port, self.ca, 30)
                    status, ms = 0, 0
                with self._lock:
                    if status == 200:
                        self.lat[kind].append(ms)
                    else:
                        self.errors += 1
        conn.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join()


def connect(port, ca, timeout):
    """A keep-alive connection to the API on loopback: HTTPS verified against `ca` if given."""
    if ca is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                       context=ssl.create_default_context(cafile=ca))


def api_get(port, token, path, ca=None):
    conn = connect(port, ca, 60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def make_tokens(collector, work, db, name):
    """A new customer for this phase: its agents are new streams, whatever ran before."""
    token = subprocess.run([collector, "token", "create", "--db", db, "--customer", name],
                           capture_output=True, text=True, check=True).stdout.strip()
    path = os.path.join(work, f"tokens-{name}.txt")
    with open(path, "w") as f:
        f.write(f"{name} {token} typical\n")
    return path


def fresh_copy(filled, db):
    """`db` as the filled store was, whatever an earlier phase wrote to it."""
    for suffix in ("", "-wal", "-shm", "-writer.lock"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    for suffix in ("", "-wal"):
        if os.path.exists(filled + suffix):
            shutil.copyfile(filled + suffix, db + suffix)


def book_rounds(log_path):
    """The background assessments' durations (ms) from the collector's debug log."""
    return [int(m.group(1)) for m in re.finditer(r"health: assessed \d+ customers in (\d+) ms",
                                                  open(log_path).read())]


def phase(args, work, filled, db, catalog, vendor, cert, with_api, serve_http=True):
    """with_api: API clients call while the load runs; serve_http=False: no --http at all."""
    collector = os.path.join(args.bin, "collector", "deskpulse-collector")
    fresh_copy(filled, db)
    label = "api" if with_api else "alone" if serve_http else "no-http"
    tokens = make_tokens(collector, work, db, f"Bench {label} {int(time.time())}")
    port_file = os.path.join(work, "ingest.port")
    http_file = os.path.join(work, "http.port")
    for f in (port_file, http_file):
        if os.path.exists(f):
            os.remove(f)
    log_path = os.path.join(work, f"collector-{label}.log")
    log = open(log_path, "w")
    started = time.monotonic()
    http = ["--http", "127.0.0.1:0", "--http-port-file", http_file] if serve_http else []
    tls = ["--tls-cert", cert[0], "--tls-key", cert[1]] if cert else []
    ca = cert[0] if cert else None
    proc = subprocess.Popen([collector, "serve", "--db", db, "--listen", "127.0.0.1:0",
                             "--port-file", port_file, "--log-level", "debug", *http, *tls],
                            stdout=subprocess.DEVNULL, stderr=log)
    ready = http_file if serve_http else port_file
    deadline = time.monotonic() + 600  # serve checks the whole store at start
    while not (os.path.exists(ready) and open(ready).read().strip()):
        if proc.poll() is not None:
            raise RuntimeError("collector exited: " + open(log_path).read()[-2000:])
        if time.monotonic() > deadline:
            raise RuntimeError("collector did not start listening in 600 s")
        time.sleep(0.05)
    start_s = time.monotonic() - started
    port = int(open(port_file).read())
    book_s, ids, http_port = float("nan"), [], None
    if serve_http:
        http_port = int(open(http_file).read())
        # The first assessment of the whole book (background thread).
        while True:
            status, body = api_get(http_port, vendor, "/api/v1/customers?limit=500", ca)
            if status == 200:
                break
            time.sleep(0.05)
        book_s = time.monotonic() - started
        ids = [c["id"] for c in body["customers"]]
    load = (ApiLoad(http_port, vendor, ids, args.api_clients, args.api_rate, ca) if with_api
            else None)
    sim = subprocess.run(
        [os.path.join(args.bin, "agent", "deskpulse-fleetsim"), "--collector",
         f"127.0.0.1:{port}", "--tokens", tokens, "--catalog", catalog, "--endpoints",
         str(args.agents), "--duration", str(args.seconds), "--rate", str(args.rate),
         *ingest_bench.load_flags(), "--timeout", str(args.seconds + 120), "--log-level", "warn",
         *(["--ca", ca] if ca else [])], capture_output=True, text=True)
    if load:
        load.stop()
    cpu_s = ingest_bench.process_cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=300)
    log.close()
    summary = json.loads(sim.stdout.strip().splitlines()[-1])
    at_collector, writer = ingest_bench.collector_ack_latency(log_path)
    rounds = book_rounds(log_path)
    return {
        "with_api": with_api, "serve_http": serve_http, "book_s": book_s, "start_s": start_s, "rc": rc, "sim_rc": sim.returncode,
        "durable_per_s": summary["acked_per_s"], "acked": summary["reports_acked"],
        "ack_ms": summary["ack_latency_ms"], "ack_ms_collector": at_collector,
        "collector_cpu_s": cpu_s, "writer": writer or {}, "book_rounds_ms": rounds,
        "api": {k: {"n": len(v), "p50": quantile(v, 0.5), "p99": quantile(v, 0.99),
                    "max": max(v) if v else float("nan")} for k, v in load.lat.items()}
        if load else None,
        "api_errors": load.errors if load else 0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--endpoints", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--api-clients", type=int, default=4)
    ap.add_argument("--api-rate", type=float, default=25,
                    help="list + detail pairs a second across the clients (0: back to back)")
    ap.add_argument("--tls", action="store_true",
                    help="agents and API clients connect over TLS, as in the field")
    ap.add_argument("--work", help="keep the filled store here (reused when present)")
    ap.add_argument("--phases", nargs="+", choices=["no-http", "idle", "api"],
                    default=["no-http", "idle", "api"],
                    help="which runs, in order: without --http, API idle, API under load")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="deskpulse-api-bench-")
    os.makedirs(work, exist_ok=True)
    # The filled store stays as it was filled; each phase runs on a copy, so
    # phases (and runs with --work) start from the same history.
    filled = os.path.join(work, "filled.db")
    db = os.path.join(work, "history.db")
    collector = os.path.join(args.bin, "collector", "deskpulse-collector")
    if not os.path.exists(filled):
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(args.bin, "bench", "deskpulse-store-scale"), "--db", filled,
                            "--endpoints", str(args.endpoints), "--customers",
                            str(args.customers), "--days", str(args.days), "--repeats", "1"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        print(f"filled {args.endpoints} endpoints of {args.customers} customers x {args.days} "
              f"days in {time.monotonic() - t0:.0f} s", flush=True)

    vendor = subprocess.run([collector, "api-token", "create", "--db", filled, "--role", "vendor"],
                            capture_output=True, text=True, check=True).stdout.strip()
    catalog = os.path.join(work, "catalog.sqlite")
    if not os.path.exists(catalog):
        subprocess.run([os.path.join(args.bin, "collector", "deskpulse-catalog"), "build",
                        "--out", catalog], capture_output=True, text=True, check=True)
    kinds = {"no-http": dict(with_api=False, serve_http=False),
             "idle": dict(with_api=False), "api": dict(with_api=True)}
    cert = ingest_bench.make_cert(work) if args.tls else None
    results = [phase(args, work, filled, db, catalog, vendor, cert, **kinds[k])
               for k in args.phases]
    print(f"API bench: {args.customers} customers, {args.endpoints} endpoints x {args.days} days "
          f"of history (SQLite), ingest {args.agents} agents at {args.rate}/s for {args.seconds} "
          f"s, API {args.api_clients} clients at {args.api_rate:g} list+detail pairs/s, "
          f"{'TLS' if args.tls else 'plain TCP'} "
          f"({os.cpu_count()} cores, everything on this machine)")
    for r in results:
        c = r["ack_ms_collector"] or {}
        what = ("with API load" if r["with_api"] else "API idle" if r["serve_http"]
                else "without --http")
        print(f"  ingest {what:<14}: "
              f"{r['durable_per_s']:.0f} durable reports/s, ack p50 {r['ack_ms']['p50']:.1f} ms "
              f"p99 {r['ack_ms']['p99']:.1f} ms (collector p99 {c.get('p99', float('nan')):.1f} "
              f"ms), collector CPU {r['collector_cpu_s']:.0f} s, start {r['start_s']:.0f} s, first "
              f"book assessment {r['book_s']:.1f} s, exit {r['rc']}/{r['sim_rc']}")
        w = r["writer"]
        if w:
            print(f"  {'':<21}  writer commit p50 {w['commit_p50_ms']:.1f} ms p99 "
                  f"{w['commit_p99_ms']:.1f} ms max {w['commit_max_ms']:.1f} ms")
        if r["book_rounds_ms"]:
            b = r["book_rounds_ms"]
            print(f"  {'':<21}  book rounds: {len(b)}, {min(b)}-{max(b)} ms")
        if r["api"]:
            for kind, a in r["api"].items():
                print(f"  API {kind:<7}: {a['n']} calls ({a['n'] / args.seconds:.0f}/s), "
                      f"p50 {a['p50']:.1f} ms, p99 "
                      f"{a['p99']:.1f} ms, max {a['max']:.1f} ms")
            print(f"  API errors: {r['api_errors']}")
    print("bars: API p99 <= 50 ms; ingest >= 50,000 durable reports/s with ack p99 <= 50 ms")
    ok = all(r["rc"] == 0 and r["sim_rc"] == 0 and r["api_errors"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
