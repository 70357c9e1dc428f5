"""The business subcommands with the real binary on both backends: the demo's
sample signals imported, `health` ranking the book with its reasons, an
override shown as one, and API tokens created (shown once), listed without
the token, and revoked."""
import datetime
import json
import os
import re
import unittest

import dp

CUSTOMERS = ["Northwind Health", "Contoso Legal", "Fabrikam Logistics"]
SAMPLES = os.path.join(dp.SOURCE_DIR, "collector", "samples")


def shifted_samples(work):
    """The samples with their dates moved to today, as the demo imports them."""
    shift = datetime.date.today() - datetime.date(2026, 12, 1)
    out = {}
    for kind in ("surveys", "tickets", "contracts", "reviews"):
        with open(os.path.join(SAMPLES, f"{kind}.csv")) as f:
            text = f.read()
        text = re.sub(r"\d{4}-\d{2}-\d{2}",
                      lambda m: (datetime.date.fromisoformat(m.group(0)) + shift).isoformat(),
                      text)
        out[kind] = os.path.join(work, f"{kind}.csv")
        with open(out[kind], "w") as f:
            f.write(text)
    return out


class BusinessCliTest(unittest.TestCase):
    def backends(self, work):
        yield "sqlite", os.path.join(work, "store.db")
        yield "postgresql", dp.pg_new_database(f"e2e_business_{os.getpid()}")

    def test_health_ranks_the_sample_book_and_api_tokens_are_managed(self):
        with dp.tempdir() as work:
            samples = shifted_samples(work)
            for backend, db in self.backends(work):
                with self.subTest(backend=backend):
                    for name in CUSTOMERS:
                        r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer",
                                    name])
                        self.assertEqual(r.returncode, 0, r.stderr)
                    for kind, path in samples.items():
                        r = dp.run([dp.COLLECTOR, "import", "--db", db, "--kind", kind, path])
                        self.assertEqual(r.returncode, 0, r.stderr)

                    r = dp.run([dp.COLLECTOR, "health", "--db", db, "--json"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    book = json.loads(r.stdout)["customers"]
                    by_name = {c["customer"]: c for c in book}
                    # No telemetry in this store: technical is excluded, not zero.
                    for c in book:
                        self.assertIsNone(c["tps"])
                        self.assertAlmostEqual(c["coverage"], 0.68, places=3)
                    contoso = by_name["Contoso Legal"]
                    self.assertEqual(contoso["risk"], "high")
                    self.assertTrue(contoso["risk_reasons"][0].startswith("NPS 8 < 20"))
                    fabrikam = by_name["Fabrikam Logistics"]
                    self.assertEqual(fabrikam["risk"], "high")
                    self.assertTrue(any("days overdue" in x for x in fabrikam["risk_reasons"]))
                    self.assertEqual(by_name["Northwind Health"]["risk"], "low")
                    self.assertEqual(book[-1]["customer"], "Northwind Health")
                    # The table says the same, at-risk first.
                    r = dp.run([dp.COLLECTOR, "health", "--db", db, "--no-record"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    rows = r.stdout.splitlines()[1:]
                    self.assertTrue(rows[0].startswith("Contoso Legal"), r.stdout)
                    self.assertIn("NPS 8 < 20", rows[0])

                    # An account manager's override shows as one, with its reason.
                    expires = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
                    r = dp.run([dp.COLLECTOR, "override", "--db", db, "--customer",
                                "Contoso Legal", "--factor", "brand", "--value", "80", "--reason",
                                "survey predates the new account team", "--expires", expires])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    r = dp.run([dp.COLLECTOR, "health", "--db", db, "--json", "--no-record"])
                    contoso = {c["customer"]: c for c in json.loads(r.stdout)["customers"]}[
                        "Contoso Legal"]
                    brand = [f for f in contoso["factors"] if f["factor"] == "brand"][0]
                    self.assertEqual(brand["score"], 80)
                    self.assertEqual(brand["override"]["reason"],
                                     "survey predates the new account team")
                    self.assertTrue(any(d["text"].startswith("Brand overridden to 80")
                                        for d in contoso["drivers"]))
                    r = dp.run([dp.COLLECTOR, "override", "--db", db, "--customer",
                                "Contoso Legal", "--factor", "technical", "--value", "80",
                                "--reason", "no", "--expires", expires])
                    self.assertEqual(r.returncode, 2)

                    r = dp.run([dp.COLLECTOR, "api-token", "create", "--db", db, "--role",
                                "customer-admin", "--customer", "Contoso Legal"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    token = r.stdout.strip()
                    self.assertRegex(token, r"^dpa_[A-Za-z0-9_-]{43}$")
                    r = dp.run([dp.COLLECTOR, "api-token", "list", "--db", db])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertNotIn(token, r.stdout)
                    self.assertIn("customer-admin  Contoso Legal", r.stdout)
                    token_id = r.stdout.splitlines()[1].split()[0]
                    r = dp.run([dp.COLLECTOR, "api-token", "revoke", "--db", db, token_id])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    r = dp.run([dp.COLLECTOR, "api-token", "list", "--db", db])
                    self.assertNotEqual(r.stdout.splitlines()[1].split()[-1], "-")
                    r = dp.run([dp.COLLECTOR, "api-token", "create", "--db", db, "--role",
                                "customer-admin"])
                    self.assertEqual(r.returncode, 2)
                    self.assertIn("needs its customer", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main()
