"""The JSON API over real HTTP on loopback, with the real binary, on SQLite and
PostgreSQL: every customer-scoped route (walked from the router's own index)
refuses another customer's admin, revoked tokens are refused, bad bodies get
400 naming the field with nothing half-imported, a 50 MB body is refused
before it is read, failed logins are limited per peer and logged once, and
HTTPS uses the ingest certificate."""
import http.client
import json
import os
import re
import socket
import ssl
import time
import unittest

import dp
from test_business_cli import CUSTOMERS, shifted_samples

CONFIG = """
[store]
rollup_flush_s = 0.2
[http]
health_refresh_s = 1
"""


class Api:
    """A client for one collector's API."""

    def __init__(self, port, context=None):
        self.port = port
        self.context = context

    def call(self, method, path, token=None, body=None, content_type=None, headers=None):
        if self.context:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if content_type:
            h["Content-Type"] = content_type
        if isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None, dict(r.getheaders())
        finally:
            conn.close()

    def get(self, path, token):
        status, body, _ = self.call("GET", path, token)
        return status, body




class ApiTest(unittest.TestCase):
    def backends(self, work):
        yield "sqlite", os.path.join(work, "store.db")
        yield "postgresql", dp.pg_new_database(f"e2e_api_{os.getpid()}")

    def prepare(self, work, db):
        """Three customers with telemetry and imported signals; tokens of each role."""
        tokens = dp.create_tokens(db, work, [(CUSTOMERS[0], "healthy"), (CUSTOMERS[1], "typical"),
                                             (CUSTOMERS[2], "struggling")])
        for kind, path in shifted_samples(work).items():
            r = dp.run([dp.COLLECTOR, "import", "--db", db, "--kind", kind, path])
            self.assertEqual(r.returncode, 0, r.stderr)
        return tokens

    def test_routes_roles_and_bodies(self):
        with dp.tempdir() as work:
            config = os.path.join(work, "collector.toml")
            with open(config, "w") as f:
                f.write(CONFIG)
            for backend, db in self.backends(work):
                with self.subTest(backend=backend):
                    self.run_backend(work, db, config)

    def run_backend(self, work, db, config):
        tokens = self.prepare(work, db)
        vendor = dp.api_token(db, "vendor")
        admin_a = dp.api_token(db, "customer-admin", CUSTOMERS[0])
        admin_b = dp.api_token(db, "customer-admin", CUSTOMERS[1])
        revoked = dp.api_token(db, "customer-admin", CUSTOMERS[0])
        collector = dp.Collector(work, db, extra=["--config", config, "--catalog", dp.CATALOG],
                                 http=True)
        try:
            # Three days of history hold a whole weekday whatever today is; the
            # simulated fleet sends nothing for a weekend.
            r, summary = dp.fleetsim(collector.address, tokens, 9, "--days", 3, "--seed", 3)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            api = Api(collector.http_port)

            # The book is assessed in the background; wait for the telemetry in it.
            def book():
                status, body = api.get("/api/v1/customers", vendor)
                if status == 200 and all(c["tps"] is not None for c in body["customers"]):
                    return body
                return None
            listing = dp.wait_until(book, what="the customers with their TPS")
            self.assertEqual(listing["total"], 3)
            ids = {c["customer"]: c["id"] for c in listing["customers"]}
            a, b = ids[CUSTOMERS[0]], ids[CUSTOMERS[1]]
            risks = [c["risk"] for c in listing["customers"]]
            order = {"high": 0, "medium": 1, "low": 2, "unknown": 3}
            self.assertEqual(risks, sorted(risks, key=order.get), "ranked at-risk first")

            self.check_every_customer_route(api, vendor, admin_a, a, b)
            self.check_tokens(api, db, vendor, admin_a, admin_b, revoked, a)
            self.check_listing(api, vendor, ids)
            self.check_endpoints(api, vendor, a)
            self.check_peripherals(api, vendor, db, ids)
            self.check_bodies(api, vendor, b)
            self.check_large_body(api, vendor, collector)
            self.check_snapshots(db, a)
        finally:
            self.assertEqual(collector.stop(), 0)
        log = dp.read_text(collector.log_path)
        self.assertNotIn(" error ", log)

    def check_every_customer_route(self, api, vendor, admin_a, a, b):
        status, index = api.get("/api/v1", vendor)
        self.assertEqual(status, 200)
        routes = index["routes"]
        scoped = [r for r in routes if r["scope"] == "customer"]
        self.assertGreaterEqual(len(scoped), 10)
        # Every customer-scoped route's path names the customer.
        for r in scoped:
            self.assertIn("/customers/:customer", r["path"])
        status, endpoints = api.get(f"/api/v1/customers/{b}/endpoints", vendor)
        self.assertEqual(status, 200)
        b_endpoint = endpoints["endpoints"][0]["id"]
        status, endpoints = api.get(f"/api/v1/customers/{a}/endpoints", vendor)
        a_endpoint = endpoints["endpoints"][0]["id"]
        override = json.dumps({"value": 55, "reason": "exec sponsor left", "expires": "2099-01-01"})

        def fill(path, customer, endpoint):
            return (path.replace(":customer", str(customer)).replace(":endpoint", str(endpoint))
                    .replace(":factor", "relationship").replace(":kind", "reviews"))

        for r in scoped:
            with self.subTest(route=f"{r['method']} {r['path']}"):
                body = override if r["method"] != "GET" else None
                ctype = "application/json" if body else None
                # Customer A's admin on customer B: refused, and no data.
                status, got, _ = api.call(r["method"], fill(r["path"], b, b_endpoint), admin_a,
                                          body, ctype)
                self.assertIn(status, (403, 404))
                self.assertEqual(list(got), ["error"])
                self.assertNotIn(CUSTOMERS[1], json.dumps(got))
                # Even with A's own endpoint id under B, or B's endpoint under A.
                if ":endpoint" in r["path"]:
                    status, got, _ = api.call(r["method"], fill(r["path"], b, a_endpoint),
                                              admin_a, body, ctype)
                    self.assertIn(status, (403, 404))
                    status, got, _ = api.call(r["method"], fill(r["path"], a, b_endpoint),
                                              admin_a, body, ctype)
                    self.assertEqual(status, 404)
                    self.assertEqual(list(got), ["error"])
                # The vendor gets the data: the route and its parameters are real.
                status, got, _ = api.call(r["method"], fill(r["path"], b, b_endpoint), vendor,
                                          body, ctype)
                self.assertEqual(status, 200, got)
                # A's admin reads its own customer, and writes nothing.
                status, got, _ = api.call(r["method"], fill(r["path"], a, a_endpoint), admin_a,
                                          body, ctype)
                self.assertEqual(status, 403 if r["method"] != "GET" else 200, got)
        for r in routes:
            if r["scope"] == "vendor":
                with self.subTest(route=f"{r['method']} {r['path']}"):
                    status, got, _ = api.call(r["method"], fill(r["path"], a, a_endpoint),
                                              admin_a, "customer,date\n", "text/csv")
                    self.assertEqual(status, 403)
        # The list shows a customer-admin its own customer only.
        status, got = api.get("/api/v1/customers", admin_a)
        self.assertEqual(status, 200)
        self.assertEqual([c["id"] for c in got["customers"]], [a])

    def check_tokens(self, api, db, vendor, admin_a, admin_b, revoked, a):
        status, got = api.get(f"/api/v1/customers/{a}", revoked)
        self.assertEqual(status, 200)
        listing = dp.run([dp.COLLECTOR, "api-token", "list", "--db", db])
        ids = re.findall(r"^\s*(\d+)\s", listing.stdout, re.M)
        self.assertEqual(len(ids), 4, listing.stdout)
        r = dp.run([dp.COLLECTOR, "api-token", "revoke", "--db", db, ids[-1]])
        self.assertEqual(r.returncode, 0, r.stderr)
        status, got, headers = api.call("GET", f"/api/v1/customers/{a}", revoked)
        self.assertEqual(status, 401)
        self.assertEqual(got["error"]["field"], "Authorization")
        self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))
        status, got, _ = api.call("GET", "/api/v1/customers")
        self.assertEqual(status, 401)
        status, got, _ = api.call("GET", "/api/v1/customers", "dpa_" + "x" * 43)
        self.assertEqual(status, 401)
        status, _ = api.get(f"/api/v1/customers/{a}", admin_b)
        self.assertEqual(status, 404)

    def check_listing(self, api, vendor, ids):
        status, got = api.get("/api/v1/customers?sort=name&limit=1&offset=1", vendor)
        self.assertEqual(status, 200)
        self.assertEqual(got["total"], 3)
        self.assertEqual([c["customer"] for c in got["customers"]], [sorted(ids)[1]])
        status, got = api.get("/api/v1/customers?risk=high", vendor)
        self.assertEqual(status, 200)
        self.assertTrue(all(c["risk"] == "high" for c in got["customers"]))
        self.assertIn("Contoso Legal", [c["customer"] for c in got["customers"]])
        for bad, field in [("limit=0", "limit"), ("sort=size", "sort"), ("risk=dire", "risk"),
                           ("nope=1", "nope"), ("limit=1&limit=2", "limit")]:
            status, got = api.get(f"/api/v1/customers?{bad}", vendor)
            self.assertEqual(status, 400, bad)
            self.assertEqual(got["error"]["field"], field, bad)
        status, got = api.get("/api/v1/customers/999999", vendor)
        self.assertEqual(status, 404)
        status, got = api.get("/api/v1/customers/abc", vendor)
        self.assertEqual(status, 404)
        status, got = api.get("/api/v1/nowhere", vendor)
        self.assertEqual(status, 404)

    def check_endpoints(self, api, vendor, a):
        status, got = api.get(f"/api/v1/customers/{a}/endpoints", vendor)
        self.assertEqual(status, 200)
        self.assertGreater(got["total"], 0)
        e = got["endpoints"][0]
        for key in ("site", "pool", "hostname", "agent_id", "last_seen_unix_ms", "window"):
            self.assertIn(key, e)
        self.assertTrue(e["site"])
        status, one = api.get(f"/api/v1/customers/{a}/endpoints/{e['id']}", vendor)
        self.assertEqual(status, 200)
        self.assertEqual(one["latest_report"]["observed_at_unix_ms"], e["last_seen_unix_ms"])
        site = e["site"]
        status, got = api.get(f"/api/v1/customers/{a}/endpoints?site={site}", vendor)
        self.assertTrue(all(x["site"] == site for x in got["endpoints"]))
        status, hist = api.get(f"/api/v1/customers/{a}/endpoints/{e['id']}/history?days=7",
                               vendor)
        self.assertEqual(status, 200)
        self.assertGreater(sum(d["reports"] for d in hist["days"]), 0)
        status, detail = api.get(f"/api/v1/customers/{a}", vendor)
        self.assertEqual(status, 200)
        self.assertIsNotNone(detail["tps"])
        for c in ("boot", "latency", "peripherals", "stability"):
            self.assertIn(c, detail["components"])
        self.assertEqual(len(detail["trends"]["lhi"]["weekly"]), 13)

    def check_peripherals(self, api, vendor, db, ids):
        """The route is the `peripherals` command's analysis, with the same catalog classifying
        what the simulated endpoints sent without a verdict."""
        for name, cid in ids.items():
            with self.subTest(customer=name):
                status, got = api.get(f"/api/v1/customers/{cid}/peripherals", vendor)
                self.assertEqual(status, 200)
                want = dp.peripherals_json(db, name)
                self.assertEqual(got.pop("id"), cid)
                self.assertEqual(got, want)
                instances = got["compatibility"]["device_instances"]
                self.assertGreater(instances["working"] + instances["failed"], 0)
                self.assertEqual(got["catalog"]["unclassified"], 0)
                self.assertIsNotNone(got["catalog"]["version"])
                # Each endpoint's devices are its share of those instances, with the
                # same verdicts.
                status, eps = api.get(f"/api/v1/customers/{cid}/endpoints?limit=500", vendor)
                self.assertEqual(status, 200)
                devices = []
                for e in eps["endpoints"]:
                    status, one = api.get(f"/api/v1/customers/{cid}/endpoints/{e['id']}", vendor)
                    self.assertEqual(status, 200)
                    self.assertEqual(one["devices_window_days"], 30)
                    failing = [d["failed_in_window"] for d in one["devices"]]
                    self.assertEqual(failing, sorted(failing, reverse=True), "failing first")
                    devices += one["devices"]
                self.assertEqual(len(devices), instances["working"] + instances["failed"])
                self.assertEqual(sum(d["failed_in_window"] for d in devices), instances["failed"])
                verdicts = {}
                for d in devices:
                    self.assertEqual(d["classified_by"], "collector", d)
                    verdicts.setdefault(d["model"], set()).add(d["verdict"])
                models = {m["model"]: m for m in got["failing_models"] + got["working_models"]}
                self.assertEqual(set(verdicts), set(models))
                for model, seen in verdicts.items():
                    self.assertIn(models[model]["verdict"], seen, model)
                    self.assertEqual(sum(d["model"] == model for d in devices),
                                     models[model]["instances"], model)

    def signals_count(self, api, vendor, customer):
        status, got = api.get(f"/api/v1/customers/{customer}/signals", vendor)
        self.assertEqual(status, 200)
        return {k: len(got[k]) for k in ("surveys", "tickets", "reviews")}

    def check_bodies(self, api, vendor, b):
        before = self.signals_count(api, vendor, b)
        name = CUSTOMERS[1]
        cases = [
            ("surveys", "text/csv",
             f"customer,date,nps,respondents\n{name},2026-01-05,30,12\n{name},2026-02-05,900,12\n",
             "nps"),
            ("surveys", "text/csv", "customer,date,nps\n\"unterminated,2026-01-05,3\n", None),
            ("tickets", "application/json", '[{"customer": "' + name + '", "ticket_id": "T-1", ', None),
            ("tickets", "application/json",
             json.dumps([{"customer": name, "ticket_id": "T-9", "opened": "2026-11-01T10:00:00Z",
                          "severity": 2},
                         {"customer": name, "ticket_id": "T-10", "opened": "yesterday",
                          "severity": 2}]), "opened"),
            ("reviews", "text/csv", "customer,date\nNobody Inc,2026-10-01\n", "customer"),
        ]
        for kind, ctype, body, field in cases:
            with self.subTest(kind=kind, body=body[:40]):
                status, got, _ = api.call("POST", f"/api/v1/imports/{kind}", vendor, body, ctype)
                self.assertEqual(status, 400, got)
                self.assertIn("nothing imported", got["error"]["message"])
                if field:
                    self.assertEqual(got["error"]["field"], field)
                else:
                    self.assertTrue(got["error"]["message"])
        self.assertEqual(self.signals_count(api, vendor, b), before, "nothing half-imported")
        # Simple content types (what a cross-site form can send) are refused.
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                      None):
            status, got, _ = api.call("POST", "/api/v1/imports/reviews", vendor,
                                      f"customer,date\n{name},2026-10-02\n", ctype)
            self.assertEqual(status, 415, ctype)
            self.assertEqual(got["error"]["field"], "Content-Type")
        self.assertEqual(self.signals_count(api, vendor, b), before)
        # A good import, then the same bytes again: a no-op.
        good = f"customer,date\n{name},2026-10-02\n"
        status, got, _ = api.call("POST", "/api/v1/imports/reviews", vendor, good,
                                  "text/csv; charset=utf-8")
        self.assertEqual(status, 200, got)
        self.assertEqual(got["rows"], 1)
        status, got, _ = api.call("POST", "/api/v1/imports/reviews", vendor, good, "text/csv")
        self.assertTrue(got["already_imported"])
        status, log = api.get("/api/v1/imports?limit=1", vendor)
        self.assertEqual(status, 200)
        self.assertEqual([(i["kind"], i["rows"]) for i in log["imports"]], [("reviews", 1)])
        # Overrides: bad JSON and bad values name the field.
        path = f"/api/v1/customers/{b}/overrides/service"
        for body, field in [("{", "body"), ("[1]", "body"),
                            (json.dumps({"value": 150, "reason": "x", "expires": "2099-01-01"}),
                             "value"),
                            (json.dumps({"value": 50, "reason": "", "expires": "2099-01-01"}),
                             "reason"),
                            (json.dumps({"value": 50, "reason": "x", "expires": "2020-01-01"}),
                             "expires"),
                            (json.dumps({"value": 50, "reason": "x", "expires": "2099-01-01",
                                         "extra": 1}), "extra")]:
            status, got, _ = api.call("PUT", path, vendor, body, "application/json")
            self.assertEqual(status, 400, body)
            self.assertEqual(got["error"]["field"], field, body)
        status, got, _ = api.call("PUT", f"/api/v1/customers/{b}/overrides/technical", vendor,
                                  json.dumps({"value": 50, "reason": "x",
                                              "expires": "2099-01-01"}), "application/json")
        self.assertEqual(status, 400)
        self.assertEqual(got["error"]["field"], "factor")
        status, got, _ = api.call("PUT", path, vendor, json.dumps(
            {"value": 40, "reason": "three escalations", "expires": "2099-01-01"}),
            "application/json")
        self.assertEqual(status, 200, got)
        status, got = api.get(f"/api/v1/customers/{b}/overrides", vendor)
        self.assertIn({"factor": "service", "value": 40, "reason": "three escalations",
                       "active": True},
                      [{k: o[k] for k in ("factor", "value", "reason", "active")}
                       for o in got["overrides"]])
        status, detail = api.get(f"/api/v1/customers/{b}", vendor)
        service = [f for f in detail["factors"] if f["factor"] == "service"][0]
        self.assertEqual(service["override"]["value"], 40)

    def check_large_body(self, api, vendor, collector):
        """50 MB announced: the connection is closed once the headers are read."""
        rss_before = dp.rss_kb(collector.proc.pid)
        s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        s.sendall((f"POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {vendor}\r\nContent-Type: text/csv\r\n"
                   f"Content-Length: {50 * 1024 * 1024}\r\n\r\n").encode())
        s.sendall(b"customer,date,nps\n" * 100)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        # Refused: no answer but the close, long before 50 MB could have been sent.
        self.assertFalse(data.startswith(b"HTTP/1.1 200"), data[:100])
        sent = 0
        chunk = b"x" * 65536
        try:
            for _ in range(800):
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.close()
        self.assertLess(sent, 50 * 1024 * 1024, "the body was read")
        self.assertLess(dp.rss_kb(collector.proc.pid) - rss_before, 20 * 1024)
        status, _ = api.get("/api/v1", vendor)
        self.assertEqual(status, 200, "the server goes on")

    def check_snapshots(self, db, customer):
        """serve records the day's snapshot itself."""
        r = dp.run([dp.COLLECTOR, "health", "--db", db, "--json", "--no-record"])
        self.assertEqual(r.returncode, 0, r.stderr)
        book = json.loads(r.stdout)
        weekly = [c for c in book["customers"] if c["id"] == customer][0]["trends"]["lhi"]
        self.assertIsNotNone(weekly["weekly"][-1], "today's snapshot, recorded by serve")


