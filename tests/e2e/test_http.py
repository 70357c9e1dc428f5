"""The HTTP side (the API, the dashboard, /metrics) under attack, with the real
binary on loopback and a client of its own that writes raw bytes: nothing
unauthenticated is read past a request's head (64 bodies of 16 MiB and endless
chunked ones cost no memory), silent TLS connections and slowloris floods from
one address leave another address served, every malformed request gets its
status with a JSON body, pipelined requests are all answered in order, an
import holds up no other call, TLS 1.2 offers only forward-secret AEAD suites,
and the log and /metrics tell what happened."""
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import unittest

import dp

CONFIG = """
[http]
health_refresh_s = 1
"""


class Raw:
    """A socket to the collector's HTTP port, from `source` (a loopback address), that
    writes raw bytes and reads replies one by one."""

    def __init__(self, port, source="127.0.0.1", tls=None, timeout=10):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                     source_address=(source, 0))
        self.sock = tls.wrap_socket(s, server_hostname="localhost") if tls else s
        self.pending = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode("latin1"))
        return self

    def _recv(self):
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            return b""

    def reply(self, head_only=False):
        """One reply: (status, headers, body), None if the connection closed first.
        Interim 1xx replies are returned as they come."""
        buf = self.pending
        while b"\r\n\r\n" not in buf:
            data = self._recv()
            if not data:
                self.pending = b""
                return None
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status < 200 else int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = self._recv()
            if not data:
                break
            rest += data
        body, self.pending = rest[:length], rest[length:]
        return status, headers, body

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def send_chunks(c, rounds):
    """Sends `rounds` thousand one-byte chunks, never the last one, until the server closes."""
    try:
        for _ in range(rounds):
            c.sock.sendall(b"1\r\nx\r\n" * 1000)
    except OSError:
        pass


class HttpAttackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work_dir = dp.tempdir()
        work = cls.work_dir.name
        cls.db = os.path.join(work, "store.db")
        config = os.path.join(work, "collector.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        cls.tokens = dp.create_tokens(cls.db, work, [("Contoso Legal", "typical")])
        cls.vendor = dp.api_token(cls.db, "vendor")
        cls.cert, key = dp.make_cert(work)
        cls.plain = dp.Collector(work, cls.db, http=True, log_name="plain.log",
                                 extra=["--config", config])
        # A second collector on the same store would be a second writer: the
        # HTTPS one reads a copy.
        cls.tls_db = os.path.join(work, "tls.db")
        r = dp.run([dp.COLLECTOR, "api-token", "create", "--db", cls.tls_db, "--role", "vendor"])
        cls.tls_vendor = r.stdout.strip()
        cls.https = dp.Collector(work, cls.tls_db, http=True, log_name="https.log",
                                 extra=["--tls-cert", cls.cert, "--tls-key", key])
        cls.tls_context = ssl.create_default_context(cafile=cls.cert)

    @classmethod
    def tearDownClass(cls):
        codes = (cls.plain.stop(), cls.https.stop())
        cls.work_dir.cleanup()
        assert codes == (0, 0), codes

    def auth(self, token=None):
        return f"Authorization: Bearer {token or self.vendor}\r\n"

    def served(self, port, source, tls=None, token=None):
        """Seconds a GET /api/v1 from `source` took to be answered 200."""
        start = time.monotonic()
        c = Raw(port, source, tls, timeout=5)
        try:
            c.send(f"GET /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth(token)}\r\n")
            got = c.reply()
        finally:
            c.close()
        self.assertIsNotNone(got, "no answer")
        self.assertEqual(got[0], 200, got)
        return time.monotonic() - start

    def metric(self, name, labels=""):
        c = Raw(self.plain.http_port)
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = c.reply()
        c.close()
        self.assertEqual(status, 200)
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", body.decode(), re.M)
        return float(m.group(1)) if m else None

    # ---- memory

    def test_unauthenticated_bodies_cost_no_memory(self):
        pid = self.plain.proc.pid
        port = self.plain.http_port
        base = dp.rss_kb(pid)
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                peak[0] = max(peak[0], dp.rss_kb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        statuses = []
        lock = threading.Lock()

        def big_body(i):
            c = Raw(port, f"127.0.3.{1 + i % 8}")
            c.send("POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: text/csv\r\nContent-Length: 16777216\r\n\r\n")
            sent = 0
            try:
                while sent < 16 << 20:
                    c.sock.sendall(b"x" * 65536)
                    sent += 65536
            except OSError:
                pass
            got = c.reply()
            with lock:
                statuses.append(got[0] if got else None)
            c.close()

        def endless_chunks(i):
            c = Raw(port, f"127.0.4.{1 + i}")
            c.send("POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
            send_chunks(c, 2000)
            c.close()

        threads = [threading.Thread(target=big_body, args=(i,)) for i in range(64)]
        threads += [threading.Thread(target=endless_chunks, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        done.set()
        sampler.join()
        grew_mb = (peak[0] - base) / 1024
        print(f"RSS {base / 1024:.0f} MB before, peak {peak[0] / 1024:.0f} MB "
              f"(+{grew_mb:.1f} MB) under 64 x 16 MiB and 4 endless chunked bodies")
        if not os.environ.get("DESKPULSE_SANITIZER"):  # shadow memory is not the collector's
            self.assertLess(grew_mb, 64)
        self.assertTrue(statuses and all(s in (401, None) for s in statuses), statuses)
        self.assertIn(401, statuses)
        # A vendor's endless chunked body is bounded in chunks as well as bytes.
        c = Raw(port)
        c.send(f"POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n{self.auth()}"
               "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
        send_chunks(c, 200)
        got = c.reply()
        c.close()
        self.assertIsNotNone(got)
        self.assertEqual(got[0], 413, got)
        self.assertEqual(json.loads(got[2])["error"]["status"], 413)
        self.assertEqual(self.served(port, "127.0.0.2") < 5, True)

    # ---- slots

    def test_silent_tls_connections_leave_room(self):
        port = self.https.http_port
        held = []
        try:
            for i in range(300):
                s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.1", 0))
                if i % 2:
                    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
                held.append(s)
            took = self.served(port, "127.0.0.2", self.tls_context, self.tls_vendor)
            print(f"a new HTTPS client served in {took * 1000:.0f} ms beside 300 silent ones")
            self.assertLess(took, 1.0)
        finally:
            for s in held:
                s.close()
        log = dp.read_text(self.https.log_path)
        self.assertRegex(log, r"http: peer 127\.0\.0\.1: (closing its oldest idle connection|"
                              r"connection refused)")

    def test_slowloris_from_one_address_leaves_room(self):
        port = self.plain.http_port
        held = []
        try:
            for i in range(600):
                s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.5", 0))
                try:
                    s.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
                held.append(s)
            took = self.served(port, "127.0.0.6")
            print(f"a new HTTP client served in {took * 1000:.0f} ms beside 600 slow ones")
            self.assertLess(took, 1.0)
            # Idle ones too: 600 connections that say nothing.
            for s in held:
                s.close()
            held = [socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.7", 0))
                    for _ in range(600)]
            took = self.served(port, "127.0.0.8")
            print(f"a new HTTP client served in {took * 1000:.0f} ms beside 600 idle ones")
            self.assertLess(took, 1.0)
        finally:
            for s in held:
                s.close()
        self.assertGreater(self.metric("deskpulse_http_connections_evicted_total") or 0, 0)

    # ---- the protocol

    def status_of(self, request, head_only=False):
        c = Raw(self.plain.http_port)
        try:
            c.send(request)
            got = c.reply(head_only)
        finally:
            c.close()
        self.assertIsNotNone(got, f"no answer to {request[:80]!r}")
        return got

    def test_every_malformed_request_gets_its_status(self):
        long_value = "v" * 9000
        many_fields = "".join(f"X-F{i}: 1\r\n" for i in range(101))
        cases = [
            ("percent-encoded invalid UTF-8", f"GET /api/v1/customers/%FF HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n", 400),
            ("a truncated sequence", "GET /%C3 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("a stray continuation byte", "GET /assets/%80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("bad percent-encoding", "GET /api/v1/customers/%G1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("an over-long URL", f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            ("an over-long header", f"GET / HTTP/1.1\r\nHost: x\r\nX-Long: {long_value}\r\n\r\n", 431),
            ("too many fields", f"GET / HTTP/1.1\r\nHost: x\r\n{many_fields}\r\n", 431),
            ("an unknown method", "BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
            ("a lower-case method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
            ("a NUL in a header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
            ("a body over the route's cap",
             f"PUT /api/v1/customers/1/overrides/service HTTP/1.1\r\nHost: x\r\n{self.auth()}"
             f"Content-Type: application/json\r\nContent-Length: {1 << 20}\r\n\r\n", 413),
            ("DELETE on a route", f"DELETE /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n", 405),
            ("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
            ("two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            ("HTTP/9.9", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
            ("an expectation not met", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417),
            ("an unknown transfer coding",
             f"POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n{self.auth()}"
             "Content-Type: text/csv\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("a body on a GET", f"GET /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth()}Content-Length: 3\r\n\r\nabc", 400),
        ]
        for what, request, status in cases:
            with self.subTest(what):
                got_status, headers, body = self.status_of(request)
                self.assertEqual(got_status, status, body[:200])
                self.assertEqual(headers.get("content-type"), "application/json")
                self.assertEqual(json.loads(body)["error"]["status"], status)
                if status == 405:
                    self.assertIn("GET", headers.get("allow", ""))
        # The server went on answering.
        self.assertLess(self.served(self.plain.http_port, "127.0.0.1"), 5)
        log = dp.read_text(self.plain.log_path)
        self.assertIn("http: peer 127.0.0.1:", log)
        self.assertGreater(self.metric("deskpulse_http_bad_requests_total") or 0, 0)

    def test_requests_as_browsers_send_them(self):
        # HEAD: the fields of GET, no body.
        status, headers, body = self.status_of(
            f"HEAD /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n", head_only=True)
        self.assertEqual(status, 200)
        self.assertGreater(int(headers["content-length"]), 0)
        self.assertEqual(body, b"")
        # A comma-separated list, as docs/api.md documents it.
        status, _, body = self.status_of(
            f"GET /api/v1/customers?risk=high,low,medium&q=Contoso+Legal HTTP/1.1\r\nHost: x\r\n"
            f"{self.auth()}\r\n")
        self.assertEqual(status, 200, body)
        # '+' in a path segment is a plus.
        status, _, body = self.status_of(
            f"GET /api/v1/customers/1+1 HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n")
        self.assertEqual(status, 404)
        self.assertIn("'1+1'", json.loads(body)["error"]["message"])
        # An absolute-form target.
        status, _, _ = self.status_of(
            f"GET http://x/api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n")
        self.assertEqual(status, 200)
        # HTTP/1.0 without Host, and its connection closed after the answer.
        c = Raw(self.plain.http_port)
        c.send(f"GET /api/v1 HTTP/1.0\r\n{self.auth()}\r\n")
        status, headers, _ = c.reply()
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("connection"), "close")
        c.close()

    def test_pipelined_requests_are_answered_in_order(self):
        c = Raw(self.plain.http_port)
        try:
            c.send(f"GET /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n"
                   "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                   f"HEAD /api/v1/customers HTTP/1.1\r\nHost: x\r\n{self.auth()}\r\n"
                   "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            got = [c.reply(), c.reply(), c.reply(head_only=True), c.reply()]
        finally:
            c.close()
        self.assertEqual([g[0] for g in got], [200, 404, 200, 200])
        self.assertIn(b'"api"', got[0][2])
        self.assertIn(b"deskpulse_build_info", got[3][2])

    def test_expect_100_continue(self):
        c = Raw(self.plain.http_port)
        try:
            body = "customer,date,nps,respondents\nContoso Legal,2026-11-01,30,40\n"
            c.send(f"POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n{self.auth()}"
                   f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n"
                   "Expect: 100-continue\r\n\r\n")
            interim = c.reply()
            self.assertEqual(interim[0], 100)
            c.send(body)
            status, _, got = c.reply()
            self.assertEqual(status, 200, got)
            # Refused at the head: the final status at once, no 100.
            c2 = Raw(self.plain.http_port)
            c2.send("POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n"
                    "Expect: 100-continue\r\n\r\n")
            self.assertEqual(c2.reply()[0], 401)
            c2.close()
        finally:
            c.close()

    def test_an_import_holds_up_no_other_call(self):
        rows = ["customer,ticket_id,opened,first_response,resolved,severity"]
        i = 0
        size = len(rows[0])
        while size < (16 << 20) - 200:
            row = (f"Contoso Legal,TCK-{i:09d}-abcdefghijklmnop,2026-10-{1 + i % 28:02d}T09:30:00Z,"
                   f"2026-10-{1 + i % 28:02d}T10:30:00Z,2026-10-{1 + i % 28:02d}T12:30:00Z,high")
            rows.append(row)
            size += len(row) + 1
            i += 1
        body = ("\n".join(rows) + "\n").encode()
        importer = Raw(self.plain.http_port, timeout=120)
        importer.send(f"POST /api/v1/imports/tickets HTTP/1.1\r\nHost: x\r\n{self.auth()}"
                      f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n")
        start = time.monotonic()
        importer.sock.sendall(body)
        reply = {}

        def wait_for_reply():
            reply["got"] = importer.reply()
            reply["at"] = time.monotonic()

        waiter = threading.Thread(target=wait_for_reply)
        waiter.start()
        # Other calls, back to back, for as long as the import is in progress.
        answered = [start]
        while waiter.is_alive() and time.monotonic() - start < 120:
            self.served(self.plain.http_port, "127.0.0.9")
            answered.append(time.monotonic())
        waiter.join(120)
        importer.close()
        status, _, got = reply["got"]
        self.assertEqual(status, 200, got[:300])
        self.assertEqual(json.loads(got)["rows"], i)
        took = reply["at"] - start
        gap = max(b - a for a, b in zip(answered, answered[1:]))
        print(f"{i} tickets imported in one call in {took * 1000:.0f} ms; {len(answered) - 1} "
              f"other calls answered meanwhile, the longest wait between two {gap * 1000:.0f} ms")
        # No call waited behind the import: the longest gap between two answers is a small
        # part of the import's time (the import itself, on the API thread, would be most).
        self.assertLess(gap, took / 4)

    def test_slow_heads_and_bodies_get_408(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            config = os.path.join(work, "collector.toml")
            with open(config, "w") as f:
                f.write("[http]\nhead_timeout_s = 0.5\nbody_timeout_s = 0.5\n"
                        "idle_timeout_s = 0.5\n")
            vendor = dp.api_token(db, "vendor")
            collector = dp.Collector(work, db, http=True, extra=["--config", config])
            try:
                c = Raw(collector.http_port)
                c.send("GET /api/v1 HTTP/1.1\r\nHost: x\r\n")
                status, headers, body = c.reply()
                self.assertEqual(status, 408)
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(json.loads(body)["error"]["status"], 408)
                c.close()
                c = Raw(collector.http_port)
                c.send(f"PUT /api/v1/customers/1/overrides/service HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {vendor}\r\nContent-Type: application/json\r\n"
                       "Content-Length: 10\r\n\r\n{\"va")
                self.assertEqual(c.reply()[0], 408)
                c.close()
                # A kept-alive connection idle past its limit is closed without a word.
                c = Raw(collector.http_port)
                c.send(f"GET /api/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {vendor}\r\n\r\n")
                self.assertEqual(c.reply()[0], 200)
                self.assertIsNone(c.reply())
                c.close()
            finally:
                self.assertEqual(collector.stop(), 0)
            log = dp.read_text(collector.log_path)
            self.assertIn("408 Request Timeout", log)
            self.assertRegex(log, r"http: \d+ connections, \d+ requests \(\d+ 2xx, [1-9]\d* 4xx")

    def test_a_silent_tls_connection_is_closed_at_its_deadline(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            config = os.path.join(work, "collector.toml")
            with open(config, "w") as f:
                f.write("[http]\nhandshake_timeout_s = 0.5\n")
            cert, key = dp.make_cert(work)
            collector = dp.Collector(work, db, http=True,
                                     extra=["--config", config, "--tls-cert", cert, "--tls-key", key])
            try:
                held = []
                for half in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
                    s = socket.create_connection(("127.0.0.1", collector.http_port), timeout=10)
                    s.sendall(half)
                    held.append(s)
                for s in held:
                    start = time.monotonic()
                    try:
                        got = s.recv(100)
                    except ConnectionResetError:
                        got = b""
                    self.assertEqual(got, b"", "closed, not answered")
                    self.assertLess(time.monotonic() - start, 8, "closed at the deadline")
                    s.close()
            finally:
                self.assertEqual(collector.stop(), 0)
            log = dp.read_text(collector.log_path)
            self.assertIn("TLS handshake not completed within 0.5 s", log)

    # ---- TLS

    def test_tls_offers_forward_secret_aead_suites_and_hsts(self):
        port = self.https.http_port
        for suite, ok in [("AES128-SHA", False), ("AES256-GCM-SHA384", False),
                          ("ECDHE-RSA-AES128-SHA", False), ("ECDHE-ECDSA-AES256-SHA", False),
                          ("ECDHE-ECDSA-AES128-GCM-SHA256", True)]:
            with self.subTest(suite):
                r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                    "-tls1_2", "-cipher", suite],
                                   input="", capture_output=True, text=True, timeout=30)
                self.assertEqual(f"Cipher is {suite}" in r.stdout, ok, r.stdout[-500:])
        c = Raw(port, tls=self.tls_context)
        c.send(f"GET /api/v1 HTTP/1.1\r\nHost: x\r\n{self.auth(self.tls_vendor)}\r\n")
        status, headers, _ = c.reply()
        c.close()
        self.assertEqual(status, 200)
        self.assertIn("max-age=", headers.get("strict-transport-security", ""))


if __name__ == "__main__":
    unittest.main()
