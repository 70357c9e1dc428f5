#include "agent/probes/stability/stability_probe.h"

#include <gtest/gtest.h>

namespace deskpulse::agent {
namespace {

const std::string kData = std::string(DESKPULSE_TEST_DATA) + "/stability";

StabilityConfig Fixture(const std::string& name) {
  StabilityConfig c;
  c.proc = kData + "/" + name;
  c.journal = false;
  return c;
}

TEST(StabilityProbe, UptimeFromProc) {
  StabilityProbe probe(Fixture("proc-basic"), "", {});
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
  EXPECT_EQ(r.stability().uptime_s(), 2286u);
  EXPECT_EQ(r.stability().crashes_size(), 0);
  EXPECT_EQ(r.unavailable_size(), 0);
}

TEST(StabilityProbe, GarbledUptimeIsUnavailableNamingTheFile) {
  StabilityProbe probe(Fixture("proc-garbled"), "", {});
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60}, r);
  EXPECT_FALSE(r.stability().has_uptime_s());
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "stability.uptime");
  EXPECT_NE(r.unavailable(0).reason().find("proc-garbled/uptime"), std::string::npos);
}

TEST(StabilityProbe, UncleanEndOfThePreviousBootIsAnOsCrash) {
  RunHistory h{.previous_boot_id = "0d1e2f3a-0000-4000-8000-000000000000",
               .previous_clean = false,
               .previous_seen_unix_ms = 1'000,
               .restarts = 4};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 5'000'000, .window_s = 60, .first_cycle = true}, r);
  ASSERT_EQ(r.stability().crashes_size(), 1);
  EXPECT_EQ(r.stability().crashes(0).component(), v1::CRASH_COMPONENT_OS);
  EXPECT_NE(r.stability().crashes(0).reason().find("0d1e2f3a"), std::string::npos);
  // Only on the first cycle.
  v1::Report next;
  probe.Collect({.now_unix_ms = 5'060'000, .window_s = 60}, next);
  EXPECT_EQ(next.stability().crashes_size(), 0);
}

TEST(StabilityProbe, SameBootWithoutCleanStopIsAnAgentCrash) {
  RunHistory h{.previous_boot_id = "e1793abe-a8b2-4b1d-834f-4bfe62357cbc",
               .previous_clean = false,
               .previous_seen_unix_ms = 1'000'000};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1'030'000, .window_s = 60, .first_cycle = true}, r);
  ASSERT_EQ(r.stability().crashes_size(), 1);
  EXPECT_EQ(r.stability().crashes(0).component(), v1::CRASH_COMPONENT_AGENT);
  EXPECT_EQ(r.stability().crashes(0).downtime_ms(), 30'000u);
}

TEST(StabilityProbe, CleanStopIsNoCrash) {
  RunHistory h{.previous_boot_id = "0d1e2f3a-0000-4000-8000-000000000000", .previous_clean = true};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
  EXPECT_EQ(r.stability().crashes_size(), 0);
}

}  // namespace
}  // namespace deskpulse::agent
