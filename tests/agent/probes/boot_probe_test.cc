#include "agent/probes/boot/boot_probe.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "tests/fakes/temp_dir.h"

namespace deskpulse::agent {
namespace {

const std::string kData = std::string(DESKPULSE_TEST_DATA) + "/boot";

TEST(BootPhases, ComputedAsSystemdAnalyzeDoes) {
  // The figures systemd-analyze printed against the same properties on dbusmock.
  ManagerTimestamps t{.firmware_us = 4'200'000,
                      .loader_us = 1'300'000,
                      .initrd_us = 1'500'000,
                      .userspace_us = 3'800'000,
                      .finish_us = 12'700'000};
  v1::BootReport b;
  ComputePhases(t, &b);
  EXPECT_EQ(b.firmware_ms(), 2900u);
  EXPECT_EQ(b.loader_ms(), 1300u);
  EXPECT_EQ(b.kernel_ms(), 1500u);
  EXPECT_EQ(b.initrd_ms(), 2300u);
  EXPECT_EQ(b.userspace_ms(), 8900u);
}

TEST(BootPhases, UnknownPhasesAreAbsentNotZero) {
  // Legacy BIOS / GRUB / most VMs: no firmware or loader figures, no initrd.
  ManagerTimestamps t{.userspace_us = 1'100'000, .finish_us = 9'000'000};
  v1::BootReport b;
  ComputePhases(t, &b);
  EXPECT_FALSE(b.has_firmware_ms());
  EXPECT_FALSE(b.has_loader_ms());
  EXPECT_FALSE(b.has_initrd_ms());
  EXPECT_EQ(b.kernel_ms(), 1100u);
  EXPECT_EQ(b.userspace_ms(), 7900u);
}

TEST(BootKmsg, FindsTheInitHandOff) {
  std::ifstream in(kData + "/kmsg-debian/kmsg");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(FindInitHandOffUs(text), 1'902'377u);
  EXPECT_EQ(FindInitHandOffUs("6,1,5,-;Run /sbin/init as init process\n"), 5u);
  EXPECT_EQ(FindInitHandOffUs("garbage\n;;;\n6,1;Run x as init process\n"), std::nullopt);
}

TEST(BootFpdt, FirmwareAndLoaderFromAcpi) {
  v1::BootReport b;
  ReadFpdt(kData + "/fpdt-uefi", &b);
  EXPECT_EQ(b.firmware_ms(), 3900u);
  EXPECT_EQ(b.loader_ms(), 1300u);
  v1::BootReport none;
  ReadFpdt(kData + "/does-not-exist", &none);
  EXPECT_FALSE(none.has_firmware_ms());
}

BootConfig NoBus(const std::string& fixture, const std::string& marks) {
  BootConfig c;
  c.system_bus = "unix:path=/nonexistent/deskpulse-test-bus";
  c.kmsg = fixture + "/kmsg";
  c.fpdt_dir = kData + "/fpdt-uefi";
  c.mark_dir = marks;
  return c;
}

TEST(BootProbe, WithoutSystemdUsesKmsgOncePerBootThenTheDesktopMark) {
  testing::TempDir tmp;
  const std::string fixture = kData + "/kmsg-debian";
  const std::string marks = tmp.File("marks");
  BootProbe probe(NoBus(fixture, marks), tmp.File(""), fixture + "/proc");

  v1::Report r1;
  probe.Collect({}, r1);
  ASSERT_TRUE(r1.has_boot());
  EXPECT_EQ(r1.boot().boot_id(), "3f0c2a9e-8d1b-4c55-9a4e-2f6b7c8d9e01");
  EXPECT_EQ(r1.boot().source(), v1::BOOT_SOURCE_KMSG);
  EXPECT_EQ(r1.boot().kernel_ms(), 1902u);
  EXPECT_EQ(r1.boot().firmware_ms(), 3900u);
  EXPECT_FALSE(r1.boot().has_userspace_ms());
  EXPECT_FALSE(r1.boot().has_desktop_ready_ms());
  ASSERT_EQ(r1.unavailable_size(), 1);
  EXPECT_EQ(r1.unavailable(0).measurement(), "boot.systemd");
  EXPECT_NE(r1.unavailable(0).reason().find("no system bus at unix:path=/nonexistent"),
            std::string::npos);

  v1::Report r2;
  probe.Collect({}, r2);
  EXPECT_FALSE(r2.has_boot()) << "one boot report per boot";

  // The session's autostart helper marks the desktop ready 41.5 s after kernel start.
  std::filesystem::create_directories(marks);
  std::ofstream(marks + "/desktop-ready-1000") << "3f0c2a9e-8d1b-4c55-9a4e-2f6b7c8d9e01 41500000\n";
  std::ofstream(marks + "/desktop-ready-1001") << "00000000-old-boot 1000\n";
  v1::Report r3;
  probe.Collect({}, r3);
  ASSERT_TRUE(r3.has_boot());
  EXPECT_EQ(r3.boot().desktop_ready_ms(), 3900u + 1300u + 41500u);  // from power-on

  // A restarted agent remembers what it reported for this boot.
  BootProbe again(NoBus(fixture, marks), tmp.File(""), fixture + "/proc");
  v1::Report r4;
  again.Collect({}, r4);
  EXPECT_FALSE(r4.has_boot());
}

TEST(BootProbe, NoSourceIsUnavailableWithBothReasons) {
  testing::TempDir tmp;
  const std::string fixture = kData + "/kmsg-rotated";
  BootProbe probe(NoBus(fixture, tmp.File("marks")), "", fixture + "/proc");
  v1::Report r;
  probe.Collect({}, r);
  ASSERT_TRUE(r.has_boot());
  EXPECT_FALSE(r.boot().has_kernel_ms());
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "boot.phases");
  EXPECT_NE(r.unavailable(0).reason().find("no \"Run ... as init process\" record"),
            std::string::npos)
      << r.unavailable(0).reason();
}

TEST(BootProbe, MissingBootIdIsUnavailable) {
  testing::TempDir tmp;
  BootProbe probe(NoBus(kData + "/kmsg-debian", tmp.File("marks")), "", tmp.File("no-proc"));
  v1::Report r;
  probe.Collect({}, r);
  EXPECT_FALSE(r.has_boot());
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "boot");
}

