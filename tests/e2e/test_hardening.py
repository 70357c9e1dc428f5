"""The failures an attacker and an unlucky customer cause, each against the real binaries on
loopback: power cuts that take the agent's spool tail, a collector that loses its WAL or refuses
a credential for a while, a report the collector can never take, floods of connections and wrong
tokens before authentication, and damaged stores.

Runs on the system Python (python3-protobuf decodes reports and builds raw frames)."""
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

import dp
from test_agent import (Agent, agent_config, enroll, free_port, stored, thin_client_peripherals)

SEGMENT_HEADER = struct.Struct("<IIQI")  # magic, length, seq, crc (agent/spool/spool.cc)


def read_segment(path):
    """[(offset of the record, seq, payload)] of one spool segment, stopping at damage."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + SEGMENT_HEADER.size <= len(data):
        magic, length, seq, _ = SEGMENT_HEADER.unpack_from(data, pos)
        if magic != 0x31535044 or pos + SEGMENT_HEADER.size + length > len(data):
            break
        out.append((pos, seq, data[pos + SEGMENT_HEADER.size:pos + SEGMENT_HEADER.size + length]))
        pos += SEGMENT_HEADER.size + length
    return out


def segments(state_dir):
    spool = os.path.join(state_dir, "spool")
    return sorted(os.path.join(spool, n) for n in os.listdir(spool) if n.endswith(".seg"))


def read_state(state_dir):
    values = {}
    with open(os.path.join(state_dir, "spool", "state")) as f:
        for line in f:
            k, v = line.split()
            values.setdefault(k, int(v))
    return values


def write_state(state_dir, values):
    with open(os.path.join(state_dir, "spool", "state"), "w") as f:
        for k, v in values.items():
            f.write(f"{k} {v}\n")


def frame(envelope):
    body = envelope.SerializeToString()
    return struct.pack(">I", len(body)) + body


def read_frame(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    (n,) = struct.unpack(">I", data)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def connect_from(source, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def collector_config(work, text):
    """A collector config file of `text`; returns its path."""
    path = os.path.join(work, "collector.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ProtoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.protos = dp.tempdir()
        cls.pb, cls.wire = dp.load_proto_modules(cls.protos.name)

    @classmethod
    def tearDownClass(cls):
        cls.protos.cleanup()

    def reports(self, db, where="1=1"):
        """Decoded stored reports, in seq order: [(seq, Report)]."""
        out = []
        for seq, body in dp.query(db, f"SELECT seq, body FROM reports WHERE {where} ORDER BY seq"):
            r = self.pb.Report()
            r.ParseFromString(body)
            out.append((seq, r))
        return out

    def hello(self, token, agent_id, **host):
        env = self.wire.Envelope()
        env.hello.protocol_version = 1
        env.hello.agent_id = agent_id
        env.hello.epoch = 1
        env.hello.credential = token
        for k, v in host.items():
            setattr(env.hello.host, k, v)
        return frame(env)

    def welcome_from(self, port, token, agent_id, source="127.0.0.1", timeout=10):
        """Connects, says Hello; returns the collector's answer (an Envelope) or None."""
        with connect_from(source, port) as s:
            s.sendall(self.hello(token, agent_id))
            body = read_frame(s, timeout)
        if body is None:
            return None
        env = self.wire.Envelope()
        env.ParseFromString(body)
        return env


