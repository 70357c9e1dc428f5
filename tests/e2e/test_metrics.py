"""/metrics over real HTTP from the real binary (docs/metrics.md): it passes
`promtool check metrics`, its figures agree with what the simulated fleet sent,
a series with no data is absent rather than 0, label values keep markup and
quotes intact, it is open on loopback and needs a vendor token elsewhere (in a
network namespace of the test's own), and every query of the Grafana dashboards
and the alert rules names a metric the collector exports.

Runs on the system Python: Debian's python3-prometheus-client parses the text
format, python3-yaml the rule file."""
import glob
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
import unittest

import yaml
from prometheus_client.parser import text_string_to_metric_families

import dp

CUSTOMERS = [("Northwind <b>Health</b>", "healthy"), ('Contoso "Legal"', "typical"),
             ("Fabrikam Retail", "struggling")]
SILENT = "Tailspin Toys"  # has a token, sends nothing
OFF_LOOPBACK = "10.213.0.1"  # an address of the test's own network namespace
DASHBOARDS = os.path.join(dp.SOURCE_DIR, "dashboards")
CONFIG = """
[store]
rollup_flush_s = 0.2
[http]
health_refresh_s = 1
"""


def get(port, path, token=None, host="127.0.0.1", context=None):
    if context:
        conn = http.client.HTTPSConnection(host, port, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        conn.close()


def families(text):
    """{family name: {(sample name, labels as sorted tuple): value}}."""
    out = {}
    for f in text_string_to_metric_families(text):
        out[f.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
    return out


def value(fams, family, sample=None, **labels):
    return fams[family][(sample or family, tuple(sorted(labels.items())))]


def exported_sample_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names



class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = dp.tempdir()
        work = cls.work.name
        db = os.path.join(work, "store.db")
        tokens = dp.create_tokens(db, work, CUSTOMERS)
        r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", SILENT])
        assert r.returncode == 0, r.stderr
        config = os.path.join(work, "collector.toml")
        with open(config, "w") as fh:
            fh.write(CONFIG)
        cls.collector = dp.Collector(work, db, extra=["--config", config], http=True)
        port = cls.collector.http_port
        # Before any report: the agents' and the SLOs' counters have no data.
        status, cls.empty, _ = get(port, "/metrics")
        assert status == 200, cls.empty
        # Five days back hold three weekdays whatever today is (the simulated
        # fleet sends nothing on weekends): two boots after each agent's first.
        r, cls.summary = dp.fleetsim(cls.collector.address, tokens, 30, "--days", 5, "--seed", 4)
        assert r.returncode == 0, r.stderr[-2000:]
        deadline = time.monotonic() + 60
        while True:
            status, text, cls.headers = get(port, "/metrics")
            assert status == 200, text
            fams = families(text)
            tps = fams.get("deskpulse_customer_tps", {})
            if len(tps) == len(CUSTOMERS) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cls.text, cls.fams = text, fams

    @classmethod
    def tearDownClass(cls):
        rc = cls.collector.stop()
        cls.work.cleanup()
        assert rc == 0, rc

    def test_promtool_accepts_the_exposition(self):
        for text in (self.empty, self.text):
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(self.headers["Content-Type"].startswith("text/plain; version=0.0.4"))

    def test_figures_agree_with_what_was_sent(self):
        f = self.fams
        acked = self.summary["reports_acked"]
        self.assertEqual(value(f, "deskpulse_store_reports_stored", "deskpulse_store_reports_stored_total"),
                         acked)
        self.assertEqual(value(f, "deskpulse_ingest_connections_accepted",
                               "deskpulse_ingest_connections_accepted_total"),
                         self.summary["connects"])
        # Histograms: each batch's ack was observed; +Inf holds them all.
        count = value(f, "deskpulse_ingest_ack_duration_seconds",
                      "deskpulse_ingest_ack_duration_seconds_count")
        self.assertGreater(count, 0)
        self.assertEqual(value(f, "deskpulse_ingest_ack_duration_seconds",
                               "deskpulse_ingest_ack_duration_seconds_bucket", le="+Inf"), count)
        self.assertIn((("deskpulse_ingest_ack_duration_seconds_bucket"), (("le", "0.05"),)),
                      f["deskpulse_ingest_ack_duration_seconds"], "the ingest bar is a bucket bound")
        commits = value(f, "deskpulse_store_commits", "deskpulse_store_commits_total")
        self.assertEqual(value(f, "deskpulse_store_commit_duration_seconds",
                               "deskpulse_store_commit_duration_seconds_count"), commits)
        # The simulated agents report self-health: restarts rise with each boot.
        self.assertGreater(value(f, "deskpulse_agent_restarts", "deskpulse_agent_restarts_total"), 0)
        for name in ("deskpulse_agent_spool_dropped_reports", "deskpulse_agent_spool_corrupt_records",
                     "deskpulse_agent_rejected_reports"):
            self.assertGreaterEqual(value(f, name, name + "_total"), 0)
        # The SLO counters: downtime within session time, slow windows within windows.
        session = value(f, "deskpulse_session_seconds", "deskpulse_session_seconds_total")
        down = value(f, "deskpulse_session_downtime_seconds", "deskpulse_session_downtime_seconds_total")
        windows = value(f, "deskpulse_session_window_seconds", "deskpulse_session_window_seconds_total")
        slow = value(f, "deskpulse_session_slow_window_seconds",
                     "deskpulse_session_slow_window_seconds_total")
        self.assertGreater(session, 0)
        self.assertTrue(0 < down < session, (down, session))
        self.assertTrue(0 < slow < windows, (slow, windows))
        self.assertEqual(value(f, "deskpulse_build_info", version="0.1.0", protocol="v1"), 1)

    def test_customer_gauges_only_with_data(self):
        f = self.fams
        names = {c for c, _ in CUSTOMERS}
        for family in ("deskpulse_customer_tps", "deskpulse_customer_lhi",
                       "deskpulse_customer_endpoints_reporting"):
            got = {dict(labels)["customer"] for _, labels in f[family]}
            # Markup and quotes survive the text format's escaping.
            self.assertEqual(got, names, family)
        for c in names:
            self.assertEqual(value(f, "deskpulse_customer_endpoints_reporting", customer=c), 10)
            self.assertTrue(0 <= value(f, "deskpulse_customer_tps", customer=c) <= 100)
        # No history 30 days back: no 30-day change, rather than a 0.
        self.assertNotIn("deskpulse_customer_tps_change_30d", f)
        # Healthy outscores struggling.
        self.assertGreater(value(f, "deskpulse_customer_tps", customer=CUSTOMERS[0][0]),
                           value(f, "deskpulse_customer_tps", customer=CUSTOMERS[2][0]))
        # The silent customer has no series at all, and the only label is customer.
        self.assertNotIn(SILENT, self.text)
        self.assertEqual(len(f["deskpulse_customer_tps"]), len(CUSTOMERS))

    def test_no_data_means_no_series(self):
        f = families(self.empty)
        for absent in ("deskpulse_agent_restarts", "deskpulse_agent_spool_dropped_reports",
                       "deskpulse_session_seconds", "deskpulse_session_window_seconds",
                       "deskpulse_customer_tps", "deskpulse_customer_lhi",
                       "deskpulse_customer_endpoints_reporting"):
            self.assertNotIn(absent, f)
        # What is a true 0 stays: nothing was stored yet.
        self.assertEqual(value(f, "deskpulse_store_reports_stored", "deskpulse_store_reports_stored_total"), 0)

    def test_loopback_needs_no_token_and_bad_tokens_do_not_matter(self):
        status, _, _ = get(self.collector.http_port, "/metrics", token="dpa_not-a-token")
        self.assertEqual(status, 200)

    def test_every_dashboard_and_rule_query_names_an_exported_metric(self):
        exported = exported_sample_names(self.text)
        # Families that exist only with data this run cannot have: the 30-day
        # change needs a month of snapshots (the unit tests cover its export).
        exported.add("deskpulse_customer_tps_change_30d")
        with open(os.path.join(DASHBOARDS, "prometheus", "deskpulse.rules.yml")) as fh:
            groups = yaml.safe_load(fh)["groups"]
        rules = [r for g in groups for r in g["rules"]]
        recorded = {r["record"] for r in rules if "record" in r}
        exprs = [(r.get("record") or r["alert"], r["expr"]) for r in rules]
        boards = sorted(glob.glob(os.path.join(DASHBOARDS, "grafana", "*.json")))
        self.assertEqual(len(boards), 3)
        for path in boards:
            with open(path) as fh:
                board = json.load(fh)
            for panel in board["panels"]:
                for target in panel.get("targets", []):
                    exprs.append((f"{os.path.basename(path)}: {panel['title']}", target["expr"]))
                if panel["type"] != "row":
                    self.assertEqual(panel["datasource"]["uid"], "deskpulse-prometheus", panel["title"])
            for var in board["templating"]["list"]:
                exprs.append((f"{os.path.basename(path)}: ${var['name']}", var["query"]["query"]))
        self.assertGreater(len(exprs), 40)
        for where, expr in exprs:
            names = set(re.findall(r"\b(deskpulse[_:][a-zA-Z0-9_:]*)", expr))
            self.assertTrue(names or "up{" in expr, f"{where}: {expr}")
            for name in names:
                self.assertTrue(name in exported or name in recorded,
                                f"{where} queries {name}, which the collector does not export")


@unittest.skipUnless(os.geteuid() == 0, "a network namespace of the test's own needs root")
class MetricsOffLoopbackTest(unittest.TestCase):
    """Off loopback, /metrics needs a vendor token: a collector serving HTTPS
    on an address of a network namespace the test creates for itself."""

    def test_needs_a_vendor_token(self):
        if os.environ.get("DESKPULSE_IN_NETNS") != "1":
            script = (f"ip link set lo up && ip addr add {OFF_LOOPBACK}/32 dev lo && "
                      f"exec {sys.executable} -m unittest -v "
                      "test_metrics.MetricsOffLoopbackTest.test_needs_a_vendor_token")
            r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                               text=True, timeout=300, env={**os.environ, "DESKPULSE_IN_NETNS": "1"})
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("OK", r.stderr)
            return
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            cert, key = dp.make_cert(work)
            vendor = dp.api_token(db, "vendor")
            dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", CUSTOMERS[0][0]])
            admin = dp.api_token(db, "customer-admin", CUSTOMERS[0][0])
            port_file = os.path.join(work, "http-port")
            log = open(os.path.join(work, "collector.log"), "w")
            proc = dp.track(subprocess.Popen(
                [dp.COLLECTOR, "serve", "--db", db, "--listen", "127.0.0.1:0", "--tls-cert", cert,
                 "--tls-key", key, "--http", f"{OFF_LOOPBACK}:0", "--http-port-file", port_file],
                stdout=subprocess.DEVNULL, stderr=log))
            try:
                deadline = time.monotonic() + 30
                while not (os.path.exists(port_file) and open(port_file).read().strip()):
                    self.assertIsNone(proc.poll(), dp.read_text(log.name))
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
                port = int(open(port_file).read())
                ctx = ssl.create_default_context(cafile=cert)
                ctx.check_hostname = False  # the certificate names 127.0.0.1

                def call(token):
                    return get(port, "/metrics", token, host=OFF_LOOPBACK, context=ctx)
                status, body, headers = call(None)
                self.assertEqual(status, 401)
                self.assertEqual(headers.get("WWW-Authenticate"), "Bearer")
                self.assertNotIn("deskpulse_", body)
                status, body, _ = call("dpa_not-a-token")
                self.assertEqual(status, 401)
                status, body, _ = call(admin)
                self.assertEqual(status, 403)
                self.assertIn("vendor token", json.loads(body)["error"]["message"])
                self.assertNotIn("deskpulse_", body)
                status, body, _ = call(vendor)
                self.assertEqual(status, 200)
                self.assertIn("deskpulse_build_info", body)
            finally:
                proc.terminate()
                self.assertEqual(proc.wait(timeout=60), 0)
                log.close()


if __name__ == "__main__":
    unittest.main()
