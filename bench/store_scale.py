#!/usr/bin/env python3
"""Store scale: the score query over N endpoints x D days, on SQLite and on PostgreSQL.

Runs deskpulse-store-scale, which fills a fresh store through the ingest
interface (one report a day per endpoint, with a boot, a session window and two
devices; rollups flushed daily) and then times the score query for one customer
and for all customers, as `deskpulse-collector scores` runs it. PostgreSQL is a
throwaway cluster on this machine (tests/fakes/pg_cluster.sh) unless --db names
a server. Prints figures; asserts none (docs/quality.md: <= 10 ms one customer,
<= 2 s all, at 100,000 endpoints x 30 days).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import tool_version

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "..", "tests", "fakes", "pg_cluster.sh")


def psql(uri, sql):
    subprocess.run(["psql", uri, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   capture_output=True)


def run(binary, db, args):
    r = subprocess.run([binary, "--db", db, "--endpoints", str(args.endpoints), "--customers",
                        str(args.customers), "--days", str(args.days)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(ap)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--endpoints", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--db", help="a postgresql:// server URI (each run gets a fresh database)")
    ap.add_argument("--sqlite-only", action="store_true")
    args = ap.parse_args()
    binary = os.path.join(args.bin, "bench", "deskpulse-store-scale")
    results = []
    with tempfile.TemporaryDirectory(prefix="deskpulse-scale-") as work:
        results.append(run(binary, os.path.join(work, "scale.db"), args))
        if not args.sqlite_only:
            state = None
            server = args.db
            if not server:
                state = os.path.join(work, "pg")
                subprocess.run(["bash", CLUSTER, "start", state], check=True)
                server = open(os.path.join(state, "uri")).read().strip()
            try:
                name = f"scale_{os.getpid()}"
                psql(server, f"DROP DATABASE IF EXISTS {name}")
                psql(server, f"CREATE DATABASE {name}")
                results.append(run(binary, server.rsplit("/", 1)[0] + "/" + name, args))
            finally:
                if state:
                    subprocess.run(["bash", CLUSTER, "stop", state])
    print(f"store scale: {args.endpoints} endpoints of {args.customers} customers x {args.days} "
          f"days ({os.cpu_count()} cores, everything on this machine)")
    for r in results:
        print(f"  {r['backend']:<10} {r['reports']:>9} reports filled in {r['fill_s']:.0f} s "
              f"({r['fill_reports_per_s']:.0f}/s with rollups)  score one customer: median "
              f"{r['one_customer_ms']['median']:.2f} ms, max {r['one_customer_ms']['max']:.2f} "
              f"ms  all {r['customers']}: median {r['all_customers_ms']['median']:.0f} ms, max "
              f"{r['all_customers_ms']['max']:.0f} ms", flush=True)
    print("bar: <= 10 ms one customer, <= 2 s all customers (100,000 endpoints x 30 days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
