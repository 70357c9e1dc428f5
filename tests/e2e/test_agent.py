"""The real deskpulse-agent against the real collector on loopback: spooling while the collector is down,
delivery exactly once after it comes back, and kill -9 of the agent in the middle of uploads."""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

import dp

AGENT = os.path.join(dp.BIN, "agent", "deskpulse-agent")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



class Agent:
    def __init__(self, work, config):
        self.path = os.path.join(work, "agent.log")
        before = self.starts()
        self.log = open(self.path, "a")
        self.proc = dp.track(subprocess.Popen([AGENT, "--config", config], stdout=self.log,
                                              stderr=self.log))
        # A signal that arrives before a process reaches main() kills it whatever it does.
        dp.wait_until(lambda: self.starts() > before or self.proc.poll() is not None, 30, "the agent to start")
        assert self.proc.poll() is None, open(self.path).read()[-2000:]

    def starts(self):
        try:
            with open(self.path) as f:
                return f.read().count(" started: interval ")
        except OSError:
            return 0

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc


def stored(db):
    try:
        (n, distinct, top), = dp.query(db, "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) "
                                           "FROM reports")
        return n, distinct, top
    except Exception:  # the store is not created yet
        return 0, 0, 0


def spooled_bytes(state_dir):
    spool = os.path.join(state_dir, "spool")
    try:
        return sum(os.path.getsize(os.path.join(spool, n)) for n in os.listdir(spool) if n.endswith(".seg"))
    except OSError:
        return 0


def spool_state(state_dir):
    values = {}
    with open(os.path.join(state_dir, "spool", "state")) as f:
        for line in f:
            k, v = line.split()
            values[k] = int(v)
    return values


def enroll(test, db):
    """A token for customer Acme in the store at `db`."""
    r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", "Acme"])
    test.assertEqual(r.returncode, 0, r.stderr)
    return r.stdout.split()[-1]


THIN_CLIENT_TREE = os.path.join(dp.SOURCE_DIR, "tests", "data", "peripherals", "thin-client")


def thin_client_peripherals(catalog, tree=THIN_CLIENT_TREE):
    """A [probes.peripherals] section reading the thin client's USB tree (this machine has no
    USB), or a copy of it at `tree`, with `catalog` ("" for none)."""
    return f"""
[probes.peripherals]
sysfs = "{tree}/sys"
proc = "{tree}/proc"
udev_data = "{tree}/udev"
cups = false
pcsc = false
settle_s = 0
catalog = "{catalog}"
"""


