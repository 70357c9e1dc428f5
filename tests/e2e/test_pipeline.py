"""End to end with real processes on loopback: simulator -> collector -> SQLite -> scores."""
import os
import threading
import time
import unittest

import dp


class PipelineTest(unittest.TestCase):
    def test_healthy_customer_ranks_above_struggling(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            tokens = dp.create_tokens(db, work, [("Northwind Health", "healthy"),
                                                 ("Contoso Legal", "typical"),
                                                 ("Fabrikam Logistics", "struggling")])
            collector = dp.Collector(work, db)
            r, summary = dp.fleetsim(collector.address, tokens, 150, "--days", 21, "--seed", 5)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(collector.stop(), 0, "SIGTERM must drain and exit 0")
            self.assertGreater(summary["reports_acked"], 10000)
            self.assertEqual(summary["reports_acked"], summary["reports_generated"])

            (stored,), = dp.query(db, "SELECT count(*) FROM reports")
            self.assertEqual(stored, summary["reports_acked"])

            scores = dp.scores_json(db)
            by_name = {c["customer"]: c for c in scores["customers"]}
            healthy, typical, struggling = (by_name["Northwind Health"], by_name["Contoso Legal"],
                                            by_name["Fabrikam Logistics"])
            self.assertEqual([c["customer"] for c in scores["customers"]][0], "Northwind Health")
            self.assertGreater(healthy["tps"], typical["tps"])
            self.assertGreater(typical["tps"], struggling["tps"])
            self.assertEqual(struggling["components"]["boot"]["band"], "poor")
            # Percentiles over the window come from the rollups' histograms.
            boot = struggling["components"]["boot"]["login_ready_s"]
            self.assertLess(boot["p50"], boot["p95"])
            self.assertLessEqual(boot["p95"], boot["p99"])
            self.assertGreater(boot["p95"], 100, "the struggling customer's tail is past 100 s")
            self.assertLess(healthy["components"]["boot"]["login_ready_s"]["p50"], 30)
            self.assertGreater(struggling["components"]["latency"]["window_rtt_p95_ms"]["p50"],
                               healthy["components"]["latency"]["window_rtt_p95_ms"]["p50"])
            self.assertEqual(healthy["band"], "good")
            for c in (healthy, typical, struggling):
                self.assertEqual(c["endpoints"], 50)
                self.assertEqual(c["coverage"], 1.0)
                self.assertTrue(c["drivers"], "every score says what pulls it down")
            # Scored reports are those observed inside the window, all of which are stored.
            self.assertEqual(sum(c["reports"] for c in scores["customers"]),
                             dp.reports_in_window(db, scores))

            # The table form carries the same ranking.
            table = dp.run([dp.COLLECTOR, "scores", "--db", db]).stdout.splitlines()
            self.assertTrue(table[0].startswith("CUSTOMER"))
            self.assertTrue(table[1].startswith("Northwind Health"))
            self.assertTrue(table[3].startswith("Fabrikam Logistics"))

    def test_kill9_loses_no_acknowledged_report_and_stores_each_once(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            tokens = dp.create_tokens(db, work, [("Acme", "typical"), ("Globex", "struggling")])
            collector = dp.Collector(work, db)
            port = collector.port
            acked_file = os.path.join(work, "acked.txt")
            result = {}

            def simulate():
                result["r"], result["summary"] = dp.fleetsim(
                    collector.address, tokens, 40, "--days", 30, "--rate", 1500, "--batch", 20,
                    "--acked-file", acked_file, "--timeout", 300)

            sim = threading.Thread(target=simulate)
            sim.start()
            # Kill once a good share has been committed, while batches are in flight.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    (n,), = dp.query(db, "SELECT count(*) FROM reports")
                except Exception:
                    n = 0
                if n > 2000:
                    break
                time.sleep(0.05)
            self.assertGreater(n, 2000, "simulator made no progress before the kill")
            collector.kill9()
            time.sleep(1.0)  # the agents retry against a closed port meanwhile
            collector = dp.Collector(work, db, port=port)
            sim.join(timeout=300)
            self.assertFalse(sim.is_alive())
            self.assertEqual(collector.stop(), 0)

            r, summary = result["r"], result["summary"]
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(summary["reports_acked"], summary["reports_generated"])
            self.assertGreater(summary["connects"], 40, "agents must have reconnected")

            dupes = dp.query(db, "SELECT stream_id, seq, count(*) FROM reports "
                                 "GROUP BY stream_id, seq HAVING count(*) > 1")
            self.assertEqual(dupes, [])
            stored = dict(dp.query(db, "SELECT e.agent_id, count(*) FROM reports r "
                                       "JOIN endpoints e USING(endpoint_id) GROUP BY e.agent_id"))
            top = dict(dp.query(db, "SELECT e.agent_id, max(seq) FROM reports r "
                                    "JOIN endpoints e USING(endpoint_id) GROUP BY e.agent_id"))
            with open(acked_file) as f:
                rows = [line.split() for line in f if line.strip()]
            self.assertEqual(len(rows), 40)
            for agent_id, _epoch, acked, generated in rows:
                acked, generated = int(acked), int(generated)
                self.assertEqual(acked, generated)
                # every acknowledged seq 1..acked is present exactly once
                self.assertEqual(stored[agent_id], acked, agent_id)
                self.assertEqual(top[agent_id], acked, agent_id)

            # Rollups caught up with what was committed before the kill. The
            # history starts 30 days back, so its first day (on a weekday) falls
            # before the 30-day window that ends today; count what lies inside.
            scores = dp.scores_json(db)
            self.assertEqual(sum(c["reports"] for c in scores["customers"]),
                             dp.reports_in_window(db, scores))


class TlsTest(unittest.TestCase):
    def test_fleet_over_tls(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            cert, key = dp.make_cert(work)
            tokens = dp.create_tokens(db, work, [("Acme", "typical")])
            collector = dp.Collector(work, db, extra=("--tls-cert", cert, "--tls-key", key))
            r, summary = dp.fleetsim(collector.address, tokens, 20, "--days", 5, "--ca", cert)
            self.assertEqual(collector.stop(), 0)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(summary["reports_acked"], summary["reports_generated"])
            (stored,), = dp.query(db, "SELECT count(*) FROM reports")
            self.assertEqual(stored, summary["reports_acked"])
            with open(os.path.join(work, "collector.log")) as f:
                self.assertIn("(TLS)", f.read())

    def test_plain_tcp_off_loopback_must_be_explicit(self):
        with dp.tempdir() as work:
            r = dp.run([dp.COLLECTOR, "serve", "--db", os.path.join(work, "s.db"),
                        "--listen", "0.0.0.0:0"], timeout=30)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--tls-cert", r.stderr)
            self.assertIn("--plaintext", r.stderr)
            tokens = os.path.join(work, "t.txt")
            with open(tokens, "w") as f:
                f.write("Acme dpt_x typical\n")
            r, _ = dp.fleetsim("192.0.2.1:7741", tokens, 1)  # refused before any traffic
            self.assertEqual(r.returncode, 2)
            self.assertIn("--ca", r.stderr)

    def test_mismatched_key_is_named(self):
        with dp.tempdir() as work:
            cert, _ = dp.make_cert(work)
            other = os.path.join(work, "other")
            os.mkdir(other)
            _, wrong_key = dp.make_cert(other)
            r = dp.run([dp.COLLECTOR, "serve", "--db", os.path.join(work, "s.db"), "--listen",
                        "127.0.0.1:0", "--tls-cert", cert, "--tls-key", wrong_key], timeout=30)
            self.assertEqual(r.returncode, 2)
            self.assertIn("mismatch", r.stderr)
            self.assertIn(wrong_key, r.stderr)


class CommandLineTest(unittest.TestCase):
    def test_help_and_version(self):
        for binary in (dp.COLLECTOR, dp.FLEETSIM):
            r = dp.run([binary, "--help"])
            self.assertEqual(r.returncode, 0)
            self.assertIn("Exit codes", r.stdout)
            r = dp.run([binary, "--version"])
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, r"\d+\.\d+\.\d+")

    def test_usage_errors_exit_2(self):
        r = dp.run([dp.COLLECTOR, "token", "create", "--db", "/tmp/x.db"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--customer", r.stderr)
        r = dp.run([dp.COLLECTOR, "serve", "--db", "/tmp/x.db", "--listen", "nohost"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--listen", r.stderr)

    def test_scores_of_a_missing_store_exit_5(self):
        with dp.tempdir() as work:
            r = dp.run([dp.COLLECTOR, "scores", "--db", os.path.join(work, "none.db")])
            self.assertEqual(r.returncode, 5, r.stderr)
            self.assertIn("none.db", r.stderr)

    def test_unknown_config_key_is_named(self):
        with dp.tempdir() as work:
            cfg = os.path.join(work, "c.toml")
            with open(cfg, "w") as f:
                f.write('[ingest]\nlisten = "127.0.0.1:0"\ngroup_comit_ms = 5\n')
            r = dp.run([dp.COLLECTOR, "serve", "--db", os.path.join(work, "s.db"),
                        "--config", cfg])
            self.assertEqual(r.returncode, 2)
            self.assertIn("'ingest.group_comit_ms'", r.stderr)
            self.assertIn("unknown key", r.stderr)

    def test_bad_limits_are_named(self):
        cases = [("[store]\ncheckpoint_interval_ms = 60000\n", "'store.checkpoint_interval_ms'"),
                 ("[ingest]\nmax_pending_per_peer = 600\n",
                  "ingest.max_pending_per_peer (600) is above ingest.max_pending_connections (512)"),
                 ("[ingest]\nmax_hello_frame_bytes = 100\n", "'ingest.max_hello_frame_bytes'"),
                 ("[ingest]\nhandshake_timeout_s = 0\n", "'ingest.handshake_timeout_s'")]
        with dp.tempdir() as work:
            for text, named in cases:
                cfg = os.path.join(work, "c.toml")
                with open(cfg, "w") as f:
                    f.write(text)
                r = dp.run([dp.COLLECTOR, "serve", "--db", os.path.join(work, "s.db"),
                            "--listen", "127.0.0.1:0", "--config", cfg])
                self.assertEqual(r.returncode, 2, text + r.stderr)
                self.assertIn(named, r.stderr)

    def test_sample_config_is_valid(self):
        sample = os.path.join(os.environ.get("DESKPULSE_SOURCE_DIR", "../.."),
                              "collector", "collector.sample.toml")
        with dp.tempdir() as work:
            # serve with the sample (its port replaced by 0) must start and drain cleanly
            with open(sample) as f:
                text = f.read().replace("127.0.0.1:7741", "127.0.0.1:0")
            cfg = os.path.join(work, "sample.toml")
            with open(cfg, "w") as f:
                f.write(text)
            c = dp.Collector(work, os.path.join(work, "s.db"), extra=("--config", cfg))
            self.assertEqual(c.stop(), 0)

    def test_refused_token_exits_6(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "s.db")
            dp.create_tokens(db, work, [("Acme", "healthy")])
            tokens = os.path.join(work, "bad.txt")
            with open(tokens, "w") as f:
                f.write("Acme dpt_forged healthy\n")
            c = dp.Collector(work, db)
            # Three days of history hold a whole weekday whatever today is; the
            # simulated fleet sends nothing for a weekend.
            r, _ = dp.fleetsim(c.address, tokens, 3, "--days", 3, "--timeout", 30)
            self.assertEqual(c.stop(), 0)
            self.assertEqual(r.returncode, 6, r.stderr)
            self.assertIn("UNAUTHENTICATED", r.stderr)

    def test_bad_tokens_file_names_the_line(self):
        with dp.tempdir() as work:
            tokens = os.path.join(work, "t.txt")
            with open(tokens, "w") as f:
                f.write("# comment\nAcme dpt_x superb\n")
            r, _ = dp.fleetsim("127.0.0.1:1", tokens, 3)
            self.assertEqual(r.returncode, 2)
            self.assertIn("t.txt:2", r.stderr)
            self.assertIn("superb", r.stderr)


if __name__ == "__main__":
    unittest.main()
