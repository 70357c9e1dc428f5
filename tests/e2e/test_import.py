"""deskpulse-collector import with the real binary on both backends: every
bad row reported with its line and field and nothing half-imported, the same
file again a no-op, a later row replacing the earlier with its key, and a
file over the size cap refused before it is read."""
import json
import os
import unittest

import dp

TICKETS = ("customer,ticket_id,opened,first_response,resolved,severity\n"
           "Northwind,T1,2026-11-20T09:00:00Z,,,2\n"
           "Northwind,T2,2026-11-20T10:00:00Z,2026-11-20T10:20:00Z,,3\n")


class ImportTest(unittest.TestCase):
    def backends(self, work):
        yield "sqlite", os.path.join(work, "store.db")
        yield "postgresql", dp.pg_new_database(f"e2e_import_{os.getpid()}")

    def count(self, db, table):
        if db.startswith("postgresql://"):
            return int(dp.pg_query(db, f"SELECT count(*) FROM {table}")[0][0])
        return dp.query(db, f"SELECT count(*) FROM {table}")[0][0]

    def import_file(self, db, kind, path):
        return dp.run([dp.COLLECTOR, "import", "--db", db, "--kind", kind, path])

    def test_import_is_all_or_nothing_and_idempotent(self):
        with dp.tempdir() as work:
            for backend, db in self.backends(work):
                with self.subTest(backend=backend):
                    r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer",
                                "Northwind"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    tickets = os.path.join(work, "tickets.csv")
                    with open(tickets, "w") as f:
                        f.write(TICKETS)
                    r = self.import_file(db, "tickets", tickets)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("imported 2 tickets", r.stdout)
                    r = self.import_file(db, "tickets", tickets)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("already imported", r.stdout)
                    self.assertEqual(self.count(db, "tickets"), 2)

                    # Bad rows: each named by line and field, nothing stored.
                    bad = os.path.join(work, "bad.json")
                    with open(bad, "w") as f:
                        json.dump([{"customer": "Northwind", "ticket_id": "T3",
                                    "opened": "2026-11-21T09:00:00Z"},
                                   {"customer": "Northwind", "ticket_id": "T4",
                                    "opened": "tomorrow"},
                                   {"customer": "Northwind", "ticket_id": "T5",
                                    "opened": "2026-11-21T09:00:00Z", "sevrity": "1"}], f)
                    r = self.import_file(db, "tickets", bad)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn("record 2, field opened: must be a date", r.stderr)
                    self.assertIn("record 3, field sevrity: unknown field", r.stderr)
                    self.assertIn("nothing imported (2 problems)", r.stderr)
                    self.assertEqual(self.count(db, "tickets"), 2)

                    # A customer the store does not know fails the whole file.
                    typo = os.path.join(work, "typo.csv")
                    with open(typo, "w") as f:
                        f.write("customer,ticket_id,opened\nNorthwind,T6,2026-11-22\n"
                                "Nrothwind,T7,2026-11-22\n")
                    r = self.import_file(db, "tickets", typo)
                    self.assertEqual(r.returncode, 5, r.stderr)
                    self.assertIn("line 3, field customer: 'Nrothwind'", r.stderr)
                    self.assertEqual(self.count(db, "tickets"), 2)

                    # A later row with the same key replaces the earlier one.
                    later = os.path.join(work, "later.csv")
                    with open(later, "w") as f:
                        f.write("customer,ticket_id,opened,resolved,severity\n"
                                "Northwind,T1,2026-11-20T09:00:00Z,2026-11-20T11:00:00Z,1\n")
                    r = self.import_file(db, "tickets", later)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(self.count(db, "tickets"), 2)
                    if backend == "sqlite":
                        rows = dp.query(db, "SELECT severity, resolved_ms IS NOT NULL FROM "
                                            "tickets WHERE ticket_id = 'T1'")
                        self.assertEqual(rows, [("1", 1)])
                    else:
                        rows = dp.pg_query(db, "SELECT severity, resolved_ms IS NOT NULL FROM "
                                               "tickets WHERE ticket_id = 'T1'")
                        self.assertEqual(rows, [["1", "t"]])

                    # Over the cap: refused by its size, before it is read.
                    big = os.path.join(work, "big.csv")
                    with open(big, "wb") as f:
                        f.truncate(50 * 1024 * 1024)
                    r = self.import_file(db, "surveys", big)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn("over the 16777216 byte limit", r.stderr)


if __name__ == "__main__":
    unittest.main()