def agent_config(work, name, address, token, collector_extra="", tail="", agent_extra=""):
    """An agent configuration at a 1 s interval, its state under work/name, written to work/name.toml."""
    machine_id = os.path.join(work, "machine-id")
    if not os.path.exists(machine_id):
        with open(machine_id, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""[agent]
state_dir = "{os.path.join(work, name)}"
interval_s = 1
machine_id_file = "{machine_id}"
{agent_extra}
[collector]
address = "{address}"
token = "{token}"
backoff_max_s = 1
{collector_extra}
{tail}""")
    return path


class AgentTest(unittest.TestCase):
    def test_spools_while_down_and_delivers_each_report_once_through_kill9(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            port = free_port()
            state_dir = os.path.join(work, "agent-state")
            config = agent_config(work, "agent-state", f"127.0.0.1:{port}", token, "batch_reports = 3",
                                  "[spool]\nfsync = true\n")

            # 1. No collector: reports go to the spool.
            agent = Agent(work, config)
            dp.wait_until(lambda: spooled_bytes(state_dir) > 0, 30, "the agent to spool")
            time.sleep(6)  # let a backlog of several reports build up while the collector is down
            self.assertIsNone(agent.proc.poll(), "the agent keeps running without a collector")
            self.assertEqual(stored(db)[0], 0)

            # 2. The collector comes up on the configured port: the backlog arrives.
            up_at_ms = int(time.time() * 1000)
            collector = dp.Collector(work, db, port=port)
            n, distinct, top = dp.wait_until(lambda: (lambda s: s if s[0] >= 6 else None)(stored(db)), 60,
                                        "the spooled backlog to arrive")
            (early,), = dp.query(db, "SELECT count(*) FROM reports WHERE observed_at_ms < ?", up_at_ms)
            self.assertGreaterEqual(early, 5, "reports observed while the collector was down arrive")

            # 3. kill -9 the agent at three different moments of its uploads, restarting it each time.
            for pause in (0.0, 0.35, 1.7):
                time.sleep(pause)
                agent.stop(signal.SIGKILL)
                agent = Agent(work, config)
                dp.wait_until(lambda: stored(db)[2] > top, 60, "new reports after the restart")
                top = stored(db)[2]

            # 4. The collector goes away again; a backlog builds; the agent is killed while it drains.
            self.assertEqual(collector.stop(), 0)
            time.sleep(4)
            collector = dp.Collector(work, db, port=port)
            dp.wait_until(lambda: stored(db)[2] > top, 60, "the second backlog to start arriving")
            agent.stop(signal.SIGKILL)
            agent = Agent(work, config)
            dp.wait_until(lambda: stored(db)[2] > top + 4, 60, "the rest of the backlog")

            # 5. A clean stop; then every report up to the highest stored is there exactly once.
            rc = agent.stop()
            with open(os.path.join(work, "agent.log")) as f:
                log = f.read()
            self.assertEqual(rc, 0, log[-3000:])
            state = spool_state(state_dir)
            n, distinct, top = stored(db)
            self.assertEqual(n, distinct, "no report is stored twice")
            self.assertEqual(top, n, "no gap: nothing acknowledged was lost")
            self.assertGreaterEqual(top, state["acked"], "everything the agent saw acknowledged is stored")
            self.assertEqual(state["dropped"], 0)
            self.assertEqual(state["corrupt"], 0)
            (streams,), = dp.query(db, "SELECT count(*) FROM streams")
            self.assertEqual(streams, 1, "restarts resume the same (agent, epoch) stream")
            self.assertEqual(collector.stop(), 0)


class AgentTlsTest(unittest.TestCase):
    def test_reports_arrive_over_tls_and_an_untrusted_collector_gets_nothing(self):
        """The agent's own TLS client against the collector's: by DNS name (SNI and the certificate's name)
        and by address; a CA that did not sign the collector's certificate gets no report through."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            cert, key = dp.make_cert(work)
            other = os.path.join(work, "other")
            os.makedirs(other)
            other_ca, _ = dp.make_cert(other)
            token = enroll(self, db)
            collector = dp.Collector(work, db, extra=("--tls-cert", cert, "--tls-key", key))

            def config(name, host, ca):
                return agent_config(work, name, f"{host}:{collector.port}", token, f'ca_file = "{ca}"')

            for name, host in (("by-name", "localhost"), ("by-address", "127.0.0.1")):
                before = stored(db)[0]
                agent = Agent(work, config(name, host, cert))
                dp.wait_until(lambda: stored(db)[0] >= before + 3, 60, f"reports over TLS ({host})")
                self.assertEqual(agent.stop(), 0)

            before = stored(db)[0]
            agent = Agent(work, config("untrusting", "localhost", other_ca))
            time.sleep(4)
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(stored(db)[0], before, "nothing reaches a collector the agent does not trust")
            with open(os.path.join(work, "agent.log")) as f:
                self.assertIn("certificate verification failed", f.read())
            self.assertEqual(collector.stop(), 0)


class AgentCatalogTest(unittest.TestCase):
    def test_verdicts_made_on_the_endpoint_reach_the_peripherals_report(self):
        """The agent reads a thin client's USB tree with the catalog installed; the collector keeps
        the verdicts it attached and the peripherals report uses them, not its own catalog."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            collector = dp.Collector(work, db)
            config = agent_config(work, "with-catalog", collector.address, token, "",
                                  thin_client_peripherals(dp.CATALOG))
            agent = Agent(work, config)
            dp.wait_until(lambda: stored(db)[0] >= 2, 60, "reports with the inventory")
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(collector.stop(), 0)

            r = dp.run([dp.COLLECTOR, "peripherals", "--db", db, "--customer", "Acme", "--json",
                        "--catalog", dp.CATALOG])
            self.assertEqual(r.returncode, 0, r.stderr)
            got = json.loads(r.stdout)
            self.assertEqual(got["catalog"]["classified_by_agent"], 10)
            self.assertEqual(got["catalog"]["classified_by_collector"], 0)
            models = {m["usb_id"]: m for m in got["failing_models"] + got["working_models"]}
            self.assertEqual(len(models), 10)
            for m in models.values():
                self.assertEqual(m["classified_by"], "agent", m)
            self.assertEqual(models["04a9:1909"]["source"], "sane")      # CanoScan LiDE 110
            self.assertEqual(models["08e6:3437"]["source"], "ccid")      # Gemalto reader
            self.assertEqual(models["046d:082d"]["driver"], "uvcvideo")  # Logitech C920
            fingerprint = models["06cb:00bd"]                             # no driver anywhere
            self.assertEqual(fingerprint["verdict"], "unknown")
            self.assertEqual(fingerprint["failure"], "unknown")
            self.assertEqual(fingerprint["failure_states"], {"no_driver": 1})
            # Supported by libccid, but the USB/IP export nobody attached: fixable here.
            exported = models["0a5c:5834"]
            self.assertEqual(exported["verdict"], "supported")
            self.assertEqual(exported["source"], "ccid")
            self.assertEqual(exported["failure"], "supported_but_failing")
            self.assertEqual(exported["failure_states"], {"redirect_failed": 1})
            # A stick blocked by USB policy shows no interfaces, so no source can judge it.
            self.assertEqual(models["0951:1666"]["verdict"], "unknown")
            self.assertEqual(got["failures"]["supported_but_failing"]["instances"], 1)
            self.assertEqual(got["failures"]["unknown"]["instances"], 2)


class OncePrintTest(unittest.TestCase):
    def test_prints_real_values_of_this_machine(self):
        """`--once --print` on this machine: boot id, uptime, the RTT to the peer of a loopback RDP
        connection held open here, and "unavailable" with a reason for what the machine lacks."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", 3389))
        except OSError as e:
            self.skipTest(f"port 3389 is taken on this machine: {e}")
        listener.listen(1)
        client = socket.create_connection(("127.0.0.1", 3389))
        server, _ = listener.accept()
        for _ in range(20):  # some round trips, so the kernel has an RTT estimate
            client.sendall(b"x" * 100)
            server.recv(100)
            server.sendall(b"y")
            client.recv(1)
        try:
            r = dp.run([AGENT, "--once", "--print"])
        finally:
            client.close()
            server.close()
            listener.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        with open("/proc/sys/kernel/random/boot_id") as f:
            self.assertEqual(report["boot"]["boot_id"], f.read().strip())
        self.assertGreater(report["stability"]["uptime_s"], 0)
        rdp = [w for w in report["sessions"] if w["peer"] == "127.0.0.1:3389"]
        self.assertEqual(len(rdp), 1, report["sessions"])
        self.assertEqual(rdp[0]["protocol"], "DISPLAY_PROTOCOL_RDP")
        # A thin client (the default role) times a handshake to the session's peer.
        self.assertEqual(rdp[0]["source"], "LATENCY_SOURCE_PEER_CONNECT")
        self.assertEqual(rdp[0]["rtt_samples"], 1)
        self.assertGreater(rdp[0]["rtt_p50_us"], 0)
        unavailable = {u["measurement"]: u["reason"] for u in report["unavailable"]}
        self.assertTrue(unavailable, "this machine lacks something (no cupsd, no pcscd, no system bus)")
        for measurement, reason in unavailable.items():
            self.assertTrue(reason, f"{measurement} says why")