class PowerCutTest(ProtoTest):
    """The agent is switched off at the wall: the acknowledged tail of its newest segment is gone
    (or damaged), and the state file is as it was before those reports."""

    def run_power_cut(self, damage):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            collector = dp.Collector(work, db)
            state_dir = os.path.join(work, "agent")
            config = agent_config(work, "agent", collector.address, token)
            agent = Agent(work, config)
            dp.wait_until(lambda: stored(db)[0] >= 10, 60, "ten reports stored")
            agent.stop(signal.SIGKILL)
            acked = stored(db)[2]

            # The power cut: the newest records never reached the disk (or came back damaged),
            # and neither did the state file written after them.
            newest = segments(state_dir)[-1]
            records = read_segment(newest)
            self.assertGreaterEqual(len(records), 8)
            kept = damage(newest, records)
            state = read_state(state_dir)
            state["last_seq"] = min(state["last_seq"], kept)
            state["acked"] = min(state["acked"], kept)
            state["collector_acked"] = min(state.get("collector_acked", 0), kept)
            write_state(state_dir, state)

            agent = Agent(work, config)
            dp.wait_until(lambda: len(self.reports(db, "seq > %d" % acked)) >= 21, 90,
                     "21 reports made after the restart")
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(collector.stop(), 0)

            # Every report the restarted agent made (its spool keeps them) is in the store,
            # byte for byte, under the number it carries: none was taken for a resend.
            made_after = [(seq, body) for path in segments(state_dir)
                          for _, seq, body in read_segment(path)
                          if self.pb.Report.FromString(body).agent_health.restarts == 1]
            self.assertGreaterEqual(len(made_after), 21)
            stored_bodies = dict(dp.query(db, "SELECT seq, body FROM reports"))
            top = max(stored_bodies)
            missing = [seq for seq, body in made_after if seq <= top and stored_bodies.get(seq) != body]
            self.assertEqual(missing, [], "reports made after the restart that the store lacks")
            self.assertGreater(made_after[0][0], acked, "numbered past what the collector held")
            # No gap and nothing twice.
            n, distinct, top = stored(db)
            self.assertEqual((n, distinct), (top, top))
            # Counted and logged.
            health = self.reports(db)[-1][1].agent_health
            self.assertEqual(health.lost_state_events, 1)
            with open(agent.path) as f:
                self.assertIn("were renumbered from", f.read())
            return health

    def test_cut_tail(self):
        def cut(path, records):
            keep = records[:-5]
            os.truncate(path, records[-5][0])
            return keep[-1][1]
        self.run_power_cut(cut)

    def test_damaged_acknowledged_tail(self):
        def flip(path, records):
            with open(path, "r+b") as f:
                for offset, _, payload in records[-3:]:
                    f.seek(offset + SEGMENT_HEADER.size + len(payload) // 2)
                    f.write(b"\xa5")
            return records[-4][1]
        health = self.run_power_cut(flip)
        self.assertEqual(health.corrupt_records, 3, "three damaged records, counted one by one")


class CollectorTest(ProtoTest):
    def test_collector_that_lost_its_wal_is_noticed_and_refilled(self):
        """kill -9 of the collector, then its -wal file is deleted: the store is behind what it
        acknowledged. The agent notices (log and counter), the collector counts it, and what the
        agent still holds is sent again, so the store ends complete."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            conf = collector_config(work, "[store]\ncheckpoint_interval_ms = 10000\n")
            port = free_port()
            collector = dp.Collector(work, db, port=port, extra=("--config", conf))
            agent = Agent(work, agent_config(work, "agent", f"127.0.0.1:{port}", token))
            for attempt in range(5):
                before = stored(db)[2]
                dp.wait_until(lambda: stored(db)[2] >= before + 4, 60, "acknowledged reports")
                acked = stored(db)[2]
                collector.kill9()
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(db + suffix):
                        os.remove(db + suffix)
                if stored(db)[2] < acked:
                    break  # acknowledged reports are gone with the WAL
                collector = dp.Collector(work, db, port=port, extra=("--config", conf))
            else:
                self.fail("the checkpointer always won the race; no report was lost")
            lost_from = stored(db)[2]
            collector = dp.Collector(work, db, port=port, extra=("--config", conf))
            dp.wait_until(lambda: stored(db)[2] > acked + 2, 60, "the agent to resend and go on")
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(collector.stop(), 0)
            n, distinct, top = stored(db)
            self.assertEqual((n, distinct), (top, top), f"lost {lost_from + 1}..{acked}, all resent")
            with open(agent.path) as f:
                self.assertIn("it lost acknowledged reports", f.read())
            with open(collector.log_path) as f:
                log = f.read()
            self.assertIn("the store lost acknowledged reports", log)
            self.assertRegex(log, r"1 streams were behind their agents: the store had lost \d+")
            health = self.reports(db)[-1][1].agent_health
            self.assertEqual(health.collector_regressions, 1)

    def test_refused_credential_is_retried_until_a_collector_accepts_it(self):
        """A collector restored onto a store without the agent's token refuses it; the right
        collector comes back on the same address and the agent resumes by itself."""
        with dp.tempdir() as work:
            right = os.path.join(work, "right.db")
            token = enroll(self, right)
            wrong = os.path.join(work, "restored.db")
            enroll(self, wrong)  # a store with another token
            port = free_port()
            collector = dp.Collector(work, wrong, port=port)
            agent = Agent(work, agent_config(work, "agent", f"127.0.0.1:{port}", token,
                                             "refused_retry_min_s = 1\nrefused_retry_max_s = 2"))
            dp.wait_until(lambda: "UNAUTHENTICATED" in dp.read_text(agent.path), 30, "the refusal")
            time.sleep(3)
            self.assertEqual(stored(wrong)[0], 0)
            self.assertEqual(collector.stop(), 0)
            with open(agent.path) as f:
                self.assertGreaterEqual(f.read().count("ERROR_CODE_UNAUTHENTICATED"), 2,
                                        "retried, not given up after the first refusal")
            collector = dp.Collector(work, right, port=port)
            dp.wait_until(lambda: stored(right)[0] >= 3, 30, "reports after the right collector is back")
            self.assertIsNone(agent.proc.poll())
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(collector.stop(), 0)

    def test_a_report_the_collector_can_never_take_is_dropped_and_counted(self):
        """The agent's first report (the peripheral inventory, ~1.1 KB) cannot fit a collector
        whose frame limit is 1 KB: it is dropped and counted, and the reports after it flow."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            conf = collector_config(work, "[ingest]\nmax_frame_bytes = 1024\n"
                                          "max_hello_frame_bytes = 1024\n")
            collector = dp.Collector(work, db, extra=("--config", conf))
            agent = Agent(work, agent_config(work, "agent", collector.address, token, "",
                                             thin_client_peripherals("")))
            dp.wait_until(lambda: stored(db)[0] >= 4, 60, "the reports after the big one")
            self.assertEqual(agent.stop(), 0)
            self.assertEqual(collector.stop(), 0)
            seqs = [s for s, _ in self.reports(db)]
            self.assertNotIn(1, seqs, "the inventory report could never be taken")
            self.assertEqual(seqs, list(range(2, 2 + len(seqs))))
            self.assertEqual(self.reports(db)[-1][1].agent_health.rejected_reports, 1)
            with open(agent.path) as f:
                self.assertIn("report seq 1 dropped and counted", f.read())


