"""The demo as a newcomer runs it: twice in a row on the embedded SQLite store,
then with --postgres. Every command it prints is run as printed, while it
serves; a second run keeps the store, certificate, port and tokens of the first;
the collectors log no warning on the way; Ctrl-C stops everything, bounded.

The demo uses this build's binaries (DESKPULSE_DEMO_BUILD) rather than building
its own Release tree, and a small fleet."""
import os
import re
import signal
import subprocess
import threading
import time
import unittest

import dp

DEMO = os.path.join(dp.SOURCE_DIR, "scripts", "demo.sh")
SERVING = "Serving agents, the API and the dashboard until Ctrl-C."
# A stop: the ingest drain (10 s at most) and the final rollup flush (5 s at
# most), and the demo's own steps (docs/operations.md, "Stopping").
STOP_BOUND_S = 15 + 15


class Demo:
    """scripts/demo.sh running in its own process group, as in a terminal."""

    def __init__(self, data, *args):
        env = dict(os.environ, DESKPULSE_DEMO_DIR=data, DESKPULSE_DEMO_BUILD=dp.BIN,
                   DESKPULSE_DEMO_ENDPOINTS="150")
        env.pop("DESKPULSE_DEMO_HTTP_PORT", None)
        self.proc = dp.track(subprocess.Popen(
            ["bash", DEMO, *args], cwd=dp.SOURCE_DIR, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True))
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out)),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err))]
        for r in self.readers:
            r.start()
        dp.wait_until(lambda: SERVING in self.out or self.proc.poll() is not None, timeout=600,
                      what="the demo to serve")
        if SERVING not in self.out:
            self.proc.wait()
            raise AssertionError("the demo stopped before serving:\n" + self.text())

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    def text(self):
        return "\n".join(self.out) + "\n--- stderr\n" + "\n".join(self.err)

    def commands(self):
        """The lines the demo prints for the user to run: indented by four spaces."""
        return [line[4:] for line in self.out if re.match(r"^    \S", line)]

    def labelled(self, label):
        """The value of a "  Label: value" line."""
        for line in self.out:
            m = re.match(rf"^  {label}:\s+(\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError(f"no '{label}:' line in:\n" + self.text())

    def interrupt(self):
        """Ctrl-C: SIGINT to the whole process group. Returns the seconds it took."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        rc = self.proc.wait(timeout=STOP_BOUND_S + 30)
        took = time.monotonic() - t0
        for r in self.readers:
            r.join()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, took


@unittest.skipIf(os.environ.get("DESKPULSE_SANITIZER"),
                 "the demo's scripts once, with the plain build: its binaries are tested under "
                 "the sanitizers by every other test")
class DemoTest(unittest.TestCase):
    def run_printed(self, demo, expect):
        """Runs every printed command as it stands, from another directory."""
        commands = demo.commands()
        self.assertEqual(len(commands), expect, demo.text())
        outputs = []
        with dp.tempdir() as elsewhere:
            for cmd in commands:
                with self.subTest(cmd=cmd[:80]):
                    r = dp.run(["bash", "-c", cmd], cwd=elsewhere, timeout=120)
                    self.assertEqual(r.returncode, 0, f"{cmd}\n{r.stdout[-2000:]}{r.stderr}")
                    self.assertTrue(r.stdout.strip(), cmd)
                    outputs.append((cmd, r.stdout))
        return outputs

    def assert_no_warnings(self, logs):
        for log in logs:
            text = dp.read_text(log)
            self.assertIn("listening on", text, log)
            bad = [line for line in text.splitlines()
                   if re.search(r" (warning|error|critical) ", line)]
            self.assertEqual(bad, [], f"{log}:\n" + "\n".join(bad))

    def assert_stopped(self, demo):
        rc, took = demo.interrupt()
        self.assertEqual(rc, 0, demo.text())
        self.assertLess(took, STOP_BOUND_S, demo.text())
        self.assertTrue(any("stopped; the store" in line for line in demo.err), demo.text())
        self.assertEqual(dp.run(["pgrep", "-f", f"serve --db .*{re.escape(self.data)}"]).stdout,
                         "")

    def test_twice_on_sqlite_then_on_postgresql(self):
        with dp.tempdir() as work:
            self.data = os.path.join(work, "demo-data")

            # First run: simulates, imports, serves.
            first = Demo(self.data)
            self.assertTrue(any("simulating 150 endpoints" in line for line in first.err))
            outputs = self.run_printed(first, 6)
            admin_token = outputs[-1][1].strip()  # api-token create --role customer-admin
            self.assertTrue(admin_token.startswith("dpa_"), outputs[-1])
            url, token = first.labelled("Open"), first.labelled("Token")
            cert = os.path.join(self.data, "collector.crt")
            self.assertEqual(self.api(cert, url, token, "customers"), 200)
            self.assert_no_warnings([os.path.join(self.data, "collector.log")])
            self.assertIn("Contoso Legal", "\n".join(first.out))
            self.assert_stopped(first)

            # Second run: the same store, certificate, port and tokens, said so.
            with open(cert) as f:
                cert_before = f.read()
            second = Demo(self.data)
            self.assertTrue(any("reusing the demo made" in line for line in second.err),
                            second.text())
            self.assertFalse(any("simulating" in line for line in second.err))
            self.assertEqual(second.labelled("Open"), url)
            self.assertEqual(second.labelled("Token"), token)
            with open(cert) as f:
                self.assertEqual(f.read(), cert_before)
            # The token made by hand in the first run still works.
            self.assertEqual(self.api(cert, url, admin_token, "customers"), 200)
            self.run_printed(second, 6)
            self.assert_no_warnings([os.path.join(self.data, "collector.log")])
            self.assert_stopped(second)

            # --postgres: two collectors on a cluster the demo starts and stops.
            pg = Demo(self.data, "--postgres")
            self.run_printed(pg, 7)
            logs = [os.path.join(self.data, "pg", f"collector{n}.log") for n in (1, 2)]
            logs_line = next(line for line in pg.out if line.startswith("  logs"))
            for log in logs:
                self.assertIn(log, logs_line)  # the serving collector's log too
            self.assert_no_warnings(logs)
            store_line = next(line for line in pg.out if line.startswith("  store"))
            self.assertNotIn(dp.read_text(os.path.join(self.data, "pg", "password")).strip(),
                             "\n".join(pg.out))
            self.assertIn("postgresql://", store_line)
            cluster = dp.read_text(os.path.join(self.data, "pg", "dir")).strip()
            self.assert_stopped(pg)
            self.assertEqual(dp.run(["pgrep", "-f", f"postgres -D {cluster}"]).stdout, "")

            # Again: the same cluster on the same port, so the printed URIs still work.
            again = Demo(self.data, "--postgres")
            self.assertTrue(any("reusing the demo made" in line for line in again.err))
            self.assertEqual(next(line for line in again.out if line.startswith("  store")),
                             store_line)
            self.assertEqual(again.commands(), pg.commands())
            self.assert_stopped(again)
            subprocess.run(["bash", os.path.join(dp.SOURCE_DIR, "tests", "fakes",
                                                 "pg_cluster.sh"), "stop",
                            os.path.join(self.data, "pg")], check=True)

    @staticmethod
    def api(cert, url, token, path):
        r = dp.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert,
                    "-H", f"Authorization: Bearer {token}", f"{url}api/v1/{path}"])
        return int(r.stdout or 0)


if __name__ == "__main__":
    unittest.main()
