#!/usr/bin/env python3
"""API first-byte latency on fresh HTTPS connections against a kept-alive one.

Serves a small store (3 customers, 150 simulated endpoints over 30 days) with the
JSON API over TLS and times, from the request sent to the first byte of the
answer, GET /api/v1/customers and one customer's detail: N times each on a new
TLS connection (handshake not counted), and N times on one kept-alive
connection. The bar (docs/quality.md): on a fresh connection the first byte
comes within 5 ms of a kept-alive call at p99. With --baseline BIN, the same run
measures another build too (the previous one), so the two compare on one
machine at one time.

Usage: python3 bench/api_first_byte.py --bin build [--baseline OLD_BUILD] [--calls 300]
"""
import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import ingest_bench
import tool_version

BAR_MS = 5.0


def quantile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def request(path, token):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "\r\n").encode()


def serve_with_api(collector, work, db, extra=()):
    """`collector serve` of `db` with the API on free loopback ports, once both listen:
    (process, its log file, ingest port, HTTP port)."""
    port_file, http_file = os.path.join(work, "port"), os.path.join(work, "http-port")
    log = open(os.path.join(work, "collector.log"), "w")
    proc = subprocess.Popen([collector, "serve", "--db", db, "--listen", "127.0.0.1:0",
                             "--port-file", port_file, "--http", "127.0.0.1:0",
                             "--http-port-file", http_file, *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while not all(os.path.exists(p) and open(p).read().strip() for p in (port_file, http_file)):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the collector did not start (see collector.log)")
        time.sleep(0.05)
    return proc, log, int(open(port_file).read()), int(open(http_file).read())


def read_response(conn, buf=b""):
    """Reads one HTTP/1.1 response with a Content-Length (`buf`: what was
    read of it already); returns its body, which must be a 200's."""
    status, body = read_reply(conn, buf)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    return body


def read_reply(conn, buf=b""):
    """Reads one HTTP/1.1 response with a Content-Length; returns (status, body)."""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-response")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split(b" ", 2)[1]), body


def first_byte(conn, req):
    t0 = time.perf_counter()
    conn.sendall(req)
    first = conn.recv(65536)  # the first TLS record decrypted
    t1 = time.perf_counter()
    read_response(conn, first)
    return (t1 - t0) * 1000


def measure(port, cert, token, paths, calls):
    ctx = ssl.create_default_context(cafile=cert)
    out = {}
    for path in paths:
        req = request(path, token)
        fresh = []
        for _ in range(calls):
            with socket.create_connection(("127.0.0.1", port)) as raw:
                # As curl and browsers do.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                    fresh.append(first_byte(conn, req))
        kept = []
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                first_byte(conn, req)  # warm
                for _ in range(calls):
                    kept.append(first_byte(conn, req))
        out[path] = {"fresh": fresh, "kept": kept}
    return out


def run_build(bin_dir, work, calls, endpoints):
    collector = os.path.join(bin_dir, "collector", "deskpulse-collector")
    fleetsim = os.path.join(bin_dir, "agent", "deskpulse-fleetsim")
    catalog_tool = os.path.join(bin_dir, "collector", "deskpulse-catalog")
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "store.db")
    cert, key = ingest_bench.make_cert(work)
    catalog = os.path.join(work, "catalog.sqlite")
    subprocess.run([catalog_tool, "build", "--out", catalog], check=True,
                   stdout=subprocess.DEVNULL)
    tokens = os.path.join(work, "tokens.txt")
    with open(tokens, "w") as f:
        for name, profile in (("Northwind", "healthy"), ("Contoso", "typical"),
                              ("Fabrikam", "struggling")):
            t = subprocess.run([collector, "token", "create", "--db", db, "--customer", name],
                               check=True, capture_output=True, text=True).stdout.strip()
            f.write(f"{name} {t} {profile}\n")
    token = subprocess.run([collector, "api-token", "create", "--db", db, "--role", "vendor"],
                           check=True, capture_output=True, text=True).stdout.strip()
    proc, log, port, http_port = serve_with_api(collector, work, db,
                                                ["--tls-cert", cert, "--tls-key", key])
    try:
        subprocess.run([fleetsim, "--collector", f"127.0.0.1:{port}", "--ca", cert, "--tokens",
                        tokens, "--catalog", catalog, "--endpoints", str(endpoints), "--days", "30"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The book's first assessment.
        ctx = ssl.create_default_context(cafile=cert)
        deadline = time.monotonic() + 60
        while True:
            with socket.create_connection(("127.0.0.1", http_port)) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                    conn.sendall(request("/api/v1/customers", token))
                    try:
                        body = json.loads(read_response(conn))
                        if body.get("customers"):
                            break
                    except RuntimeError:
                        pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API's book never filled")
            time.sleep(0.2)
        cid = body["customers"][0]["id"]
        return measure(http_port, cert, token,
                       ["/api/v1/customers", f"/api/v1/customers/{cid}"], calls)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def report(name, results):
    ok = True
    for path, r in results.items():
        f, k = r["fresh"], r["kept"]
        gap = quantile(f, 0.99) - quantile(k, 0.99)
        ok = ok and gap <= BAR_MS
        print(f"{name:<9} {path:<26} fresh p50 {quantile(f, 0.5):6.2f} p99 {quantile(f, 0.99):6.2f}"
              f" max {max(f):6.2f} | kept-alive p50 {quantile(k, 0.5):6.2f} p99 "
              f"{quantile(k, 0.99):6.2f} max {max(k):6.2f} ms | p99 gap {gap:+6.2f} ms "
              f"({'within' if gap <= BAR_MS else 'over'} the {BAR_MS:g} ms bar); "
              f"fresh over 30 ms: {sum(1 for x in f if x > 30)} of {len(f)}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", required=True, help="the build directory to measure")
    ap.add_argument("--baseline", help="another build to measure in the same run")
    ap.add_argument("--calls", type=int, default=300, help="calls per path and connection kind")
    ap.add_argument("--endpoints", type=int, default=1000, help="simulated endpoints (the demo's)")
    args = ap.parse_args()
    builds = [("this", args.bin)] + ([("baseline", args.baseline)] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="deskpulse-first-byte-") as work:
        results = {name: run_build(os.path.abspath(b), os.path.join(work, name), args.calls,
                                   args.endpoints)
                   for name, b in builds}
    print(f"API first byte over TLS, {args.calls} calls each, ms from the request sent:")
    met = {name: report(name, r) for name, r in results.items()}
    return 0 if met["this"] else 1


if __name__ == "__main__":
    sys.exit(main())
