"""deskpulse-agent's boot probe over a private D-Bus: systemd and logind played by python3-dbusmock.

Runs under the system Python (python3-dbusmock and python3-dbus are Debian packages)."""
import json
import os
import subprocess
import tempfile
import time
import unittest

import dbus
import dbusmock

BIN = os.environ.get("DESKPULSE_BIN", os.path.join(os.path.dirname(__file__), "../../build"))
AGENT = os.path.join(BIN, "agent", "deskpulse-agent")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
SYSTEMD = "org.freedesktop.systemd1"
LOGIND = "org.freedesktop.login1"
MANAGER = "org.freedesktop.systemd1.Manager"

# A UEFI machine as systemd-analyze would show it: firmware 2.1 s, loader 3.1 s, kernel 1.8 s,
# initrd 2.4 s, userspace 10.5 s (monotonic µs; firmware and loader count backwards from kernel start).
STAMPS = {"FirmwareTimestampMonotonic": 5_200_000, "LoaderTimestampMonotonic": 3_100_000,
          "InitRDTimestampMonotonic": 1_800_000, "UserspaceTimestampMonotonic": 4_200_000,
          "FinishTimestampMonotonic": 14_700_000}


class PrivateBus:
    def __init__(self, work):
        self.path = os.path.join(work, "system_bus_socket")
        self.address = f"unix:path={self.path}"
        self.daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                                        f"--address={self.address}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.mocks = []
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.02)
        self.conn = dbus.bus.BusConnection(self.address)

    def mock(self, template):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        log = open(os.path.join(os.path.dirname(self.path), f"dbusmock-{template}.log"), "w")
        p = subprocess.Popen(["/usr/bin/python3", "-m", "dbusmock", "--system", "--template", template],
                             env=env, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.mocks.append(p)
        name = {"systemd": SYSTEMD, "logind": LOGIND}[template]
        deadline = time.monotonic() + 20
        while not self.conn.name_has_owner(name):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"dbusmock {template} did not start (see {log.name})")
            time.sleep(0.02)

    def obj(self, name, path):
        return self.conn.get_object(name, path)

    def close(self):
        for p in self.mocks:
            p.terminate()
            p.wait(10)
        self.conn.close()
        self.daemon.terminate()
        self.daemon.wait(10)


def run_once(work, bus_address, kmsg="/nonexistent/kmsg"):
    config = os.path.join(work, "agent.toml")
    with open(config, "w") as f:
        f.write(f"""[agent]
state_dir = "{work}/state"
[probes.boot]
system_bus = "{bus_address}"
kmsg = "{kmsg}"
fpdt_dir = "{work}/no-fpdt"
[probes.session]
enabled = false
[probes.peripherals]
enabled = false
[probes.stability]
enabled = false
""")
    r = subprocess.run([AGENT, "--config", config, "--once", "--print"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class BootOverDbusTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="deskpulse-dbus-")
        self.work = self.tmp.name
        self.bus = PrivateBus(self.work)

    def tearDown(self):
        self.bus.close()
        self.tmp.cleanup()

    def systemd(self, stamps):
        self.bus.mock("systemd")
        manager = self.bus.obj(SYSTEMD, "/org/freedesktop/systemd1")
        manager.AddProperties(MANAGER, {k: dbus.UInt64(v) for k, v in stamps.items()},
                              dbus_interface=dbusmock.MOCK_IFACE)
        return manager

    def test_phases_and_login_ready_from_a_greeter_session(self):
        self.systemd(STAMPS)
        self.bus.mock("logind")
        login = self.bus.obj(LOGIND, "/org/freedesktop/login1")
        # A user session that started earlier must not count: only the greeter is "login ready".
        for sid, cls, at_us in (("c1", "user", 9_000_000), ("c2", "greeter", 12_000_000)):
            path = login.AddSession(sid, "seat0", dbus.UInt32(110), "lightdm", True,
                                    dbus_interface=dbusmock.MOCK_IFACE)
            session = self.bus.obj(LOGIND, path)
            session.Set("org.freedesktop.login1.Session", "Class", cls,
                        dbus_interface=dbus.PROPERTIES_IFACE)
            session.Set("org.freedesktop.login1.Session", "TimestampMonotonic", dbus.UInt64(at_us),
                        dbus_interface=dbus.PROPERTIES_IFACE)
        report = run_once(self.work, self.bus.address)
        boot = report["boot"]
        self.assertEqual(boot["source"], "BOOT_SOURCE_SYSTEMD")
        self.assertEqual((boot["firmware_ms"], boot["loader_ms"], boot["kernel_ms"], boot["initrd_ms"],
                          boot["userspace_ms"]), (2100, 3100, 1800, 2400, 10500))
        self.assertEqual(boot["login_ready_ms"], 5200 + 12000, "greeter start, counted from power-on")
        self.assertEqual([u for u in report["unavailable"] if u["measurement"].startswith("boot")], [])

    def test_default_target_when_there_is_no_greeter(self):
        manager = self.systemd(STAMPS)
        manager.AddMockUnit("default.target", dbus_interface=dbusmock.MOCK_IFACE)
        unit = self.bus.obj(SYSTEMD, manager.GetUnit("default.target", dbus_interface=MANAGER))
        unit.AddProperties("org.freedesktop.systemd1.Unit",
                           {"ActiveEnterTimestampMonotonic": dbus.UInt64(14_500_000)},
                           dbus_interface=dbusmock.MOCK_IFACE)
        boot = run_once(self.work, self.bus.address)["boot"]
        self.assertEqual(boot["login_ready_ms"], 5200 + 14500)

    def test_unknown_phases_are_absent(self):
        # A BIOS machine without an initrd: systemd knows neither firmware, loader nor initrd.
        self.systemd({"FirmwareTimestampMonotonic": 0, "LoaderTimestampMonotonic": 0,
                      "InitRDTimestampMonotonic": 0, "UserspaceTimestampMonotonic": 2_000_000,
                      "FinishTimestampMonotonic": 9_000_000})
        boot = run_once(self.work, self.bus.address)["boot"]
        self.assertEqual((boot["kernel_ms"], boot["userspace_ms"]), (2000, 7000))
        for absent in ("firmware_ms", "loader_ms", "initrd_ms", "login_ready_ms"):
            self.assertNotIn(absent, boot)

    def test_still_booting_reports_nothing_yet(self):
        self.systemd(dict(STAMPS, FinishTimestampMonotonic=0))
        report = run_once(self.work, self.bus.address)
        self.assertNotIn("boot", report)

    def test_a_bus_without_systemd_falls_back_to_kmsg_and_says_why(self):
        kmsg = os.path.join(DATA, "boot", "kmsg-debian", "kmsg")
        report = run_once(self.work, self.bus.address, kmsg=kmsg)
        self.assertEqual(report["boot"]["source"], "BOOT_SOURCE_KMSG")
        why = [u["reason"] for u in report["unavailable"] if u["measurement"] == "boot.systemd"]
        self.assertEqual(len(why), 1)
        self.assertIn("org.freedesktop.systemd1", why[0])


if __name__ == "__main__":
    unittest.main()
