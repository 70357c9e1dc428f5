"""scripts/setup.sh: what each command installs, and waiting for another package
manager's lock (a fresh cloud machine runs unattended-upgrades at first boot).

apt-get and dpkg-query are stand-ins on PATH that behave as Debian's do about the
lock: the real lock is an fcntl lock on a file, held here by the test itself."""
import fcntl
import os
import subprocess
import textwrap
import threading
import unittest

import dp

SETUP = os.path.join(dp.SOURCE_DIR, "scripts", "setup.sh")


def packages(kind):
    r = dp.run(["bash", SETUP, "--list", kind])
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


class PackageSetsTest(unittest.TestCase):
    def test_the_demo_installs_what_it_builds_and_runs_with_and_no_test_toolchain(self):
        demo = packages("demo")
        for needed in ("cmake", "libprotobuf-dev", "libboost-dev", "libpq-dev", "openssl",
                       "curl", "hwdata", "libsane1", "foomatic-db", "libccid"):
            self.assertIn(needed, demo)
        # Nor Node.js: the chart library comes from the npm registry as the lock pins it.
        for test_only in ("linux-image-amd64", "clang-tidy-14", "clang", "postgresql",
                          "cups-daemon", "pcscd", "prometheus", "chromium", "umockdev",
                          "libgtest-dev", "python3-dbusmock", "nodejs", "npm"):
            self.assertNotIn(test_only, demo)
        self.assertLessEqual(len(demo), 40)

    def test_each_set_holds_the_one_before_it(self):
        demo, pg, test = packages("demo"), packages("demo-postgres"), packages("test")
        self.assertEqual(pg - demo, {"postgresql", "postgresql-client"})
        self.assertLessEqual(pg, test)
        self.assertIn("linux-image-amd64", test)

    def test_an_unknown_set_is_refused(self):
        r = dp.run(["bash", SETUP, "--list", "everything"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown set 'everything'", r.stderr)


class LockWaitTest(unittest.TestCase):
    """One package missing, and the package manager's lock held by another
    process: setup waits (and says so), then installs; past its bound it stops
    with a line naming the holder, never apt-get's exit 100."""

    def setUp(self):
        self.work = dp.tempdir()
        w = self.work.name
        self.lock = os.path.join(w, "lock-frontend")
        open(self.lock, "w").close()
        self.calls = os.path.join(w, "apt-calls")
        bin_dir = os.path.join(w, "bin")
        os.makedirs(bin_dir)
        # dpkg-query: everything is installed but hwdata.
        self.write_tool(bin_dir, "dpkg-query", """\
            #!/bin/sh
            for last; do :; done
            [ "$last" = hwdata ] && exit 1
            echo "install ok installed"
            """)
        # apt-get: fails like apt-get when the lock is held (exit 100), else
        # records its arguments.
        self.write_tool(bin_dir, "apt-get", f"""\
            #!/usr/bin/env python3
            import fcntl, sys
            with open({self.lock!r}, "r+") as f:
                try:
                    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    print("E: Could not get lock {self.lock}. It is held by process 1",
                          file=sys.stderr)
                    sys.exit(100)
                with open({self.calls!r}, "a") as out:
                    out.write(" ".join(sys.argv[1:]) + "\\n")
            """)
        self.env = dict(os.environ, PATH=bin_dir + ":" + os.environ["PATH"],
                        DESKPULSE_SETUP_LOCKS=self.lock)

    def tearDown(self):
        self.work.cleanup()

    def write_tool(self, bin_dir, name, text):
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        os.chmod(path, 0o755)

    def hold_lock(self):
        """Holds the lock from another process (fcntl locks are per process)."""
        holder = subprocess.Popen(
            ["python3", "-c", "import fcntl, sys, time\n"
             f"f = open({self.lock!r}, 'r+'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
             "print('held', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        return holder

    @staticmethod
    def release(holder):
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()

    def test_setup_waits_for_the_lock_then_installs(self):
        holder = self.hold_lock()
        setup = subprocess.Popen(["bash", SETUP, "demo"], env=self.env, stderr=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, text=True)
        said = []

        def read():
            for line in setup.stderr:
                said.append(line)
        reader = threading.Thread(target=read)
        reader.start()
        dp.wait_until(lambda: any("waiting for another package manager" in s for s in said),
                      what="setup to say it waits")
        self.assertIsNone(setup.poll())  # still waiting, not failed
        self.release(holder)  # the other package manager finishes
        self.assertEqual(setup.wait(timeout=60), 0, "".join(said))
        reader.join()
        setup.stderr.close()
        text = "".join(said)
        self.assertIn(f"holds {self.lock}", text)
        self.assertIn("python3", text)  # the holder, by name
        calls = dp.read_text(self.calls).splitlines()
        self.assertEqual(len(calls), 2, calls)
        self.assertIn("update", calls[0])
        self.assertIn("install", calls[1])
        self.assertTrue(calls[1].rstrip().endswith(" hwdata"), calls[1])

    def test_past_its_bound_setup_names_the_holder_and_stops(self):
        holder = self.hold_lock()
        try:
            env = dict(self.env, DESKPULSE_SETUP_LOCK_WAIT="2")
            r = subprocess.run(["bash", SETUP, "demo"], env=env, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 1, r.stderr)
            last = r.stderr.strip().splitlines()[-1]
            self.assertIn("gave up after 2 s", last)
            self.assertIn(f"holds {self.lock}", last)
            self.assertIn(f"pid {holder.pid}", last)
            self.assertEqual(dp.read_text(self.calls), "")  # apt-get never ran
        finally:
            self.release(holder)

    def test_with_nothing_missing_no_package_manager_runs(self):
        self.write_tool(os.path.dirname(self.calls) + "/bin", "dpkg-query", """\
            #!/bin/sh
            echo "install ok installed"
            """)
        holder = self.hold_lock()
        try:
            r = subprocess.run(["bash", SETUP, "demo"], env=self.env, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("packages of 'demo' present", r.stderr)
            self.assertNotIn("waiting", r.stderr)
        finally:
            self.release(holder)


if __name__ == "__main__":
    unittest.main()
