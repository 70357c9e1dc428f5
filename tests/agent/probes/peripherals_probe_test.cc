#include "agent/probes/peripherals/peripherals_probe.h"

#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "agent/platform/sha256.h"

namespace deskpulse::agent {
namespace {

namespace v1 = deskpulse::v1;

const std::string kData = std::string(DESKPULSE_TEST_DATA) + "/peripherals";

PeripheralsConfig FixtureConfig(const std::string& layout) {
  PeripheralsConfig c;
  c.sysfs = kData + "/" + layout + "/sys";
  c.proc = kData + "/" + layout + "/proc";
  c.udev_data = kData + "/" + layout + "/udev";
  c.cups = false;
  c.pcsc = false;
  c.catalog = "";
  return c;
}

std::map<std::string, v1::PeripheralState> ByName(const v1::Report& r) {
  std::map<std::string, v1::PeripheralState> m;
  for (const auto& p : r.peripherals()) m[p.name()] = p;
  return m;
}

std::string Drivers(const v1::PeripheralState& p) {
  std::string s;
  for (const auto& d : p.drivers()) s += (s.empty() ? "" : ",") + d;
  return s;
}

v1::Report CollectOnce(PeripheralsProbe& probe, std::int64_t now_ms = 1'700'000'000'000) {
  v1::Report r;
  CycleContext ctx;
  ctx.now_unix_ms = now_ms;
  ctx.first_cycle = true;
  probe.Collect(ctx, r);
  return r;
}

TEST(PeripheralsProbe, ThinClientLayoutsGetTheirStates) {
  PeripheralsProbe probe(FixtureConfig("thin-client"), /*once=*/true);
  const v1::Report r = CollectOnce(probe);
  EXPECT_EQ(r.unavailable_size(), 0) << r.unavailable(0).reason();
  auto m = ByName(r);
  ASSERT_EQ(m.size(), 10u);  // root hubs are not peripherals

  const auto& printer = m.at("Hewlett-Packard HP LaserJet 1020");
  EXPECT_EQ(printer.vendor_id(), 0x03f0u);
  EXPECT_EQ(printer.product_id(), 0x2b17u);
  EXPECT_EQ(printer.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(Drivers(printer), "usblp");
  ASSERT_EQ(printer.interface_classes_size(), 1);
  EXPECT_EQ(printer.interface_classes(0), 0x07u);
  EXPECT_EQ(printer.serial_hash().size(), 16u);
  EXPECT_EQ(printer.serial_hash().find("FN0ABCD123"), std::string::npos);

  // A scanner has no kernel driver; SANE's hwdb match in udev says it is served.
  const auto& scanner = m.at("Canon CanoScan");
  EXPECT_EQ(scanner.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(Drivers(scanner), "sane");

  const auto& webcam = m.at("HD Pro Webcam C920");
  EXPECT_EQ(webcam.device_class(), 0xefu);
  EXPECT_EQ(Drivers(webcam), "uvcvideo,snd-usb-audio");
  EXPECT_EQ(webcam.interface_classes_size(), 2);  // video and audio, each once
  EXPECT_EQ(webcam.state(), v1::DEVICE_STATE_WORKING);

  EXPECT_EQ(m.at("GenesysLogic USB2.1 Hub").state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(Drivers(m.at("SanDisk Cruzer Blade")), "usb-storage");

  // pcscd's usbfs claim is a local user-space driver, not a redirect.
  const auto& reader = m.at("Gemalto USB SmartCard Reader");
  EXPECT_EQ(reader.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(Drivers(reader), "usbfs(pcscd)");
  EXPECT_FALSE(reader.redirected());

  // The redirector's claim is: the holding process is named.
  const auto& pad = m.at("Wacom Co.,Ltd. STU-430");
  EXPECT_TRUE(pad.redirected());
  EXPECT_EQ(Drivers(pad), "usbfs(ctxusbd)");
  EXPECT_EQ(pad.state(), v1::DEVICE_STATE_WORKING);

  const auto& unknown = m.at("");  // a fingerprint reader with no strings
  EXPECT_EQ(unknown.vendor_id(), 0x06cbu);
  EXPECT_EQ(unknown.state(), v1::DEVICE_STATE_NO_DRIVER);
  EXPECT_EQ(unknown.reason(), "no driver bound to 1-4.2:1.0 (class ff)");

  const auto& blocked = m.at("Kingston DataTraveler 3.0");
  EXPECT_EQ(blocked.state(), v1::DEVICE_STATE_BLOCKED_BY_POLICY);
  EXPECT_NE(blocked.reason().find("authorized=0"), std::string::npos);

  const auto& exported = m.at("Broadcom Corp 5880");
  EXPECT_TRUE(exported.redirected());
  EXPECT_EQ(exported.state(), v1::DEVICE_STATE_REDIRECT_FAILED);
  EXPECT_EQ(Drivers(exported), "usbip-host");
}

// The catalog built from this machine's Debian packages (CTest fixture "catalog").
TEST(PeripheralsProbe, EachDeviceCarriesTheCatalogsVerdictWhenTheCatalogIsInstalled) {
  ASSERT_TRUE(std::filesystem::exists(DESKPULSE_TEST_CATALOG))
      << DESKPULSE_TEST_CATALOG << " is built by the CTest fixture catalog_build_for_tests";
  PeripheralsConfig config = FixtureConfig("thin-client");
  config.catalog = DESKPULSE_TEST_CATALOG;
  PeripheralsProbe probe(config, /*once=*/true);
  const v1::Report r = CollectOnce(probe);
  EXPECT_EQ(r.unavailable_size(), 0) << r.unavailable(0).reason();
  auto m = ByName(r);
  ASSERT_EQ(m.size(), 10u);
  for (const auto& [name, p] : m) {
    ASSERT_TRUE(p.has_catalog()) << name;
    EXPECT_TRUE(p.catalog().catalog_version().starts_with("1-")) << name;
  }
  auto expect = [&](const std::string& name, v1::CompatibilityVerdict verdict,
                    const std::string& source) {
    const auto& v = m.at(name).catalog();
    EXPECT_EQ(v.verdict(), verdict) << name << ": " << v.detail();
    EXPECT_EQ(v.source(), source) << name << ": " << v.detail();
  };
  expect("Hewlett-Packard HP LaserJet 1020", v1::COMPATIBILITY_VERDICT_SUPPORTED, "kernel");
  expect("Canon CanoScan", v1::COMPATIBILITY_VERDICT_SUPPORTED, "sane");
  expect("HD Pro Webcam C920", v1::COMPATIBILITY_VERDICT_SUPPORTED, "kernel");
  expect("Gemalto USB SmartCard Reader", v1::COMPATIBILITY_VERDICT_SUPPORTED, "ccid");
  expect("SanDisk Cruzer Blade", v1::COMPATIBILITY_VERDICT_SUPPORTED, "kernel");
  // The fingerprint reader: Synaptics 06cb:00bd, vendor-specific, no driver anywhere.
  expect("", v1::COMPATIBILITY_VERDICT_UNKNOWN, "");
  EXPECT_EQ(m.at("HD Pro Webcam C920").catalog().driver(), "uvcvideo");
}

TEST(PeripheralsProbe, ACatalogThatCannotBeReadIsNamedAndDevicesAreStillReported) {
  const std::string bad = ::testing::TempDir() + "/not-a-catalog.sqlite";
  std::ofstream(bad) << "not SQLite";
  PeripheralsConfig config = FixtureConfig("thin-client");
  config.catalog = bad;
  PeripheralsProbe probe(config, /*once=*/true);
  const v1::Report r = CollectOnce(probe);
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "peripherals.catalog");
  EXPECT_NE(r.unavailable(0).reason().find(bad), std::string::npos) << r.unavailable(0).reason();
  EXPECT_EQ(r.peripherals_size(), 10);
  for (const auto& p : r.peripherals()) EXPECT_FALSE(p.has_catalog()) << p.name();

  // No catalog installed: no verdicts and nothing to complain about.
  config.catalog = ::testing::TempDir() + "/no-such-catalog.sqlite";
  PeripheralsProbe absent(config, /*once=*/true);
  const v1::Report r2 = CollectOnce(absent);
  EXPECT_EQ(r2.unavailable_size(), 0);
  for (const auto& p : r2.peripherals()) EXPECT_FALSE(p.has_catalog()) << p.name();
  std::filesystem::remove(bad);
}

TEST(PeripheralsProbe, VdiGuestDevicesHangUnderTheVirtualHostController) {
  PeripheralsProbe probe(FixtureConfig("vdi-guest"), true);
  auto m = ByName(CollectOnce(probe));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_TRUE(m.at("Hewlett-Packard HP LaserJet 1020").redirected());
  EXPECT_EQ(m.at("Hewlett-Packard HP LaserJet 1020").state(), v1::DEVICE_STATE_WORKING);
  // Arrived in the guest, but nothing in the guest drives it.
  const auto& scanner = m.at("Brother ADS-2000");
  EXPECT_TRUE(scanner.redirected());
  EXPECT_EQ(scanner.state(), v1::DEVICE_STATE_NO_DRIVER);
}

TEST(PeripheralsProbe, GarbledSysfsEntriesAreNamedAndTheRestStillReported) {
  PeripheralsProbe probe(FixtureConfig("garbled"), true);
  const v1::Report r = CollectOnce(probe);
  std::vector<std::string> problems;
  for (const auto& u : r.unavailable()) {
    EXPECT_EQ(u.measurement(), "peripherals.usb");
    problems.push_back(u.reason());
  }
  EXPECT_EQ(problems, (std::vector<std::string>{"1-1: idVendor/idProduct missing or not hex",
                                                "1-2: idVendor/idProduct missing or not hex"}));
  auto m = ByName(r);
  ASSERT_EQ(m.size(), 1u);
  const auto& mouse = m.at("Logitech USB Optical Mouse");
  EXPECT_EQ(mouse.device_class(), 0u);  // "not-hex" is not a class
  EXPECT_EQ(mouse.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(mouse.interface_classes_size(), 2);  // 03 and the unreadable one as 00
}

TEST(PeripheralsProbe, NoSysfsIsUnavailableWithThePath) {
  PeripheralsConfig c = FixtureConfig("thin-client");
  c.sysfs = kData + "/does-not-exist";
  PeripheralsProbe probe(c, true);
  const v1::Report r = CollectOnce(probe);
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).reason(), c.sysfs + "/bus/usb/devices: No such file or directory");
  EXPECT_EQ(r.peripherals_size(), 0);
}

TEST(PeripheralsProbe, FailuresSettleBeforeTheyCountAndInventoryIsSentOnChangeOnly) {
  PeripheralsConfig c = FixtureConfig("thin-client");
  c.settle_s = 30;
  c.poll_every_s = 60;
  c.inventory_every_s = 3600;
  PeripheralsProbe probe(c, /*once=*/false);
  const std::int64_t t0 = 1'700'000'000'000;
  CycleContext ctx{t0, 60, true};
  v1::Report first;
  probe.Collect(ctx, first);
  auto m = ByName(first);
  // Blocked is a decision, not a transient: reported at once. Failures wait.
  EXPECT_EQ(m.count("Kingston DataTraveler 3.0"), 1u);
  EXPECT_EQ(m.count(""), 0u);
  EXPECT_EQ(m.count("Broadcom Corp 5880"), 0u);
  EXPECT_EQ(m.size(), 8u);

  ctx = {t0 + 31'000, 60, false};
  v1::Report second;
  probe.Collect(ctx, second);  // the pending failures force a rescan
  m = ByName(second);
  ASSERT_EQ(m.size(), 10u);
  EXPECT_EQ(m.at("").state(), v1::DEVICE_STATE_NO_DRIVER);
  EXPECT_EQ(m.at("Broadcom Corp 5880").state(), v1::DEVICE_STATE_REDIRECT_FAILED);

  ctx = {t0 + 91'000, 60, false};
  v1::Report unchanged;
  probe.Collect(ctx, unchanged);
  EXPECT_EQ(unchanged.peripherals_size(), 0);  // nothing changed: nothing sent

  ctx = {t0 + 31'000 + 3'600'000, 60, false};
  v1::Report hourly;
  probe.Collect(ctx, hourly);
  EXPECT_EQ(hourly.peripherals_size(), 10);
}

std::string KernelMessage(const std::string& action, const std::string& devpath,
                          const std::vector<std::string>& env) {
  std::string m = action + "@" + devpath;
  m.push_back('\0');
  auto add = [&m](const std::string& kv) {
    m += kv;
    m.push_back('\0');
  };
  add("ACTION=" + action);
  add("DEVPATH=" + devpath);
  for (const auto& kv : env) add(kv);
  return m;
}

TEST(Uevent, ParsesKernelMessagesAndRejectsOthers) {
  const std::string add =
      KernelMessage("add", "/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.1",
                    {"SUBSYSTEM=usb", "DEVTYPE=usb_device", "PRODUCT=781/5567/100", "TYPE=0/0/0",
                     "BUSNUM=001", "DEVNUM=007", "SEQNUM=4711"});
  auto e = ParseUevent(add.data(), add.size());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->action, "add");
  EXPECT_EQ(e->subsystem, "usb");
  EXPECT_EQ(e->devtype, "usb_device");
  EXPECT_EQ(e->vendor_id, 0x0781);
  EXPECT_EQ(e->product_id, 0x5567);
  EXPECT_EQ(e->busnum, 1u);
  EXPECT_EQ(e->devnum, 7u);
  EXPECT_EQ(e->seqnum, 4711u);

  const std::string bind = KernelMessage(
      "bind", "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0",
      {"SUBSYSTEM=usb", "DEVTYPE=usb_interface", "DRIVER=usblp", "PRODUCT=3f0/2b17/100"});
  e = ParseUevent(bind.data(), bind.size());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->driver, "usblp");

  // udevd's re-broadcast carries a "libudev" header: not ours to read.
  std::string udev("libudev\0\xfe\xed\xca\xfe", 12);
  EXPECT_FALSE(ParseUevent(udev.data(), udev.size()).has_value());
  // The header and the keys disagree.
  const std::string liar = KernelMessage("add", "/devices/a", {"SUBSYSTEM=usb"});
  std::string forged = liar;
  forged[4] = 'b';
  EXPECT_FALSE(ParseUevent(forged.data(), forged.size()).has_value());
  EXPECT_FALSE(ParseUevent("", 0).has_value());
  EXPECT_FALSE(ParseUevent("@", 1).has_value());
  EXPECT_FALSE(UeventSocket::Acceptable(4242, /*kernel_only=*/true));
  EXPECT_TRUE(UeventSocket::Acceptable(0, true));

  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) {
    std::string junk = add;
    for (int k = 0; k < 4; ++k) junk[rng() % junk.size()] = static_cast<char>(rng());
    junk.resize(rng() % (junk.size() + 1));
    (void)ParseUevent(junk.data(), junk.size());  // must not crash or over-read
  }
}

Uevent UsbEvent(const std::string& action, const std::string& devpath, const std::string& type,
                const std::string& driver = "") {
  Uevent e;
  e.action = action;
  e.devpath = devpath;
  e.subsystem = "usb";
  e.devtype = type;
  e.driver = driver;
  return e;
}

TEST(PeripheralsProbe, DetachThenAttachWithinTheWindowIsAReconnect) {
  PeripheralsConfig c = FixtureConfig("thin-client");
  c.reconnect_window_s = 10;
  PeripheralsProbe probe(c, false);
  const std::string stick = "/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.1";
  const std::int64_t t = 1'700'000'000'000;
  CycleContext ctx{t, 60, true};
  v1::Report inventory;
  probe.Collect(ctx, inventory);  // learns the devices, as at start-up

  probe.OnUevent(UsbEvent("remove", stick, "usb_device"), t + 1000);
  probe.OnUevent(UsbEvent("add", stick, "usb_device"), t + 3000);
  probe.OnUevent(UsbEvent("bind", stick + "/1-4.1:1.0", "usb_interface", "usb-storage"), t + 3100);
  probe.OnUevent(UsbEvent("remove", stick, "usb_device"), t + 20'000);
  probe.OnUevent(UsbEvent("add", stick, "usb_device"), t + 40'000);  // too late: a new attach
  v1::Report r;
  ctx = {t + 60'000, 60, false};
  probe.Collect(ctx, r);
  ASSERT_EQ(r.peripheral_events_size(), 5);
  const auto& ev = r.peripheral_events();
  EXPECT_EQ(ev[0].kind(), v1::PERIPHERAL_EVENT_KIND_DETACH);
  EXPECT_EQ(ev[1].kind(), v1::PERIPHERAL_EVENT_KIND_RECONNECT);
  EXPECT_EQ(ev[1].at_unix_ms(), t + 3000);
  EXPECT_EQ(ev[2].kind(), v1::PERIPHERAL_EVENT_KIND_BIND);
  EXPECT_EQ(ev[2].driver(), "usb-storage");
  EXPECT_EQ(ev[3].kind(), v1::PERIPHERAL_EVENT_KIND_DETACH);
  EXPECT_EQ(ev[4].kind(), v1::PERIPHERAL_EVENT_KIND_ATTACH);
  for (const auto& e : ev) {
    EXPECT_EQ(e.vendor_id(), 0x0781u);
    EXPECT_EQ(e.product_id(), 0x5567u);
    // The same serial hash as the inventory's, so the collector joins them.
    EXPECT_EQ(e.serial_hash(), ByName(inventory).at("SanDisk Cruzer Blade").serial_hash());
  }
  // Other subsystems are not peripherals' business.
  Uevent net = UsbEvent("change", "/devices/virtual/net/lo", "");
  net.subsystem = "net";
  probe.OnUevent(net, t + 61'000);
  v1::Report none;
  ctx = {t + 62'000, 60, false};
  probe.Collect(ctx, none);
  EXPECT_EQ(none.peripheral_events_size(), 0);
}

// Waits on `io` until `done` holds or 10 s pass (a deadline, not a sleep).
template <typename Pred>
bool RunUntil(asio::io_context& io, Pred done) {
  asio::steady_timer deadline(io, std::chrono::seconds(10));
  bool expired = false, ok = false;
  deadline.async_wait([&](std::error_code ec) { expired = !ec; });
  while (!(ok = done()) && !expired) io.run_one();
  return ok;
}

TEST(UeventSocket, ReceivesARealKernelUevent) {
  auto sock = UeventSocket::Open(/*kernel_only=*/true);
  ASSERT_TRUE(sock.ok()) << sock.status().message();
  // Writing to a device's `uevent` file makes the kernel itself announce it.
  std::ofstream("/sys/class/net/lo/uevent") << "change";
  bool seen = false;
  for (int i = 0; i < 1000 && !seen; ++i) {
    pollfd p{sock->fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    int err = 0;
    auto e = sock->Receive(&err);
    seen = e && e->devpath == "/devices/virtual/net/lo" && e->action == "change";
  }
  if (!seen && ::geteuid() != 0) GTEST_SKIP() << "writing /sys/class/net/lo/uevent needs root";
  EXPECT_TRUE(seen);
}

TEST(PeripheralsProbe, HotPlugArrivesThroughTheNetlinkSocket) {
  asio::io_context io;  // outlives the probe, whose socket it serves
  PeripheralsProbe probe(FixtureConfig("thin-client"), false);
  probe.set_uevent_kernel_only(false);  // this test plays the kernel
  probe.Start(io.get_executor());
  CycleContext ctx{1'700'000'000'000, 60, true};
  v1::Report inventory;
  probe.Collect(ctx, inventory);
  for (const auto& u : inventory.unavailable()) FAIL() << u.measurement() << ": " << u.reason();

  const int tx = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  ASSERT_GE(tx, 0);
  sockaddr_nl self{};
  self.nl_family = AF_NETLINK;
  ASSERT_EQ(::bind(tx, reinterpret_cast<sockaddr*>(&self), sizeof self), 0);
  sockaddr_nl group{};
  group.nl_family = AF_NETLINK;
  group.nl_groups = 1;
  const std::string printer = "/devices/pci0000:00/0000:00:14.0/usb1/1-1";
  for (const char* action : {"remove", "add"}) {
    const std::string m = KernelMessage(
        action, printer, {"SUBSYSTEM=usb", "DEVTYPE=usb_device", "PRODUCT=3f0/2b17/100"});
    if (::sendto(tx, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&group), sizeof group) <
        0) {
      ::close(tx);
      GTEST_SKIP() << "sending to the uevent group needs CAP_NET_ADMIN: " << std::strerror(errno);
    }
  }
  ::close(tx);
  v1::Report r;
  ASSERT_TRUE(RunUntil(io, [&] {
    r.Clear();
    ctx = {ctx.now_unix_ms + 1000, 60, false};
    probe.Collect(ctx, r);
    return r.peripheral_events_size() > 0;
  }));
  // Both datagrams were waiting, so one read drained them.
  ASSERT_EQ(r.peripheral_events_size(), 2);
  EXPECT_EQ(r.peripheral_events(0).kind(), v1::PERIPHERAL_EVENT_KIND_DETACH);
  EXPECT_EQ(r.peripheral_events(1).kind(), v1::PERIPHERAL_EVENT_KIND_RECONNECT);
  EXPECT_EQ(r.peripheral_events(1).vendor_id(), 0x03f0u);
}

TEST(ClassifyUsb, AFormerRedirectLeftWithoutADriverFailed) {
  UsbDevice d;
  d.port = "1-6";
  d.interfaces.push_back(UsbInterface{"1-6:1.0", 0x03, 0, 0, "", true});
  UsbContext c;
  c.previously_redirected = true;
  EXPECT_EQ(ClassifyUsb(d, c).state, v1::DEVICE_STATE_REDIRECT_FAILED);
  c.previously_redirected = false;
  EXPECT_EQ(ClassifyUsb(d, c).state, v1::DEVICE_STATE_NO_DRIVER);
  d.interfaces[0].authorized = false;
  EXPECT_EQ(ClassifyUsb(d, c).state, v1::DEVICE_STATE_BLOCKED_BY_POLICY);
}

TEST(CupsQueue, MatchesUsbDevicesBySerialOrModel) {
  UsbDevice d;
  d.product = "HP LaserJet 1020";
  d.serial = "FN0ABCD123";
  CupsPrinter q;
  q.device_uri = "usb://HP/LaserJet%201020?serial=FN0ABCD123";
  EXPECT_TRUE(QueueMatches(q, d));
  q.device_uri = "usb://HP/LaserJet%201020?serial=OTHER";
  EXPECT_FALSE(QueueMatches(q, d));
  d.serial.clear();
  q.device_uri = "usb://HP/LaserJet%201020";
  EXPECT_TRUE(QueueMatches(q, d));
  q.device_uri = "ipp://printer.example/ipp/print";
  EXPECT_FALSE(QueueMatches(q, d));

  CupsPrinter stopped;
  stopped.name = "office";
  stopped.state = 5;
  stopped.reasons = {"paused"};
  EXPECT_EQ(ClassifyQueue(stopped).state, v1::DEVICE_STATE_ERROR);
  EXPECT_EQ(ClassifyQueue(stopped).reason, "queue office stopped: paused");
  CupsPrinter toner = stopped;
  toner.state = 3;
  toner.reasons = {"toner-low-warning"};
  EXPECT_EQ(ClassifyQueue(toner).state, v1::DEVICE_STATE_WORKING);
  toner.reasons = {"media-jam-error"};
  EXPECT_EQ(ClassifyQueue(toner).reason, "queue office: media-jam-error");
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

// A private cupsd (cups-daemon) on a socket in a temporary directory, as
// root-run CI allows: `User lp`, `FileDevice Yes`. Debian's `usb` backend
// comes with the full `cups` package (ghostscript and friends), so the
// private ServerBin carries the real backends plus an executable named
// `usb` that only lets cupsd accept usb:// queues; nothing is printed.
class PrivateCupsd {
 public:
  PrivateCupsd() {
    char tmpl[] = "/tmp/deskpulse-cups-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    socket_ = dir_ + "/cups.sock";
    for (const char* d : {"spool", "cache", "state", "log", "serverbin", "serverbin/backend"}) {
      ::mkdir((dir_ + "/" + d).c_str(), 0755);
    }
    for (const char* d : {"daemon", "notifier", "filter", "cgi-bin", "monitor"}) {
      (void)::symlink((std::string("/usr/lib/cups/") + d).c_str(),
                      (dir_ + "/serverbin/" + d).c_str());
    }
    for (const char* b : {"ipp", "ipps", "http", "https"}) {
      (void)::symlink((std::string("/usr/lib/cups/backend/") + b).c_str(),
                      (dir_ + "/serverbin/backend/" + b).c_str());
    }
    std::ofstream(dir_ + "/serverbin/backend/usb") << "#!/bin/sh\nexit 0\n";
    ::chmod((dir_ + "/serverbin/backend/usb").c_str(), 0755);
    std::ofstream(dir_ + "/cupsd.conf")
        << "Listen " << socket_ << "\nLogLevel warn\nWebInterface No\nBrowsing No\n"
        << "<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
        << "<Location /admin>\n  Order allow,deny\n  Allow all\n</Location>\n"
        << "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n";
    std::ofstream(dir_ + "/cups-files.conf")
        << "User lp\nGroup lp\nSystemGroup root\nFileDevice Yes\n"
        << "ServerRoot " << dir_ << "\nServerBin " << dir_ << "/serverbin\n"
        << "RequestRoot " << dir_ << "/spool\nCacheDir " << dir_ << "/cache\n"
        << "StateDir " << dir_ << "/state\nTempDir " << dir_ << "/spool\n"
        << "ErrorLog " << dir_ << "/log/error_log\nAccessLog " << dir_ << "/log/access_log\n"
        << "PageLog " << dir_ << "/log/page_log\n";
    std::system(("chown -R lp " + dir_).c_str());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("cupsd", "cupsd", "-f", "-c", (dir_ + "/cupsd.conf").c_str(), "-s",
               (dir_ + "/cups-files.conf").c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Ready when it answers an IPP request (bounded; cupsd starts in ~100 ms).
    for (int i = 0; i < 500 && !CupsGetPrinters(socket_, 200).ok(); ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      ::usleep(20'000);
    }
    ::setenv("CUPS_SERVER", socket_.c_str(), 1);
  }
  ~PrivateCupsd() {
    Stop();
    std::system(("rm -rf " + dir_).c_str());
  }
  bool running() const { return pid_ > 0; }
  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  const std::string& socket() const { return socket_; }
  std::string Log() const {
    std::ifstream in(dir_ + "/log/error_log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_, socket_;
  pid_t pid_ = -1;
};

int Shell(const std::string& cmd) { return std::system((cmd + " 2>&1").c_str()); }

TEST(PeripheralsProbe, PrintersFromAPrivateCupsd) {
  PrivateCupsd cupsd;
  ASSERT_TRUE(cupsd.running()) << "cupsd (cups-daemon) did not start:\n" << cupsd.Log();
  ASSERT_EQ(Shell("lpadmin -p office -v file:///dev/null -E"), 0);
  ASSERT_EQ(Shell("lpadmin -p lobby -v 'usb://HP/LaserJet%201020?serial=FN0ABCD123' -E"), 0);
  ASSERT_EQ(Shell("cupsdisable -r 'paper jam' lobby"), 0);

  PeripheralsConfig c = FixtureConfig("thin-client");
  c.cups = true;
  c.cups_server = cupsd.socket();
  {
    PeripheralsProbe probe(c, true);
    const v1::Report r = CollectOnce(probe);
    for (const auto& u : r.unavailable()) ADD_FAILURE() << u.measurement() << ": " << u.reason();
    std::map<std::string, v1::PeripheralState> queues;
    for (const auto& p : r.peripherals()) {
      if (p.bus() == v1::PERIPHERAL_BUS_CUPS) queues[p.reason().empty() ? "office" : "lobby"] = p;
    }
    ASSERT_EQ(queues.size(), 2u);
    EXPECT_EQ(queues["office"].state(), v1::DEVICE_STATE_WORKING);
    EXPECT_EQ(Drivers(queues["office"]), "cups:file");
    EXPECT_EQ(queues["lobby"].state(), v1::DEVICE_STATE_ERROR);
    EXPECT_EQ(queues["lobby"].reason(), "queue lobby stopped: paused");
    EXPECT_EQ(queues["lobby"].vendor_id(), 0x03f0u);  // joined to the USB printer by serial
    // The USB printer itself works only as far as its queue does.
    const auto usb = ByName(r).at("Hewlett-Packard HP LaserJet 1020");
    EXPECT_EQ(usb.state(), v1::DEVICE_STATE_ERROR);
    EXPECT_EQ(usb.reason(), "queue lobby stopped: paused");
  }
  ASSERT_EQ(Shell("cupsenable lobby"), 0);
  {
    PeripheralsProbe probe(c, true);
    const auto m = ByName(CollectOnce(probe));
    EXPECT_EQ(m.at("Hewlett-Packard HP LaserJet 1020").state(), v1::DEVICE_STATE_WORKING);
  }
  cupsd.Stop();
  {
    PeripheralsProbe probe(c, true);
    const v1::Report r = CollectOnce(probe);
    ASSERT_EQ(r.unavailable_size(), 1);
    EXPECT_EQ(r.unavailable(0).measurement(), "peripherals.printers");
    EXPECT_EQ(r.unavailable(0).reason().rfind("no cupsd at " + cupsd.socket(), 0), 0u)
        << r.unavailable(0).reason();
    EXPECT_EQ(ByName(r).size(), 10u);  // USB goes on without CUPS
  }
}

TEST(CupsIpp, AHungCupsdIsBoundedByTheTimeout) {
  char tmpl[] = "/tmp/deskpulse-hung-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string path = dir + "/cups.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 4), 0);  // the kernel accepts; nobody answers
  auto r = CupsGetPrinters(path, 300);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "cupsd at " + path + " did not answer within 300 ms");
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(CupsIpp, DecodingUntrustedBytesNeverCrashes) {
  // A well-formed answer with one printer, then every truncation and random damage.
  std::string ok("\x02\x00\x00\x00\x00\x00\x00\x01", 8);
  ok += '\x01';
  ok += '\x04';
  auto attr = [&ok](char tag, const std::string& name, const std::string& value) {
    ok += tag;
    ok += char(name.size() >> 8);
    ok += char(name.size() & 0xFF);
    ok += name;
    ok += char(value.size() >> 8);
    ok += char(value.size() & 0xFF);
    ok += value;
  };
  attr('\x42', "printer-name", "office");
  attr('\x23', "printer-state", std::string("\x00\x00\x00\x05", 4));
  attr('\x44', "printer-state-reasons", "paused");
  attr('\x44', "", "media-empty-error");
  ok += '\x03';
  auto decoded = DecodeGetPrinters(ok);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ((*decoded)[0].state, 5);
  EXPECT_EQ((*decoded)[0].reasons, (std::vector<std::string>{"paused", "media-empty-error"}));
  for (std::size_t n = 0; n < ok.size(); ++n) {
    EXPECT_FALSE(DecodeGetPrinters(ok.substr(0, n)).ok()) << n;
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 5000; ++i) {
    std::string junk = ok;
    for (int k = 0; k < 3; ++k) junk[rng() % junk.size()] = static_cast<char>(rng());
    (void)DecodeGetPrinters(junk);
  }
  auto http =
      HttpBody("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  ASSERT_TRUE(http.ok());
  EXPECT_EQ(*http, "hello");
  EXPECT_EQ(HttpBody("HTTP/1.1 403 Forbidden\r\n\r\n").status().message(),
            "cupsd answered HTTP/1.1 403 Forbidden");
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

// A private pcscd with the virtual smart-card readers of vsmartcard-vpcd.
// pcscd's socket path is fixed (/run/pcscd/pcscd.comm), so it runs in its own
// mount namespace with a temporary directory bound there; the client library
// finds the socket through PCSCLITE_CSOCK_NAME.
class PrivatePcscd {
 public:
  PrivatePcscd() {
    char tmpl[] = "/tmp/deskpulse-pcsc-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::mkdir((dir_ + "/conf").c_str(), 0755);
    ::mkdir("/run/pcscd", 0755);
    // vpcd listens on the TCP port its configuration names (35963 by
    // default, inside the ephemeral range, where another test's socket may
    // hold it): this one gets a port the kernel has just found free.
    std::ifstream in("/etc/reader.conf.d/vpcd");
    std::string conf((std::istreambuf_iterator<char>(in)), {});
    const std::string port = FreePortHex();
    for (std::size_t at; (at = conf.find("0x8C7B")) != std::string::npos;) {
      conf.replace(at, 6, port);
    }
    std::ofstream(dir_ + "/conf/vpcd") << conf;
    ::setenv("PCSCLITE_CSOCK_NAME", (dir_ + "/pcscd.comm").c_str(), 1);
  }
  void Start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string script = "mount --bind " + dir_ + " /run/pcscd && exec pcscd -f -c " +
                                 dir_ + "/conf >" + dir_ + "/log 2>&1";
      ::execlp("unshare", "unshare", "--mount", "--propagation", "private", "sh", "-c",
               script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~PrivatePcscd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::system(("rm -rf " + dir_).c_str());
  }
  bool Exited() { return pid_ <= 0 || ::waitpid(pid_, nullptr, WNOHANG) == pid_; }
  /// A TCP port free a moment ago with the one after it, as vpcd's
  /// configuration writes it: vpcd listens on both (a reader each). Taken
  /// below the ephemeral range, which the other tests' connections and
  /// listeners (port 0) use up under load, so neither port is taken by the
  /// time pcscd binds.
  static std::string FreePortHex() {
    std::mt19937 rng(static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(::time(nullptr)));
    std::uniform_int_distribution<int> pick(20'000, 32'000);
    for (int attempt = 0; attempt < 200; ++attempt) {
      const int port = pick(rng);
      if (!Bindable(port) || !Bindable(port + 1)) continue;
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%X", port);
      return hex;
    }
    return "0x8C7B";  // vpcd's own default
  }
  static bool Bindable(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

TEST(PeripheralsProbe, SmartCardReadersFromAPrivatePcscd) {
  PrivatePcscd pcscd;
  PeripheralsConfig c = FixtureConfig("thin-client");
  c.pcsc = true;
  {
    PeripheralsProbe probe(c, true);
    const v1::Report r = CollectOnce(probe);
    ASSERT_EQ(r.unavailable_size(), 1);
    EXPECT_EQ(r.unavailable(0).measurement(), "peripherals.smartcards");
    EXPECT_EQ(r.unavailable(0).reason(),
              "pcscd is not running: Service not available. (0x8010001D)");
  }
  pcscd.Start();
  PcscClient* client = nullptr;
  auto loaded = PcscClient::Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  client = loaded->get();
  // Ready once pcscd lists its readers (bounded; it starts in ~50 ms).
  Result<std::vector<SmartCardReader>> readers = std::vector<SmartCardReader>{};
  for (int i = 0; i < 500; ++i) {
    readers = client->Readers();
    if (readers.ok() && readers->size() == 2) break;
    ASSERT_FALSE(pcscd.Exited()) << "pcscd exited:\n" << pcscd.Log();
    ::usleep(20'000);
  }
  ASSERT_TRUE(readers.ok()) << readers.status().message() << "\npcscd:\n" << pcscd.Log();
  ASSERT_EQ(readers->size(), 2u) << "pcscd:\n" << pcscd.Log();
  EXPECT_EQ((*readers)[0].name, "Virtual PCD 00 00");
  EXPECT_FALSE((*readers)[0].card_present);

  PeripheralsProbe probe(c, true);
  const v1::Report r = CollectOnce(probe);
  EXPECT_EQ(r.unavailable_size(), 0);
  int pcsc = 0;
  for (const auto& p : r.peripherals()) {
    if (p.bus() != v1::PERIPHERAL_BUS_PCSC) continue;
    ++pcsc;
    EXPECT_EQ(p.name().rfind("Virtual PCD 00 0", 0), 0u);
    EXPECT_EQ(p.state(), v1::DEVICE_STATE_WORKING);
    EXPECT_EQ(Drivers(p), "pcscd");
  }
  EXPECT_EQ(pcsc, 2);
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

std::string HexOf(const std::array<std::uint8_t, 32>& d) {
  std::string s;
  char b[3];
  for (auto v : d) {
    std::snprintf(b, sizeof b, "%02x", v);
    s += b;
  }
  return s;
}

TEST(Sha256, FipsVectorsAndAgreementWithOpenSsl) {
  EXPECT_EQ(HexOf(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexOf(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexOf(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Every length across the padding boundaries, against OpenSSL.
  std::string input;
  for (int n = 0; n < 300; ++n) {
    std::array<std::uint8_t, 32> ref{};
    unsigned len = 0;
    ASSERT_EQ(EVP_Digest(input.data(), input.size(), ref.data(), &len, EVP_sha256(), nullptr), 1);
    ASSERT_EQ(Sha256(input), ref) << "length " << n;
    input.push_back(static_cast<char>('a' + n % 26));
  }
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

TEST(PeripheralsProbe, SysfsIsReadAgainOnHotPlugEventsNotEveryPoll) {
  // A private copy of the thin client's tree that the test can change.
  char tmpl[] = "/tmp/deskpulse-usb-XXXXXX";
  const std::string root = ::mkdtemp(tmpl);
  std::filesystem::copy(
      kData + "/thin-client", root,
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  PeripheralsConfig c;
  c.sysfs = root + "/sys";
  c.proc = root + "/proc";
  c.udev_data = root + "/udev";
  c.cups = false;
  c.pcsc = false;
  c.poll_every_s = 60;
  c.settle_s = 0;       // nothing held back: the first report has the whole inventory
  asio::io_context io;  // outlives the probe, whose socket it serves
  PeripheralsProbe probe(c, false);
  probe.Start(io.get_executor());  // the uevent socket is up: sysfs follows events
  const std::int64_t t0 = 1'700'000'000'000;
  CycleContext ctx{t0, 60, true};
  v1::Report first;
  probe.Collect(ctx, first);
  ASSERT_EQ(ByName(first).at("SanDisk Cruzer Blade").state(), v1::DEVICE_STATE_WORKING);

  // USBGuard blocks the stick: the kernel announces it with a uevent.
  const std::string stick = "/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.1";
  std::ofstream(root + "/sys" + stick + "/authorized") << "0\n";
  ctx = {t0 + 120'000, 60, false};  // a poll, but no event yet: sysfs is not walked again
  v1::Report before;
  probe.Collect(ctx, before);
  EXPECT_EQ(before.peripherals_size(), 0);  // nothing changed as far as the probe knows

  Uevent change;
  change.action = "change";
  change.devpath = stick;
  change.subsystem = "usb";
  change.devtype = "usb_device";
  probe.OnUevent(change, t0 + 121'000);
  ctx = {t0 + 180'000, 60, false};
  v1::Report after;
  probe.Collect(ctx, after);
  EXPECT_EQ(ByName(after).at("SanDisk Cruzer Blade").state(), v1::DEVICE_STATE_BLOCKED_BY_POLICY);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace deskpulse::agent
