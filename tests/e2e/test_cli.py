"""The command line as a newcomer meets it, through the real binaries: a store
path mistake never makes a store, every failure is one line in the project's
words, no secret is echoed, counts agree with their nouns, every binary and tool
answers --help and --version, and the happy path logs no warning."""
import ctypes
import datetime
import glob
import json
import os
import resource
import socket
import ssl
import unittest

import dp

STORE_SCALE = os.path.join(dp.BIN, "bench", "deskpulse-store-scale")
AGENT = os.path.join(dp.BIN, "agent", "deskpulse-agent")


def one_line(test, stderr, *words):
    """stderr is one line naming the command and holding every word."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    test.assertEqual(len(lines), 1, stderr)
    test.assertTrue(lines[0].startswith("deskpulse-"), stderr)
    for w in words:
        test.assertIn(w, lines[0])
    return lines[0]


class StorePathTest(unittest.TestCase):
    """A command that only uses a store never makes one: `health --db typo.db` once
    printed an empty table and exited 0, and `check --db missing.db` said nothing."""

    def test_commands_that_use_a_store_refuse_a_missing_one_and_leave_nothing(self):
        with dp.tempdir() as work:
            typo = os.path.join(work, "typo.db")
            survey = os.path.join(work, "s.csv")
            with open(survey, "w") as f:
                f.write("customer,date,nps\nNorthwind,2026-11-01,30\n")
            commands = [
                ["check", "--db", typo],
                ["check", "--db", typo, "--quick"],
                ["health", "--db", typo],
                ["health", "--db", typo, "--no-record"],
                ["scores", "--db", typo],
                ["peripherals", "--db", typo, "--customer", "X", "--catalog", dp.CATALOG],
                ["import", "--db", typo, "--kind", "surveys", survey],
                ["override", "--db", typo, "--customer", "X", "--factor", "value", "--value",
                 "50", "--reason", "r", "--expires", "2099-01-01"],
                ["api-token", "list", "--db", typo],
                ["api-token", "revoke", "--db", typo, "1"],
            ]
            for args in commands:
                with self.subTest(args=args[:2]):
                    r = dp.run([dp.COLLECTOR, *args])
                    self.assertEqual(r.returncode, 5, r.stderr)
                    self.assertEqual(r.stdout, "")
                    one_line(self, r.stderr, "no store at " + typo, "serve")
                    self.assertEqual(sorted(os.listdir(work)), ["s.csv"])

    def test_a_file_that_is_not_a_store_is_not_made_into_one(self):
        with dp.tempdir() as work:
            other = os.path.join(work, "other.sqlite")
            dp.run(["sqlite3", other, "CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
            r = dp.run([dp.COLLECTOR, "health", "--db", other])
            self.assertEqual(r.returncode, 5, r.stderr)
            one_line(self, r.stderr, "is not a DeskPulse store")
            self.assertEqual(dp.query(other, "SELECT name FROM sqlite_master WHERE "
                                             "type='table' ORDER BY name"), [("t",)])

    def test_a_postgresql_database_without_a_store_is_left_as_it_is(self):
        db = dp.pg_new_database("cli_no_store")
        r = dp.run([dp.COLLECTOR, "health", "--db", db])
        self.assertEqual(r.returncode, 5, r.stderr)
        line = one_line(self, r.stderr, "is not a DeskPulse store")
        self.assertNotIn(db.split("@")[0].split(":")[-1], line)  # no password shown
        self.assertEqual(dp.pg_query(db, "SELECT to_regclass('meta') IS NULL"), [["t"]])

    def test_api_token_create_says_when_it_makes_a_store(self):
        """The vendor's first token may come before serve has run."""
        with dp.tempdir() as work:
            db = os.path.join(work, "s.db")
            r = dp.run([dp.COLLECTOR, "api-token", "create", "--db", db, "--role", "vendor"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("made a new store at " + db, r.stderr)
            r = dp.run([dp.COLLECTOR, "api-token", "create", "--db", db, "--role", "vendor"])
            self.assertNotIn("made a new store", r.stderr)

    def test_token_create_says_when_it_makes_a_store_and_a_customer(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "s.db")
            r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", "Northwind"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.strip().startswith("dpt_"))
            self.assertIn("made a new store at " + db, r.stderr)
            self.assertIn("added customer 'Northwind'", r.stderr)
            r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", "Northwind"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr, "")


class MessagesTest(unittest.TestCase):
    """Mistakes in the project's words, on one line; no token repeated back."""

    @classmethod
    def setUpClass(cls):
        cls.work = dp.tempdir()
        cls.db = os.path.join(cls.work.name, "s.db")
        dp.create_tokens(cls.db, cls.work.name, [("Northwind", "healthy")])

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def collector(self, *args):
        return dp.run([dp.COLLECTOR, *args])

    def test_out_of_range_values_are_said_in_our_words(self):
        cases = [
            (["override", "--db", self.db, "--customer", "Northwind", "--factor", "value",
              "--value", "101", "--reason", "r", "--expires", "2099-01-01"],
             "--value must be a number from 0 to 100, not '101'"),
            (["health", "--db", self.db, "--window-days", "0"],
             "--window-days must be a whole number from 1 to 400, not '0'"),
            (["scores", "--db", self.db, "--window-days", "abc"],
             "--window-days must be a whole number from 1 to 400, not 'abc'"),
            (["override", "--db", self.db, "--customer", "Northwind", "--factor", "vlue",
              "--value", "1", "--reason", "r", "--expires", "2099-01-01"],
             "--factor must be one of value, service, brand or relationship, not 'vlue'"),
            (["scores", "--db"], "--db needs a value"),
            (["scores"], "--db is required"),
            (["scores", "--db", self.db, "extra"], "unexpected argument 'extra'"),
            ([], "a command is required: serve, token, scores"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                r = self.collector(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                line = one_line(self, r.stderr, words, "--help")
                for leak in ("0.000000", "Run with --help", "Could not convert", "Value "):
                    self.assertNotIn(leak, line)

    def test_a_token_given_for_an_id_is_not_echoed(self):
        token = dp.api_token(self.db, "vendor")
        r = self.collector("api-token", "revoke", "--db", self.db, token)
        self.assertEqual(r.returncode, 2, r.stderr)
        one_line(self, r.stderr, "TOKEN_ID", "not the token itself")
        self.assertNotIn(token[4:], r.stderr + r.stdout)
        # ... nor anywhere a token could be pasted by mistake.
        r = self.collector("scores", "--db", self.db, token)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotIn(token[4:], r.stderr + r.stdout)
        self.assertIn("(a token, not shown)", r.stderr)

    def test_api_token_create_says_where_the_token_is(self):
        r = self.collector("api-token", "create", "--db", self.db, "--role", "vendor")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("shown once, keep it", r.stderr)
        self.assertIn("on standard output", r.stderr)
        self.assertNotIn(r.stdout.strip(), r.stderr)

    def test_an_unknown_customer_is_answered_with_the_stores_customers(self):
        r = self.collector("api-token", "create", "--db", self.db, "--role", "customer-admin",
                           "--customer", "Nortwind")
        self.assertEqual(r.returncode, 5, r.stderr)
        one_line(self, r.stderr, "no customer named 'Nortwind'", "Northwind")

    def test_counts_agree_with_their_nouns(self):
        with dp.tempdir() as work:
            survey = os.path.join(work, "s.csv")
            week_ago = (datetime.date.today() - datetime.timedelta(days=7)).isoformat()
            with open(survey, "w") as f:
                f.write(f"customer,date,nps,respondents\nNorthwind,{week_ago},8,1\n")
            r = self.collector("import", "--db", self.db, "--kind", "surveys", survey)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("imported 1 survey\n", r.stdout)
            r = self.collector("health", "--db", self.db, "--no-record", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("1 respondent)", json.dumps(json.loads(r.stdout)))
            self.assertNotIn("1 respondents", r.stdout)


class HelpAndVersionTest(unittest.TestCase):
    """--help and --version answer on every binary and tool."""

    def tools(self):
        src = dp.SOURCE_DIR
        binaries = [[b] for b in (dp.COLLECTOR, dp.CATALOG_TOOL, dp.FLEETSIM, STORE_SCALE, AGENT)]
        scripts = [["bash", p] for p in sorted(glob.glob(os.path.join(src, "scripts", "*.sh")))
                   if not p.endswith("version.sh")]
        scripts.append(["bash", os.path.join(src, "bench", "boot_truth", "rig.sh")])
        benches = [["python3", p] for p in
                   sorted(glob.glob(os.path.join(src, "bench", "*_bench.py"))) +
                   [os.path.join(src, "bench", "agent_footprint.py"),
                    os.path.join(src, "bench", "store_scale.py"),
                    os.path.join(src, "bench", "session_truth", "rig.py")]]
        return binaries + scripts + benches

    def test_every_binary_and_tool_answers(self):
        version = dp.read_text(os.path.join(dp.SOURCE_DIR, "CMakeLists.txt"))
        version = version.split("project(deskpulse VERSION ")[1].split(" ")[0]
        tools = self.tools()
        self.assertGreaterEqual(len(tools), 20)
        for tool in tools:
            with self.subTest(tool=os.path.basename(tool[-1])):
                r = dp.run([*tool, "--version"], timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(version, r.stdout)
                r = dp.run([*tool, "--help"], timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertRegex(r.stdout, r"(?i)usage|options")

    def test_every_subcommand_answers_help(self):
        for sub in (["serve"], ["token", "create"], ["scores"], ["peripherals"], ["check"],
                    ["import"], ["health"], ["override"], ["api-token", "create"],
                    ["api-token", "list"], ["api-token", "revoke"]):
            with self.subTest(sub=sub):
                r = dp.run([dp.COLLECTOR, *sub, "--help"])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("--db", r.stdout)


def _socket_option_in(pid, peer_port, level, option):
    """`option` of the socket in process `pid` whose peer is 127.0.0.1:peer_port,
    read through a duplicate of its descriptor (pidfd_getfd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(438, pidfd, int(name), 0)  # pidfd_getfd
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            try:
                if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM:
                    try:
                        if s.getpeername()[1] == peer_port:
                            return s.getsockopt(level, option)
                    except OSError:
                        pass
            finally:
                s.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"no socket of {pid} talks to port {peer_port}")


class ServeTest(unittest.TestCase):
    def test_the_api_sends_without_waiting_for_a_delayed_ack(self):
        """Nagle's algorithm against the client's delayed ACK held a fresh HTTPS
        connection's first byte ~40 ms about half the time (bench/api_first_byte.py
        measures it): the API's sockets set TCP_NODELAY, over TLS and plain."""
        with dp.tempdir() as work:
            db = os.path.join(work, "s.db")
            cert, key = dp.make_cert(work)
            for tls in (True, False):
                with self.subTest(tls=tls):
                    extra = ["--tls-cert", cert, "--tls-key", key] if tls else []
                    c = dp.Collector(work, db, http=True, extra=extra)
                    try:
                        raw = socket.create_connection(("127.0.0.1", c.http_port))
                        conn = raw
                        if tls:
                            ctx = ssl.create_default_context(cafile=cert)
                            conn = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                        conn.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        self.assertTrue(conn.recv(100).startswith(b"HTTP/1.1"))
                        nodelay = _socket_option_in(c.proc.pid, conn.getsockname()[1],
                                                    socket.IPPROTO_TCP, socket.TCP_NODELAY)
                        self.assertTrue(nodelay)
                        conn.close()
                    finally:
                        self.assertEqual(c.stop(), 0)

    def test_the_machines_descriptor_limit_is_no_warning(self):
        """The default cap on connections meeting the descriptor limit is a fact
        of the machine; a configured cap cut short is worth a warning."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = min(hard, 4096)

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with dp.tempdir() as work:
            db = os.path.join(work, "s.db")
            config = os.path.join(work, "c.toml")
            with open(config, "w") as f:
                f.write("[ingest]\nmax_connections = 100000\n")
            for extra, warned in (([], False), (["--config", config], True)):
                with self.subTest(configured=warned):
                    log = os.path.join(work, f"serve-{warned}.log")
                    c = dp.Collector(work, db, extra=extra, log_name=os.path.basename(log),
                                     preexec_fn=low_limit)
                    self.assertEqual(c.stop(), 0)
                    text = dp.read_text(log)
                    self.assertIn(f"connections capped at {limit - 64}", text)
                    warnings = [line for line in text.splitlines() if " warning " in line]
                    if warned:
                        self.assertEqual(len(warnings), 1, text)
                        self.assertIn("ingest.max_connections is 100000", warnings[0])
                    else:
                        self.assertEqual(warnings, [], text)


if __name__ == "__main__":
    unittest.main()