TEST(DesktopMark, WritesOncePerBoot) {
  testing::TempDir tmp;
  const std::string proc = kData + "/kmsg-debian/proc";
  std::filesystem::create_directories(tmp.File("marks"));
  ASSERT_TRUE(WriteDesktopMark(tmp.File("marks"), proc).ok());
  const auto first = ReadDesktopMark(tmp.File("marks"), "3f0c2a9e-8d1b-4c55-9a4e-2f6b7c8d9e01");
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(WriteDesktopMark(tmp.File("marks"), proc).ok());
  EXPECT_EQ(ReadDesktopMark(tmp.File("marks"), "3f0c2a9e-8d1b-4c55-9a4e-2f6b7c8d9e01"), first);
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

// systemd's format_timespan ("9.561s", "332ms", "1min 5.947s") in ms.
double SpanMs(const std::string& text) {
  static const std::pair<const char*, double> kUnits[] = {
      {"min", 60'000}, {"ms", 1}, {"us", 0.001}, {"h", 3'600'000}, {"s", 1'000}};
  double total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    std::size_t used = 0;
    const double v = std::stod(text.substr(i), &used);
    i += used;
    for (const auto& [unit, scale] : kUnits) {
      if (text.compare(i, std::strlen(unit), unit) == 0) {
        total += v * scale;
        i += std::strlen(unit);
        break;
      }
    }
  }
  return total;
}