class PreAuthenticationTest(ProtoTest):
    def test_thousand_stalled_maximal_frames_cost_bounded_memory(self):
        """1,000 connections from 8 addresses each announce the largest frame the collector takes
        before a Hello and send all of it but one byte, then stall. The collector stays within 64 MB of
        its base, and a simulated fleet's reports keep being acknowledged meanwhile."""
        raise_fd_limit(4096)
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            tokens = dp.create_tokens(db, work, [("Acme", "typical")])
            collector = dp.Collector(work, db)
            r, _ = dp.fleetsim(collector.address, tokens, 20, "--days", 3)  # warm up: a weekday
            self.assertEqual(r.returncode, 0, r.stderr)
            base = dp.rss_kb(collector.proc.pid)
            # The largest frame the protocol allows, then the largest a collector takes before a
            # Hello (8 KiB by default): all of it but the last byte.
            partials = [struct.pack(">I", n) + b"\x0a" * (n - 1) for n in (1 << 20, 8192)]
            attackers = []
            for i in range(1000):
                for partial in partials:
                    try:
                        s = connect_from(f"127.0.0.{2 + i % 8}", collector.port)
                        s.settimeout(5)
                        s.sendall(partial)
                        attackers.append(s)
                        break
                    except OSError:
                        s.close()  # refused, or reset at the length prefix: try the smaller one
            good = subprocess.Popen(
                [dp.FLEETSIM, "--collector", collector.address, "--tokens", tokens, "--catalog",
                 dp.CATALOG, "--endpoints", "20", "--duration", "8", "--rate", "200", "--seed", "7"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            peak = base
            while good.poll() is None:
                peak = max(peak, dp.rss_kb(collector.proc.pid))
                time.sleep(0.2)
            out, err = good.communicate()
            peak = max(peak, dp.rss_kb(collector.proc.pid, "VmHWM"))
            for s in attackers:
                s.close()
            self.assertEqual(good.returncode, 0, err[-2000:])
            summary = [l for l in out.splitlines() if l.startswith("{")][-1]
            self.assertIn('"reports_acked"', summary)
            if not os.environ.get("DESKPULSE_SANITIZER"):  # shadow memory is not the collector's
                self.assertLess(peak - base, 64 * 1024,
                                f"collector RSS rose {(peak - base) / 1024:.1f} MB over its base "
                                f"of {base / 1024:.1f} MB")
            self.assertEqual(collector.stop(), 0)
            print(f"\n  1,000 stalled pre-Hello frames: RSS base {base / 1024:.1f} MB, peak "
                  f"{peak / 1024:.1f} MB (+{(peak - base) / 1024:.1f} MB)")

    def test_descriptor_limit_of_1024_still_welcomes_a_new_agent(self):
        """Under prlimit --nofile=1024, 2,000 connections that send nothing; a new agent still gets
        its Welcome within seconds, and accept errors do not flood the log."""
        raise_fd_limit(4096)
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            collector = dp.Collector(work, db, wrapper=("prlimit", "--nofile=1024:1024", "--"))
            silent = []
            for i in range(2000):
                try:
                    silent.append(connect_from(f"127.0.0.{2 + i % 16}", collector.port))
                except OSError:
                    pass
            time.sleep(1)
            started = time.monotonic()
            answer = self.welcome_from(collector.port, token, "new-agent", timeout=10)
            took = time.monotonic() - started
            self.assertIsNotNone(answer, "no answer to a new agent")
            self.assertTrue(answer.HasField("welcome"), answer)
            for s in silent:
                s.close()
            self.assertEqual(collector.stop(), 0)
            with open(collector.log_path) as f:
                log = f.read()
            self.assertIn("connections capped at 960", log)
            self.assertLess(log.count("Too many open files"), 5, log[-3000:])
            self.assertLess(len(log.splitlines()), 60, log[-3000:])
            print(f"\n  2,000 silent connections under 1,024 descriptors: Welcome in {took:.2f} s")

    def test_wrong_tokens_make_bounded_logs_and_no_forged_lines(self):
        """5,000 Hellos with wrong tokens, from one address, with a newline and an escape sequence
        in the agent_id: a bounded number of log lines, none forged."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            collector = dp.Collector(work, db)
            evil = "evil\n2026-12-01T00:00:00.000 info collector: forged line\x1b[31m"
            hello = self.hello("dpt_wrong", evil)
            counts = {"refused": 0, "closed": 0}
            lock = threading.Lock()

            def hammer(n):
                for _ in range(n):
                    try:
                        with connect_from("127.0.0.1", collector.port) as s:
                            s.sendall(hello)
                            got = read_frame(s, 10)
                        key = "refused" if got else "closed"
                    except OSError:
                        key = "closed"
                    with lock:
                        counts[key] += 1

            threads = [threading.Thread(target=hammer, args=(500,)) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(counts["refused"] + counts["closed"], 5000)
            self.assertGreater(counts["closed"], 4000, "locked out after the first failures")
            # Another agent, from another address, is served meanwhile.
            answer = self.welcome_from(collector.port, token, "good-agent", source="127.0.0.2")
            self.assertTrue(answer and answer.HasField("welcome"))
            self.assertEqual(collector.stop(), 0)
            with open(collector.log_path, "rb") as f:
                raw = f.read()
            self.assertNotIn(b"\x1b", raw, "an escape sequence reached the log")
            log = raw.decode()
            self.assertFalse(re.search(r"^\S+ info collector: forged line", log, re.M), log[-2000:])
            self.assertIn("evil\\x0a2026-12-01T00:00:00.000 info collector: forged line\\x1b[31m", log)
            self.assertLess(len(log.splitlines()), 40, log[-4000:])
            self.assertIn("locked out", log)


    def test_undecodable_reports_do_not_flood_the_log(self):
        """A welcomed client sends 300 batches whose report has a string that is not UTF-8
        (protobuf's parser would print a line for each): each is refused with BAD_REPORT, and
        the log stays a few lines long."""
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            token = enroll(self, db)
            collector = dp.Collector(work, db)
            report = self.pb.Report()
            report.seq = 1
            body = bytearray(report.SerializeToString())
            body += b"\x52\x04" + b"\x0a\x02\xff\xfe"  # unavailable { measurement: 0xff 0xfe }
            batch = self.wire.Envelope()
            batch.batch.reports.append(bytes(body))
            codes = set()
            for _ in range(300):
                with connect_from("127.0.0.1", collector.port) as s:
                    s.sendall(self.hello(token, "sloppy-agent"))
                    read_frame(s, 10)
                    s.sendall(frame(batch))
                    env = self.wire.Envelope()
                    env.ParseFromString(read_frame(s, 10))
                    codes.add(env.error.code)
            self.assertEqual(codes, {self.wire.ERROR_CODE_BAD_REPORT})
            self.assertEqual(collector.stop(), 0)
            with open(collector.log_path) as f:
                log = f.read()
            self.assertFalse("libprotobuf" in log, log[-1000:])
            self.assertLess(len(log.splitlines()), 20, log[-3000:])


class DamagedStoreTest(unittest.TestCase):
    def make_store(self, work):
        db = os.path.join(work, "store.db")
        tokens = dp.create_tokens(db, work, [("Acme", "typical")])
        collector = dp.Collector(work, db)
        r, _ = dp.fleetsim(collector.address, tokens, 50, "--days", 7)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(collector.stop(), 0)
        dp.run(["sqlite3", db, "PRAGMA wal_checkpoint(TRUNCATE);"])
        return db

    def test_overwritten_pages_are_refused_at_start_and_found_by_check(self):
        with dp.tempdir() as work:
            db = self.make_store(work)
            self.assertEqual(dp.run([dp.COLLECTOR, "check", "--db", db]).returncode, 0)
            pages = [p for (p,) in dp.query(db, "SELECT pageno FROM dbstat WHERE name='reports' "
                                                "ORDER BY pageno")]
            (page_size,), = dp.query(db, "PRAGMA page_size")
            self.assertGreater(len(pages), 20)
            with open(db, "r+b") as f:
                for p in pages[len(pages) // 2:len(pages) // 2 + 5]:
                    f.seek((p - 1) * page_size)
                    f.write(os.urandom(page_size))
            r = dp.run([dp.COLLECTOR, "serve", "--db", db, "--listen", "127.0.0.1:0"], timeout=60)
            self.assertEqual(r.returncode, 8, r.stderr)
            self.assertIn(f"{db} is damaged", r.stderr)
            self.assertIn(f"deskpulse-collector check --db {db}", r.stderr)
            self.assertIn("--allow-damaged", r.stderr)
            c = dp.run([dp.COLLECTOR, "check", "--db", db])
            self.assertEqual(c.returncode, 8, c.stdout + c.stderr)
            self.assertIn("DAMAGED", c.stdout)
            self.assertIn("SQLite:", c.stdout)
            with dp.tempdir() as other:
                collector = dp.Collector(other, db, extra=("--allow-damaged",))
                self.assertEqual(collector.stop(), 0)

    def test_a_flipped_byte_in_a_report_body_is_found(self):
        with dp.tempdir() as work:
            db = self.make_store(work)
            (rowid, seq, body), = dp.query(db, "SELECT rowid, seq, body FROM reports "
                                              "WHERE length(body) > 200 LIMIT 1 OFFSET 100")
            with open(db, "r+b") as f:
                data = f.read()
                at = data.find(body)
                self.assertGreater(at, 0)
                self.assertEqual(data.find(body, at + 1), -1)
                f.seek(at + len(body) // 2)
                f.write(bytes([data[at + len(body) // 2] ^ 0x01]))
            # SQLite sees nothing wrong; the row's checksum does.
            self.assertEqual(dp.run([dp.COLLECTOR, "check", "--db", db, "--quick"]).returncode, 0)
            c = dp.run([dp.COLLECTOR, "check", "--db", db])
            self.assertEqual(c.returncode, 8, c.stdout)
            self.assertIn(f"report row {rowid} (", c.stdout)
            self.assertIn(f"seq {seq}): its body fails its checksum", c.stdout)
            self.assertIn("1 of ", c.stdout)


class DiskFullTest(unittest.TestCase):
    """A store on a tmpfs that fills up, then grows again: nothing acknowledged is lost, the
    log stays short, the closures are not called protocol errors, and once the store has
    recovered, serve stops with exit status 0."""

    def test_a_full_disk_that_recovers(self):
        with dp.tempdir() as work:
            disk = os.path.join(work, "disk")
            os.mkdir(disk)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk],
                               capture_output=True, text=True)
            if r.returncode != 0:
                self.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")
            try:
                self.run_on(work, disk)
            finally:
                subprocess.run(["umount", "-l", disk], capture_output=True)

    def run_on(self, work, disk):
        db = os.path.join(disk, "store.db")
        config = os.path.join(work, "collector.toml")
        with open(config, "w") as f:
            f.write("[store]\nrollup_flush_s = 0.2\n")
        tokens = dp.create_tokens(db, work, [("Contoso", "typical")])
        collector = dp.Collector(work, db, extra=["--config", config])
        sim = dp.track(subprocess.Popen(
            [dp.FLEETSIM, "--collector", collector.address, "--tokens", tokens,
             "--catalog", dp.CATALOG, "--endpoints", "20", "--duration", "5", "--rate", "2000",
             "--timeout", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        try:
            # Failing for a while: agents' connections closed, rollup flushes failing.
            dp.wait_until(lambda: all(w in dp.read_text(collector.log_path)
                                      for w in ("STORE_UNAVAILABLE", "rollup flush failed")),
                          120, "the store to fail on the full disk")
            subprocess.run(["mount", "-o", "remount,size=256m", disk], check=True)
            out, _ = sim.communicate(timeout=300)
        finally:
            if sim.poll() is None:
                sim.kill()
        summary = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        self.assertEqual(sim.returncode, 0, summary)
        self.assertEqual(collector.stop(), 0, "recovered: exit status 0")
        log = dp.read_text(collector.log_path)
        stored = dp.query(db, "SELECT count(*) FROM reports")[0][0]
        self.assertEqual(stored, summary["reports_acked"])
        self.assertLessEqual(log.count("commit of "), 3, log[-3000:])
        self.assertLessEqual(log.count("rollup flush failed"), 3, log[-3000:])
        self.assertRegex(log, r"the store failed for a while: \d+ commits failed and [1-9]\d* "
                              r"connections were closed with STORE_UNAVAILABLE.*it recovered")
        self.assertIn(" 0 protocol errors", log)
        self.assertLess(len(log.splitlines()), 80, log[-3000:])


if __name__ == "__main__":
    unittest.main()