class ApiLimitsTest(unittest.TestCase):
    def test_failed_logins_are_limited_and_logged_once(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            config = os.path.join(work, "collector.toml")
            with open(config, "w") as f:
                f.write("[http]\nfailed_logins_per_window = 5\nfailed_login_window_s = 3\n")
            vendor = dp.api_token(db, "vendor")
            collector = dp.Collector(work, db, extra=["--config", config], http=True)
            try:
                api = Api(collector.http_port)
                for i in range(5):
                    status, _ = api.get("/api/v1", f"dpa_wrong{i}")
                    self.assertEqual(status, 401)
                for i in range(20):
                    status, got, headers = api.call("GET", "/api/v1", vendor)
                    self.assertEqual(status, 429)
                    self.assertIn("Retry-After", headers)
                time.sleep(3.2)
                status, _ = api.get("/api/v1", vendor)
                self.assertEqual(status, 200, "the window ended")
            finally:
                self.assertEqual(collector.stop(), 0)
            log = dp.read_text(collector.log_path)
            self.assertEqual(log.count("failed logins from 127.0.0.1"), 1, log)

    def test_https_with_the_ingest_certificate(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            cert, key = dp.make_cert(work)
            vendor = dp.api_token(db, "vendor")
            collector = dp.Collector(work, db, extra=["--tls-cert", cert, "--tls-key", key],
                                     http=True)
            try:
                ctx = ssl.create_default_context(cafile=cert)
                api = Api(collector.http_port, ctx)
                status, got = api.get("/api/v1", vendor)
                self.assertEqual(status, 200)
                self.assertEqual(got["token"]["role"], "vendor")
                # Plain HTTP to the TLS port gets no answer.
                plain = Api(collector.http_port)
                with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
                    plain.get("/api/v1", vendor)
            finally:
                self.assertEqual(collector.stop(), 0)

    def test_plain_http_off_loopback_is_refused(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            r = dp.run([dp.COLLECTOR, "serve", "--db", db, "--http", "0.0.0.0:0"])
            self.assertEqual(r.returncode, 2)
            self.assertIn("API tokens would cross the network in clear", r.stderr)

    def test_a_catalog_that_cannot_be_read_stops_serve(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            bad = os.path.join(work, "not-a-catalog.sqlite")
            with open(bad, "w") as f:
                f.write("this is not a database\n" * 100)
            for path in (os.path.join(work, "missing.sqlite"), bad):
                with self.subTest(path=path):
                    r = dp.run([dp.COLLECTOR, "serve", "--db", db, "--listen", "127.0.0.1:0",
                                "--http", "127.0.0.1:0", "--catalog", path], timeout=60)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn(path, r.stderr)


if __name__ == "__main__":
    unittest.main()