// A real boot captured by bench/boot_truth/rig.sh: the manager's properties
// as busctl printed them inside the boot, and systemd-analyze's summary from
// the same boot. The agent's computation must give systemd-analyze's figures.
void CheckCapturedBoot(const std::string& name) {
  const std::string dir = kData + "/" + name;
  std::ifstream props(dir + "/manager.txt");
  ASSERT_TRUE(props) << dir;
  std::map<std::string, std::uint64_t> p;
  std::string key, type, value;
  while (props >> key >> type) {
    std::getline(props, value);
    if (type == "t") p[key] = std::stoull(value);
  }
  ManagerTimestamps t{.firmware_us = p["FirmwareTimestampMonotonic"],
                      .loader_us = p["LoaderTimestampMonotonic"],
                      .initrd_us = p["InitRDTimestampMonotonic"],
                      .userspace_us = p["UserspaceTimestampMonotonic"],
                      .finish_us = p["FinishTimestampMonotonic"],
                      .in_container = p["KernelTimestamp"] == 0};
  v1::BootReport b;
  ComputePhases(t, &b);

  std::ifstream analyze(dir + "/analyze.txt");
  std::string line;
  ASSERT_TRUE(std::getline(analyze, line)) << dir;
  const std::string prefix = "Startup finished in ";
  ASSERT_EQ(line.rfind(prefix, 0), 0u) << line;
  line = line.substr(prefix.size());
  const std::size_t eq = line.find(" = ");
  std::string phases = line.substr(0, eq);
  std::map<std::string, double> theirs;
  for (std::size_t at = 0; at < phases.size();) {
    const std::size_t open = phases.find(" (", at), close = phases.find(')', open);
    if (open == std::string::npos || close == std::string::npos) break;
    theirs[phases.substr(open + 2, close - open - 2)] = SpanMs(phases.substr(at, open - at));
    at = close + 1;
  }
  const double total = eq == std::string::npos ? theirs.begin()->second : SpanMs(line.substr(eq));
  auto has = [&](const char* phase) { return theirs.count(phase) != 0; };
  EXPECT_EQ(b.has_kernel_ms(), has("kernel")) << name;
  EXPECT_EQ(b.has_initrd_ms(), has("initrd")) << name;
  EXPECT_EQ(b.has_firmware_ms(), has("firmware")) << name;
  EXPECT_EQ(b.has_loader_ms(), has("loader")) << name;
  ASSERT_TRUE(has("userspace")) << name;
  // To the millisecond systemd-analyze prints.
  EXPECT_EQ(double(b.userspace_ms()), theirs["userspace"]) << name;
  EXPECT_EQ(double(b.total_ms()), total) << name;
  if (has("kernel")) {
    EXPECT_EQ(double(b.kernel_ms()), theirs["kernel"]) << name;
  }
  if (has("initrd")) {
    EXPECT_EQ(double(b.initrd_ms()), theirs["initrd"]) << name;
  }
}

TEST(BootCaptured, ContainerBootUnderSystemdNspawn) { CheckCapturedBoot("systemd-nspawn"); }
TEST(BootCaptured, VmBootWithTheInstalledInitrd) { CheckCapturedBoot("systemd-qemu"); }
TEST(BootCaptured, VmBootWithSystemdInTheInitrd) { CheckCapturedBoot("systemd-qemu-dracut"); }

TEST(BootPhases, AContainerHasNoKernelPhaseOfItsOwn) {
  // Under systemd-nspawn the manager's Userspace timestamp is the container's
  // start on the host's monotonic clock: not a kernel phase of 70 minutes.
  ManagerTimestamps t{
      .userspace_us = 4'231'660'930, .finish_us = 4'231'993'433, .in_container = true};
  v1::BootReport b;
  ComputePhases(t, &b);
  EXPECT_FALSE(b.has_kernel_ms());
  EXPECT_EQ(b.userspace_ms(), 332u);  // 332.503 ms, as systemd-analyze prints it
  EXPECT_EQ(b.total_ms(), 332u);
}

}  // namespace
}  // namespace deskpulse::agent
