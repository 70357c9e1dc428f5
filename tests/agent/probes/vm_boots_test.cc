#include "agent/probes/boot/vm_boots.h"

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <unistd.h>

#include <chrono>

#include "agent/probes/boot/boot_probe.h"

namespace deskpulse::agent {
namespace {

namespace v1 = deskpulse::v1;

TEST(VmBootTracker, PowerOnToGuestReady) {
  VmBootTracker t(600'000);
  t.PoweredOn("uuid-a", "finance-vdi-017", 1'000'000);
  t.PoweredOn("uuid-b", "finance-vdi-018", 1'000'500);
  t.GuestReady("uuid-a", 1'034'250);
  t.GuestReady("uuid-c", 1'040'000);  // an agent reconnecting in a running guest: no boot
  t.Stopped("uuid-b");                // powered off before its guest came up
  auto done = t.Take(1'050'000);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].vm_name(), "finance-vdi-017");
  EXPECT_EQ(done[0].vm_uuid(), "uuid-a");
  EXPECT_EQ(done[0].powered_on_at_unix_ms(), 1'000'000);
  EXPECT_EQ(done[0].power_on_to_ready_ms(), 34'250u);
  EXPECT_TRUE(t.Take(1'060'000).empty());
}

TEST(VmBootTracker, NoGuestAgentMeansPowerOnOnly) {
  VmBootTracker t(600'000);
  t.PoweredOn("uuid-a", "kiosk-3", 1'000'000);
  EXPECT_TRUE(t.Take(1'599'999).empty());
  auto done = t.Take(1'600'000);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[0].has_power_on_to_ready_ms());  // unknown is absent, never 0
}

TEST(LibvirtVmWatcher, SeesARealDomainStartOnTheTestDriver) {
  auto watcher = LibvirtVmWatcher::Start("test:///default", /*ready_timeout_ms=*/0);
  ASSERT_TRUE(watcher.ok()) << watcher.status().message();
  EXPECT_EQ((*watcher)->Problem(), "");
  // libvirt's test driver: one shared in-process hypervisor with a running domain "test".
  virConnectPtr rw = virConnectOpen("test:///default");
  ASSERT_NE(rw, nullptr);
  virDomainPtr dom = virDomainLookupByName(rw, "test");
  ASSERT_NE(dom, nullptr);
  char uuid[VIR_UUID_STRING_BUFLEN];
  ASSERT_EQ(virDomainGetUUIDString(dom, uuid), 0);
  ASSERT_EQ(virDomainDestroy(dom), 0);
  ASSERT_EQ(virDomainCreate(dom), 0);
  std::vector<v1::VmBoot> boots;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (boots.empty() && std::chrono::steady_clock::now() < deadline) {
    boots = (*watcher)->Take(INT64_MAX / 2);  // the event arrives on the watcher's thread
    if (boots.empty()) ::usleep(10'000);
  }
  ASSERT_EQ(boots.size(), 1u);
  EXPECT_EQ(boots[0].vm_name(), "test");
  EXPECT_EQ(boots[0].vm_uuid(), uuid);
  EXPECT_GT(boots[0].powered_on_at_unix_ms(), 1'700'000'000'000);
  virDomainFree(dom);
  virConnectClose(rw);
}

TEST(LibvirtVmWatcher, NoLibvirtdIsAProblemNamingTheUri) {
  auto watcher = LibvirtVmWatcher::Start("qemu:///system", 600'000);
  ASSERT_TRUE(watcher.ok()) << watcher.status().message();
  const std::string p = (*watcher)->Problem();
  if (p.empty()) GTEST_SKIP() << "a libvirtd is running on this machine";
  EXPECT_EQ(p.rfind("cannot connect to qemu:///system: ", 0), 0u) << p;
}

TEST(BootProbe, WatchesVmsOnVdiHostsOnly) {
  BootConfig c;
  EXPECT_EQ(BootProbe(c, "", "/proc", v1::ENDPOINT_ROLE_VDI_HOST).LibvirtUri(), "qemu:///system");
  EXPECT_EQ(BootProbe(c, "", "/proc", v1::ENDPOINT_ROLE_THIN_CLIENT).LibvirtUri(), "");
  c.libvirt_uri = "none";
  EXPECT_EQ(BootProbe(c, "", "/proc", v1::ENDPOINT_ROLE_VDI_HOST).LibvirtUri(), "");
  c.libvirt_uri = "qemu+ssh://kvm-07/system";
  EXPECT_EQ(BootProbe(c, "", "/proc", v1::ENDPOINT_ROLE_VDI_GUEST).LibvirtUri(),
            "qemu+ssh://kvm-07/system");
}

}  // namespace
}  // namespace deskpulse::agent
