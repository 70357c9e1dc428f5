"""Helpers to run the real DeskPulse binaries on loopback for end-to-end tests."""
import atexit
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time

BIN = os.environ.get("DESKPULSE_BIN", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE_DIR = os.environ.get("DESKPULSE_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
COLLECTOR = os.path.join(BIN, "collector", "deskpulse-collector")
FLEETSIM = os.path.join(BIN, "agent", "deskpulse-fleetsim")
CATALOG_TOOL = os.path.join(BIN, "collector", "deskpulse-catalog")
# Built by the CTest fixture catalog_build_for_tests from this machine's packages.
CATALOG = os.environ.get("DESKPULSE_TEST_CATALOG", os.path.join(BIN, "test-catalog.sqlite"))


_started = []


@atexit.register
def _kill_leftovers():
    """Processes a failed test left running are not left to the next test run."""
    for proc in _started:
        if proc.poll() is None:
            proc.kill()


def track(proc):
    """Kills `proc` when the test process exits, if it still runs then."""
    _started.append(proc)
    return proc


def run(args, **kw):
    """Run a command to completion; returns CompletedProcess with text output."""
    return subprocess.run(args, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


class Collector:
    """A deskpulse-collector serve process on 127.0.0.1."""

    def __init__(self, workdir, db, port=0, extra=(), wrapper=(), log_name="collector.log",
                 http=False, preexec_fn=None):
        """http: also serve the JSON API on a free loopback port (self.http_port)."""
        self.workdir = workdir
        self.db = db
        self.port_file = os.path.join(workdir, f"port-{time.monotonic_ns()}")
        self.http_port_file = self.port_file + ".http"
        self.log_path = os.path.join(workdir, log_name)
        self.log = open(self.log_path, "a")
        api = ["--http", "127.0.0.1:0", "--http-port-file", self.http_port_file] if http else []
        self.proc = subprocess.Popen(
            [*wrapper, COLLECTOR, "serve", "--db", db, "--listen", f"127.0.0.1:{port}",
             "--port-file", self.port_file, *api, *extra],
            stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=preexec_fn)
        track(self.proc)
        self.port = self._wait_for(self.port_file)
        self.http_port = self._wait_for(self.http_port_file) if http else None

    def _wait_for(self, path):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("collector did not start listening")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        """SIGTERM: drain, commit, ack, exit. Returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.log.close()
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


def wait_until(fn, timeout=30, what="condition"):
    """fn()'s first truthy value within `timeout` seconds, polled every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def api_token(db, role, customer=None):
    """A new API token of `role` (for `customer`, a customer-admin's)."""
    args = [COLLECTOR, "api-token", "create", "--db", db, "--role", role]
    if customer:
        args += ["--customer", customer]
    r = run(args)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("dpa_"), r.stdout
    return token


def create_tokens(db, workdir, customers):
    """customers: [(name, profile)] -> path of a tokens file."""
    path = os.path.join(workdir, "tokens.txt")
    with open(path, "w") as f:
        for name, profile in customers:
            r = run([COLLECTOR, "token", "create", "--db", db, "--customer", name])
            assert r.returncode == 0, r.stderr
            token = r.stdout.strip()
            assert token.startswith("dpt_"), token
            f.write(f"{name} {token} {profile}\n")
    return path


def fleetsim(collector_addr, tokens, endpoints, *extra, timeout=600):
    r = run([FLEETSIM, "--collector", collector_addr, "--tokens", tokens, "--catalog", CATALOG,
             "--endpoints", str(endpoints), *map(str, extra)], timeout=timeout)
    summary = None
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            summary = json.loads(line)
    return r, summary


def scores_json(db):
    r = run([COLLECTOR, "scores", "--db", db, "--json"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def reports_in_window(db, scores):
    """Stored reports observed inside the window a `scores --json` result covers."""
    w = scores["window"]
    (n,), = query(db, "SELECT count(*) FROM reports WHERE observed_at_ms >= ? AND "
                      "observed_at_ms < ?", w["from_unix_ms"], w["to_unix_ms"])
    return n


def peripherals_json(db, customer, catalog=CATALOG):
    r = run([COLLECTOR, "peripherals", "--db", db, "--customer", customer, "--catalog", catalog,
             "--json"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def query(db, sql, *args):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def make_cert(workdir):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    cert, key = os.path.join(workdir, "collector.crt"), os.path.join(workdir, "collector.key")
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    assert r.returncode == 0, r.stderr
    return cert, key


def load_proto_modules(workdir):
    """(report_pb2, wire_pb2) generated from the tree's .proto files by protoc
    (the system Python has python3-protobuf)."""
    import importlib
    import sys
    out = os.path.join(workdir, "py")
    os.makedirs(out, exist_ok=True)
    protos = [os.path.join(SOURCE_DIR, "proto", "deskpulse", "v1", n)
              for n in ("report.proto", "wire.proto")]
    r = run(["protoc", f"-I{os.path.join(SOURCE_DIR, 'proto')}", f"--python_out={out}", *protos])
    assert r.returncode == 0, r.stderr
    if out not in sys.path:
        sys.path.insert(0, out)
    return (importlib.import_module("deskpulse.v1.report_pb2"),
            importlib.import_module("deskpulse.v1.wire_pb2"))


def rss_kb(pid, field="VmRSS"):
    """A process's resident memory in KiB (VmRSS now, or VmHWM: its peak)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def tempdir():
    return tempfile.TemporaryDirectory(prefix="deskpulse-e2e-")


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


# ---- PostgreSQL: the test run's throwaway cluster (tests/fakes/pg_cluster.sh)

def pg_cluster_uri():
    """The cluster's superuser URI; the CTest fixture starts it."""
    state = os.environ.get("DESKPULSE_TEST_PG")
    if not state or not os.path.exists(os.path.join(state, "uri")):
        raise RuntimeError("no PostgreSQL test cluster: run under ctest (fixture 'suite') or "
                           "start one with tests/fakes/pg_cluster.sh start DIR and set "
                           "DESKPULSE_TEST_PG=DIR")
    with open(os.path.join(state, "uri")) as f:
        return f.read().strip()


def pg_new_database(name):
    """A fresh empty database on the test cluster: its URI."""
    admin = pg_cluster_uri()
    pg_query(admin, f"DROP DATABASE IF EXISTS {name}")
    pg_query(admin, f"CREATE DATABASE {name}")
    return admin.rsplit("/", 1)[0] + "/" + name


def pg_query(uri, sql):
    """Rows of `sql` as lists of strings, through psql."""
    r = run(["psql", uri, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql])
    if r.returncode != 0:
        raise RuntimeError(f"psql: {r.stderr.strip()}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]
