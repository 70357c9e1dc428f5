#include "agent/probes/boot/boot_probe.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/fakes/temp_dir.h"

namespace deskpulse::agent {
namespace {

const std::string kData = std::string(DESKPULSE_TEST_DATA) + "/boot";

TEST(BootPhases, ComputedAsSystemdAnalyzeDoes) {
  // The figures systemd-analyze printed against the same properties on dbusmock.
  ManagerTimestamps t{.firmware_us = 4'200'000, .loader_us = 1'300'000, .initrd_us = 1'500'000,
                      .userspace_us = 3'800'000, .finish_us = 12'700'000};
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
