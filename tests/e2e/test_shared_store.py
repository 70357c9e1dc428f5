"""Several collectors on one PostgreSQL store, with real processes: the
simulator spread over two collectors, one killed with SIGKILL mid-stream.
Every acknowledged report is stored exactly once, the rollups equal a
recomputation from the raw rows, and the scores equal those of the same
simulation on the embedded SQLite store."""
import os
import threading
import time
import unittest

import dp

CUSTOMERS = [("Northwind Health", "healthy"), ("Contoso Legal", "typical"),
             ("Fabrikam Logistics", "struggling")]


def write_config(work, name, lease_s):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(f"[store]\nrollup_flush_s = 0.5\ncollector_lease_s = {lease_s}\n")
    return path


class SharedStoreTest(unittest.TestCase):
    def test_a_killed_collectors_agents_move_to_the_other_and_nothing_is_lost(self):
        with dp.tempdir() as work:
            db = dp.pg_new_database(f"e2e_shared_{os.getpid()}")
            tokens = dp.create_tokens(db, work, CUSTOMERS)
            config = write_config(work, "collector.toml", 2)
            a = dp.Collector(work, db, extra=("--config", config), log_name="a.log")
            b = dp.Collector(work, db, extra=("--config", config), log_name="b.log")
            acked_file = os.path.join(work, "acked.txt")
            result = {}

            def simulate():
                result["r"], result["summary"] = dp.fleetsim(
                    f"{a.address},{b.address}", tokens, 120, "--days", 14, "--seed", 21,
                    "--rate", 4000, "--batch", 20, "--acked-file", acked_file, "--timeout", 300)

            sim = threading.Thread(target=simulate)
            sim.start()
            deadline = time.monotonic() + 60
            n = 0
            while time.monotonic() < deadline:
                n = int(dp.pg_query(db, "SELECT count(*) FROM reports")[0][0])
                if n > 8000:
                    break
                time.sleep(0.05)
            self.assertGreater(n, 8000, "the simulator made no progress before the kill")
            a.kill9()
            sim.join(timeout=300)
            self.assertFalse(sim.is_alive())
            r, summary = result["r"], result["summary"]
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(summary["reports_acked"], summary["reports_generated"])
            self.assertGreater(summary["failovers"], 0, "the killed collector's agents moved")
            self.assertEqual(summary["endpoints_by_collector"], {b.address: 120},
                             "every endpoint ends on the collector still alive")
            time.sleep(2.5)  # the killed collector's lease passes
            self.assertEqual(b.stop(), 0)
            self.assertIn("left pending by a collector that stopped", dp.read_text(b.log_path))

            # Exactly once: every acknowledged seq of every agent, once.
            dupes = dp.pg_query(db, "SELECT stream_id, seq FROM reports GROUP BY stream_id, seq "
                                    "HAVING count(*) > 1")
            self.assertEqual(dupes, [])
            stored = {agent: (int(count), int(top)) for agent, count, top in dp.pg_query(
                db, "SELECT e.agent_id, count(*), max(r.seq) FROM reports r JOIN endpoints e "
                    "USING(customer_id, endpoint_id) GROUP BY e.agent_id")}
            with open(acked_file) as f:
                rows = [line.split() for line in f if line.strip()]
            self.assertEqual(len(rows), 120)
            for agent_id, _epoch, acked, generated in rows:
                self.assertEqual(int(acked), int(generated))
                self.assertEqual(stored[agent_id], (int(acked), int(acked)), agent_id)
            self.assertEqual(dp.pg_query(db, "SELECT count(*) FROM rollup_pending"), [["0"]])

            # The rollups equal a recomputation from the raw rows.
            check = dp.run([dp.COLLECTOR, "check", "--rollups", "--db", db])
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            self.assertIn("the rollups equal a recomputation", check.stdout)
            self.assertNotIn(db.split("@")[0].split(":")[-1], check.stdout,
                             "the password is not shown")
            pg_scores = dp.scores_json(db)

            # The same seeded simulation on the embedded SQLite store.
            sqlite_db = os.path.join(work, "store.db")
            sqlite_tokens = dp.create_tokens(sqlite_db, work, CUSTOMERS)
            c = dp.Collector(work, sqlite_db, log_name="sqlite.log")
            r2, summary2 = dp.fleetsim(c.address, sqlite_tokens, 120, "--days", 14, "--seed", 21,
                                       "--rate", 4000, "--batch", 20, "--timeout", 300)
            self.assertEqual(r2.returncode, 0, r2.stderr)
            self.assertEqual(c.stop(), 0)
            self.assertEqual(summary2["reports_acked"], summary2["reports_generated"])
            # The same seed, seconds later: a run that starts past an hour's edge
            # backfills at most one more or one fewer hourly report per agent.
            self.assertLessEqual(abs(summary2["reports_acked"] - summary["reports_acked"]), 120)
            sqlite_scores = dp.scores_json(sqlite_db)
            assert_scores_equal(self, pg_scores, sqlite_scores)


def assert_scores_equal(test, a, b):
    """Equal within docs/scoring.md's rounding: scores to 0.1 point; the two
    runs start seconds apart, so a report near an hour's edge may fall in the
    neighbouring hour, which moves no score by more than the rounding."""
    test.assertEqual(a["window"], b["window"])
    by_name = {c["customer"]: c for c in b["customers"]}
    test.assertEqual([c["customer"] for c in a["customers"]],
                     [c["customer"] for c in b["customers"]])
    for ca in a["customers"]:
        cb = by_name[ca["customer"]]
        test.assertEqual(ca["endpoints"], cb["endpoints"], ca["customer"])
        test.assertEqual(ca["reports"], cb["reports"], ca["customer"])
        test.assertEqual(ca["band"], cb["band"], ca["customer"])
        test.assertAlmostEqual(ca["tps"], cb["tps"], delta=0.1, msg=ca["customer"])
        for name, comp in ca["components"].items():
            if comp.get("score") is None:
                test.assertIsNone(cb["components"][name].get("score"))
                continue
            test.assertAlmostEqual(comp["score"], cb["components"][name]["score"], delta=0.1,
                                   msg=f"{ca['customer']} {name}")


if __name__ == "__main__":
    unittest.main()
