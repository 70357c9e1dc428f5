"""Peripheral compatibility end to end: the fleet simulator draws devices from the
catalog, the collector stores them, and `deskpulse-collector peripherals` must agree
with the raw reports (decoded here with protoc's Python output) and with `scores`.

Runs on the system Python (python3-protobuf is a Debian package)."""
import collections
import os
import tempfile
import unittest

import dp

FAILURES = {2, 3, 4, 5}  # no driver, blocked by policy, redirect failed, error


def load_report_module(workdir):
    """deskpulse.v1.report_pb2, generated from the tree's .proto by protoc."""
    return dp.load_proto_modules(workdir)[0]


def expected_from_raw_reports(db, customer, pb):
    """Per model: instances, failed, endpoints (all, failing), reconnects — from raw bytes."""
    (cid,) = dp.query(db, "SELECT customer_id FROM customers WHERE name=?", customer)[0]
    last = {}        # (endpoint, device) -> (t, state message)
    failed = set()   # (endpoint, device)
    reconnects = collections.Counter()  # (endpoint, usb device)
    for endpoint, body in dp.query(
            db, "SELECT endpoint_id, body FROM reports WHERE customer_id=? ORDER BY rowid", cid):
        rep = pb.Report()
        rep.ParseFromString(body)
        t = rep.observed_at_unix_ms
        for p in rep.peripherals:
            key = (endpoint, p.bus, p.vendor_id, p.product_id, p.serial_hash or p.name)
            if key not in last or t >= last[key][0]:
                last[key] = (t, p)
            if p.state in FAILURES:
                failed.add(key)
        for e in rep.peripheral_events:
            if e.kind == pb.PERIPHERAL_EVENT_KIND_RECONNECT:
                reconnects[(endpoint, 1, e.vendor_id, e.product_id, e.serial_hash)] += 1
    models = collections.defaultdict(lambda: {"instances": 0, "failed": 0, "endpoints": set(),
                                              "endpoints_failed": set(), "reconnects": 0})
    for key, (_, p) in last.items():
        model = (f"{p.vendor_id:04x}:{p.product_id:04x}" if p.vendor_id or p.product_id
                 else p.ieee1284_id)
        m = models[model]
        m["instances"] += 1
        m["endpoints"].add(key[0])
        m["reconnects"] += reconnects[key]
        if key in failed:
            m["failed"] += 1
            m["endpoints_failed"].add(key[0])
    return models


class PeripheralsReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory(prefix="deskpulse-e2e-")
        work = cls.work.name
        cls.pb = load_report_module(work)
        cls.db = os.path.join(work, "store.db")
        tokens = dp.create_tokens(cls.db, work, [("Northwind Health", "healthy"),
                                                 ("Contoso Legal", "typical"),
                                                 ("Fabrikam Logistics", "struggling")])
        collector = dp.Collector(work, cls.db)
        r, summary = dp.fleetsim(collector.address, tokens, 600, "--days", 3, "--seed", 9)
        assert collector.stop() == 0
        assert r.returncode == 0, r.stderr[-2000:]
        assert summary["reports_acked"] > 0

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def test_ranked_failing_models_match_the_stored_observations(self):
        for customer in ("Northwind Health", "Contoso Legal", "Fabrikam Logistics"):
            with self.subTest(customer=customer):
                got = dp.peripherals_json(self.db, customer)
                want = expected_from_raw_reports(self.db, customer, self.pb)
                self.assertEqual(got["customer"], customer)
                rows = got["failing_models"] + got["working_models"]
                self.assertEqual(len(rows), len(want))
                for row in rows:
                    key = row["usb_id"] or row["ieee1284"]
                    w = want[key]
                    self.assertEqual(row["instances"], w["instances"], key)
                    self.assertEqual(row["failed"], w["failed"], key)
                    self.assertEqual(row["working"], w["instances"] - w["failed"], key)
                    self.assertEqual(row["endpoints"], len(w["endpoints"]), key)
                    self.assertEqual(row["endpoints_failed"], len(w["endpoints_failed"]), key)
                    self.assertEqual(row["reconnects_since_first_seen"], w["reconnects"], key)
                failing = got["failing_models"]
                self.assertTrue(failing)
                self.assertTrue(all(r["failed"] > 0 for r in failing))
                self.assertTrue(all(r["failed"] == 0 for r in got["working_models"]))
                self.assertEqual([r["rank"] for r in failing], list(range(1, len(failing) + 1)))
                order = [(-r["endpoints_failed"], -r["failed"], -r["reconnects_since_first_seen"])
                         for r in failing]
                self.assertEqual(order, sorted(order))
                instances = got["compatibility"]["device_instances"]
                self.assertEqual(instances["failed"], sum(w["failed"] for w in want.values()))
                self.assertEqual(instances["working"] + instances["failed"],
                                 sum(w["instances"] for w in want.values()))
                # The split adds up to the failures.
                split = got["failures"]
                self.assertEqual(sum(s["instances"] for s in split.values()), instances["failed"])
                # Every device was classified, by this collector's catalog (the
                # simulated endpoints have none).
                self.assertEqual(got["catalog"]["unclassified"], 0)
                self.assertEqual(got["catalog"]["classified_by_collector"],
                                 instances["working"] + instances["failed"])

    def test_compatibility_component_agrees_with_scores(self):
        scores = {c["customer"]: c for c in dp.scores_json(self.db)["customers"]}
        for customer, c in scores.items():
            with self.subTest(customer=customer):
                got = dp.peripherals_json(self.db, customer)
                self.assertEqual(got["compatibility"]["score"],
                                 c["components"]["peripherals"]["score"])
                self.assertEqual(got["compatibility"]["device_instances"]["working"],
                                 c["components"]["peripherals"]["device_instances"]["working"])
                self.assertEqual(got["compatibility"]["reconnects"],
                                 c["components"]["peripherals"]["device_instances"]["reconnects"])

    def test_profiles_land_near_the_fields_figures(self):
        share = {}
        for customer in ("Northwind Health", "Contoso Legal"):
            i = dp.peripherals_json(self.db, customer)["compatibility"]["device_instances"]
            share[customer] = i["working"] / (i["working"] + i["failed"])
        self.assertAlmostEqual(share["Contoso Legal"], 0.78, delta=0.06)  # the field's 78%
        self.assertAlmostEqual(share["Northwind Health"], 0.95, delta=0.04)  # the 95% target

    def test_typical_customer_has_both_kinds_of_failure(self):
        got = dp.peripherals_json(self.db, "Contoso Legal")
        split = got["failures"]
        self.assertGreater(split["supported_but_failing"]["instances"], 0)
        self.assertGreater(split["unsupported"]["instances"], 0)
        kinds = {r["failure"] for r in got["failing_models"]}
        self.assertIn("supported_but_failing", kinds)
        self.assertIn("unsupported", kinds)
        for r in got["failing_models"]:
            self.assertIn(r["verdict"], ("supported", "partial", "unsupported", "unknown"))
            self.assertEqual(r["classified_by"], "collector")
            self.assertTrue(r["detail"], r)
            if r["verdict"] != "unknown":
                self.assertIn(r["source"], ("foomatic", "sane", "ccid", "kernel"), r)

    def test_text_report_and_bad_requests(self):
        r = dp.run([dp.COLLECTOR, "peripherals", "--db", self.db, "--customer", "Contoso Legal",
                    "--catalog", dp.CATALOG])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Peripherals of Contoso Legal over 30 days: compatibility", r.stdout)
        self.assertIn("catalog says supported, fails here", r.stdout)
        self.assertIn("RANK", r.stdout)
        top = dp.peripherals_json(self.db, "Contoso Legal")["failing_models"][0]
        self.assertIn(top["name"][:30], r.stdout)

        r = dp.run([dp.COLLECTOR, "peripherals", "--db", self.db, "--customer", "Nobody",
                    "--catalog", dp.CATALOG])
        self.assertEqual(r.returncode, 5)
        self.assertIn("no customer named 'Nobody' (customers: ", r.stderr)
        r = dp.run([dp.COLLECTOR, "peripherals", "--db", self.db, "--customer", "Contoso Legal",
                    "--catalog", os.path.join(self.work.name, "missing.sqlite")])
        self.assertEqual(r.returncode, 5)
        self.assertIn("cannot open catalog", r.stderr)


if __name__ == "__main__":
    unittest.main()
