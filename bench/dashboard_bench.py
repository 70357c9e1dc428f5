#!/usr/bin/env python3
"""Dashboard benchmark: how long the fleet view takes to paint with 500 customers.

Fills a store with 500 customers x 20,000 endpoints x 30 days of history
(bench/deskpulse-store-scale), serves it with `deskpulse-collector serve
--http` on loopback, waits for the book's first assessment, then loads the
fleet view in headless Chromium (Debian's, through playwright-core) --runs
times. Each load is timed from navigation start to the frame after the
500-row table went in (the page's `fleet-painted` mark), so it includes the
HTML, scripts, the /api/v1 calls, building the table and its sparklines, and
layout. Prints p50 and the worst load, the customers list's own response
time, and the bar (<= 1 s). Asserts no timings.

    python3 bench/dashboard_bench.py [--bin build-test] [--runs 10]
"""
import argparse
import json
import random
import sqlite3
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import tool_version

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WEB = os.path.join(ROOT, "collector", "web")

PAINT = r"""
const { createRequire } = require('node:module');
const req = createRequire(process.env.WEB + '/package.json');
const { chromium } = req('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  await page.goto(process.env.URL);
  await page.fill('#token', process.env.TOKEN);
  await page.click('button[type=submit]');
  await page.waitForSelector('body[data-painted=fleet]', { timeout: 120000 });
  const out = [];
  for (let i = 0; i < Number(process.env.RUNS); i++) {
    await page.goto(process.env.URL + '#/fleet?r=' + i);
    await page.reload();
    await page.waitForSelector('body[data-painted=fleet]', { timeout: 120000 });
    const t = await page.evaluate(() => ({
      paint_ms: performance.getEntriesByName('fleet-painted')[0].startTime,
      rows: document.querySelectorAll('#fleet tbody tr').length,
      sparklines: document.querySelectorAll('#fleet svg.spark polyline').length,
      list_ms: performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/customers'))
        .map((e) => e.responseEnd - e.requestStart)[0],
    }));
    out.push(t);
  }
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tool_version.add_version(p)
    p.add_argument("--bin", default=os.path.join(ROOT, "build-test"))
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--endpoints", type=int, default=20000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    collector = os.path.join(args.bin, "collector", "deskpulse-collector")
    with tempfile.TemporaryDirectory() as work:
        db = os.path.join(work, "store.db")
        t0 = time.monotonic()
        subprocess.run([os.path.join(args.bin, "bench", "deskpulse-store-scale"), "--db", db,
                        "--endpoints", str(args.endpoints), "--customers", str(args.customers),
                        "--days", str(args.days), "--repeats", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"store: {args.customers} customers, {args.endpoints} endpoints, {args.days} days "
              f"(filled in {time.monotonic() - t0:.0f} s)")
        # 91 days of daily snapshots per customer, as a long-running serve records
        # them: the fleet view's sparklines read 13 weekly points from them.
        rng = random.Random(1)
        today = int(time.time() * 1000) // 86_400_000 * 86_400_000
        con = sqlite3.connect(db)
        with con:
            ids = [r[0] for r in con.execute("SELECT customer_id FROM customers")]
            rows = []
            for cid in ids:
                lhi = rng.uniform(40, 95)
                for d in range(91, 0, -1):
                    lhi = min(100, max(0, lhi + rng.gauss(0, 1.5)))
                    rows.append((cid, today - d * 86_400_000, lhi + 5, lhi, 1.0, "low",
                                 today - d * 86_400_000))
            con.executemany("INSERT INTO health_snapshots VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.close()
        print(f"history: 91 daily snapshots of each of {len(ids)} customers")
        token = subprocess.run([collector, "api-token", "create", "--db", db, "--role", "vendor"],
                               check=True, capture_output=True, text=True).stdout.split()[-1]
        port_file = os.path.join(work, "http-port")
        log = open(os.path.join(work, "collector.log"), "w")
        proc = subprocess.Popen([collector, "serve", "--db", db, "--listen", "127.0.0.1:0",
                                 "--port-file", os.path.join(work, "port"), "--http", "127.0.0.1:0",
                                 "--http-port-file", port_file], stdout=log, stderr=log)
        try:
            while not os.path.exists(port_file) or not open(port_file).read().strip():
                time.sleep(0.1)
            port = int(open(port_file).read())
            url = f"http://127.0.0.1:{port}/"
            t0 = time.monotonic()
            while True:  # the book's first assessment
                try:
                    rq = urllib.request.Request(f"{url}api/v1/customers?limit=1",
                                                headers={"Authorization": f"Bearer {token}"})
                    urllib.request.urlopen(rq, timeout=30).read()
                    break
                except Exception:  # 503 until the first assessment is done
                    time.sleep(0.5)
            print(f"book: first assessment in {time.monotonic() - t0:.1f} s")
            env = dict(os.environ, WEB=WEB, URL=url, TOKEN=token, RUNS=str(args.runs))
            r = subprocess.run(["node", "-e", PAINT], env=env, capture_output=True, text=True,
                               timeout=900)
            if r.returncode != 0:
                sys.exit(f"dashboard_bench: the browser run failed:\n{r.stderr[-3000:]}")
            runs = json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait(60)
        paints = sorted(x["paint_ms"] for x in runs)
        lists = sorted(x["list_ms"] for x in runs if x["list_ms"] is not None)
        print(f"fleet view: {runs[0]['rows']} rows, {runs[0]['sparklines']} sparkline lines; paint p50 {paints[len(paints) // 2]:.0f} ms, "
              f"worst {paints[-1]:.0f} ms over {len(paints)} loads (bar: <= 1000 ms)")
        if lists:
            print(f"  of which GET /api/v1/customers?limit=500: p50 {lists[len(lists) // 2]:.0f} ms, "
                  f"worst {lists[-1]:.0f} ms")


if __name__ == "__main__":
    main()
