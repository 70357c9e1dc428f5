"""Webhooks from the real binary to receivers on loopback (docs/metrics.md,
"Webhooks"): a customer's churn risk rising reaches a receiver that fails the
first two deliveries exactly once by its idempotency key, every delivery
signed with HMAC-SHA256; a receiver that hangs holds up neither ingest's
acknowledgements nor the collector's shutdown, and what it did not take
stays in the outbox; /metrics counts the deliveries."""
import datetime
import hashlib
import hmac
import http.server
import json
import os
import threading
import time
import unittest
import urllib.request

import dp

SECRET = "s3cret-for-the-webhook-test-0123"
CUSTOMER = "Northwind Health"


class Receiver:
    """An HTTP receiver on loopback: answers `fail_first` requests 503, then
    200; with `hang`, holds every request without answering until closed."""

    def __init__(self, fail_first=0, hang=False):
        self.requests = []  # (headers, body, status answered or None)
        self.fail_first = fail_first
        self.hang = hang
        self.release = threading.Event()
        self.arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                entry = [dict(self.headers), body, None]
                receiver.requests.append(entry)
                receiver.arrived.set()
                if receiver.hang:
                    receiver.release.wait(120)
                    return
                status = 503 if len(receiver.requests) <= receiver.fail_first else 200
                entry[2] = status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def valid_signature(headers, body):
    sig = dict(p.split("=", 1) for p in headers["X-DeskPulse-Signature"].split(","))
    want = hmac.new(SECRET.encode(), sig["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(sig["t"])) < 300
    return hmac.compare_digest(want, sig["v1"]) and fresh



class WebhookTest(unittest.TestCase):
    def config(self, work, crm, stuck):
        secret = os.path.join(work, "webhook-secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        path = os.path.join(work, "collector.toml")
        with open(path, "w") as f:
            f.write(f"""
[store]
rollup_flush_s = 0.2
[http]
health_refresh_s = 1
[notify]
check_interval_s = 1
poll_interval_s = 0.2
[webhooks.crm]
url = "{crm.url}"
secret_file = "{secret}"
timeout_s = 2
retry_initial_s = 0.3
retry_max_s = 1
[webhooks.stuck]
url = "{stuck.url}"
secret_file = "{secret}"
events = ["churn_risk.raised"]
timeout_s = 30
""")
        return path

    def survey(self, work, nps):
        path = os.path.join(work, f"survey-{nps}.csv")
        with open(path, "w") as f:
            f.write("customer,date,nps,ces,ves,respondents\n")
            f.write(f"{CUSTOMER},{datetime.date.today().isoformat()},{nps},5.5,5.5,40\n")
        return path

    def test_risk_rise_delivered_once_signed_and_a_hang_holds_up_nothing(self):
        crm, stuck = Receiver(fail_first=2), Receiver(hang=True)
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            tokens = dp.create_tokens(db, work, [(CUSTOMER, "healthy")])
            config = self.config(work, crm, stuck)
            collector = dp.Collector(work, db, extra=["--config", config], http=True)
            try:
                # Five days back hold three weekdays whatever today is.
                r, before = dp.fleetsim(collector.address, tokens, 12, "--days", 5, "--seed", 2)
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                # The book records the healthy customer at low risk...
                dp.wait_until(lambda: dp.query(db, "SELECT to_risk FROM risk_events"), 30,
                         "the first recorded risk")
                self.assertEqual(crm.requests, [], "a first assessment is not a rise")
                # ...then a survey at NPS 5 makes it high: one event.
                r = dp.run([dp.COLLECTOR, "import", "--db", db, "--kind", "surveys",
                            self.survey(work, 5)])
                self.assertEqual(r.returncode, 0, r.stderr)
                dp.wait_until(lambda: any(e[2] == 200 for e in crm.requests), 30,
                         "a delivery the receiver accepted")
                time.sleep(2)  # nothing more may come for it
                keys = {e[0]["Idempotency-Key"] for e in crm.requests}
                self.assertEqual(len(keys), 1, keys)
                self.assertEqual([e[2] for e in crm.requests], [503, 503, 200])
                self.assertEqual(len({e[1] for e in crm.requests}), 1, "the same body each time")
                for headers, body, _ in crm.requests:
                    self.assertTrue(valid_signature(headers, body), headers)
                    self.assertEqual(headers["Content-Type"], "application/json")
                    self.assertEqual(headers["X-DeskPulse-Event"], "churn_risk.raised")
                event = json.loads(crm.requests[-1][1])
                self.assertEqual(event["id"], keys.pop())
                self.assertEqual(event["type"], "churn_risk.raised")
                self.assertEqual(event["customer"]["name"], CUSTOMER)
                self.assertEqual(event["risk"]["to"], "high")
                self.assertTrue(any("NPS 5" in x for x in event["risk"]["reasons"]), event)
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{collector.http_port}/metrics", timeout=30) as resp:
                    metrics = resp.read().decode()
                self.assertIn("deskpulse_webhook_deliveries_total 1", metrics)
                self.assertIn("deskpulse_webhook_failed_attempts_total 2", metrics)
                outbox = dp.query(db, "SELECT webhook, attempts, delivered_ms IS NOT NULL FROM "
                                    "webhook_deliveries ORDER BY webhook")
                self.assertEqual(outbox[0], ("crm", 3, 1))

                # The other receiver holds its request; ingest goes on as before.
                self.assertTrue(stuck.arrived.wait(30), "the stuck receiver got its request")
                r, during = dp.fleetsim(collector.address, tokens, 12, "--days", 5, "--seed", 3)
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                self.assertEqual(during["reports_acked"], during["reports_generated"])
                p99_before = before["ack_latency_ms"]["p99"]
                p99_during = during["ack_latency_ms"]["p99"]
                # The hang is 30 s: had ingest waited on it, acks would take seconds.
                self.assertLess(p99_during, 1000, (p99_before, p99_during))
                print(f"ack p99 {p99_before:.1f} ms before, {p99_during:.1f} ms while the "
                      "receiver hangs")
            finally:
                t0 = time.monotonic()
                rc = collector.stop()
                stopped_in = time.monotonic() - t0
                crm.close()
                stuck.close()
            self.assertEqual(rc, 0)
            self.assertLess(stopped_in, 20, "a hanging receiver does not hold up shutdown")
            # The stuck delivery was not delivered: it waits in the outbox.
            self.assertEqual(dp.query(db, "SELECT attempts >= 1, delivered_ms IS NULL FROM "
                                        "webhook_deliveries WHERE webhook = 'stuck'"), [(1, 1)])
            log = dp.read_text(collector.log_path)
            self.assertIn("webhooks: crm: delivery failed (HTTP 503); retrying with backoff", log)
            self.assertEqual(log.count("webhooks: crm: delivery failed"), 1, "logged once")

    def test_bad_webhook_configuration_names_the_key(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            secret = os.path.join(work, "secret")
            with open(secret, "w") as f:
                f.write("x" * 20)
            cases = [
                ('url = "http://hooks.example.net/x"\nsecret_file = "SECRET"',
                 "webhooks.crm.url: plain http to hooks.example.net"),
                ('url = "https://hooks.example.net/x"', "webhooks.crm.secret_file' is required"),
                ('url = "https://hooks.example.net/x"\nsecret_file = "SECRET"\nevents = ["nope"]',
                 "unknown event 'nope'"),
                ('url = "https://hooks.example.net/x"\nsecret_file = "SECRET"\ncolour = 1',
                 "webhooks.crm.colour': unknown key"),
            ]
            for body, want in cases:
                with self.subTest(want=want):
                    path = os.path.join(work, "c.toml")
                    with open(path, "w") as f:
                        f.write("[webhooks.crm]\n" + body.replace("SECRET", secret) + "\n")
                    r = dp.run([dp.COLLECTOR, "serve", "--db", db, "--config", path])
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(want, r.stderr)


if __name__ == "__main__":
    unittest.main()