if __name__ == "__main__":
    unittest.main()


class DaemonSessionTest(unittest.TestCase):
    def test_daemon_prints_windows_from_handshakes_to_the_live_peer(self):
        """The daemon with `--print` on a thin client with a display session held open on loopback:
        its timer samples the session, times handshakes to the session's peer on its event loop, and
        counts the time connected; each report comes out as one JSON line."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        with dp.tempdir() as work:
            config = os.path.join(work, "agent.toml")
            with open(config, "w") as f:
                f.write(f"""[agent]
state_dir = "{work}/state"
interval_s = 4
role = "thin_client"
machine_id_file = "{work}/machine-id"
[probes.boot]
enabled = false
[probes.peripherals]
enabled = false
[probes.stability]
enabled = false
[probes.session]
ica_ports = []
blast_ports = []
pcoip_ports = []
gateway_ports = []
rdp_ports = [{port}]
rtt_probe_interval_s = 1
""")
            with open(os.path.join(work, "machine-id"), "w") as f:
                f.write("0123456789abcdef0123456789abcdef\n")
            proc = dp.track(subprocess.Popen([AGENT, "--config", config, "--print"],
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             text=True))
            reports = []
            try:
                deadline = time.monotonic() + 30
                while len(reports) < 3 and time.monotonic() < deadline:
                    # Keep the session carrying data, as a display stream does.
                    client.sendall(b"x" * 100)
                    server.recv(100)
                    server.sendall(b"y")
                    client.recv(1)
                    line = proc.stdout.readline()
                    if line:
                        reports.append(json.loads(line))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                client.close()
                server.close()
                listener.close()
        self.assertEqual(len(reports), 3, "one JSON line per report")
        last = reports[-1]
        windows = [w for w in last["sessions"] if w["peer"] == f"127.0.0.1:{port}"]
        self.assertEqual(len(windows), 1, last["sessions"])
        w = windows[0]
        self.assertEqual(w["source"], "LATENCY_SOURCE_PEER_CONNECT")
        self.assertGreaterEqual(w["rtt_samples"], 2)  # a handshake a second over a 4 s window
        self.assertGreater(w["rtt_p50_us"], 0)
        self.assertNotIn("stalled_ms", w)
        self.assertIn(last["stability"]["session_s"], (3, 4, 5))  # connected the whole window
        self.assertEqual(last["stability"]["session_events"], [],
                         "the agent's own handshakes are not sessions")
