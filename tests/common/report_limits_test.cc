#include "deskpulse/common/report_limits.h"

#include <gtest/gtest.h>

namespace deskpulse {
namespace {

v1::Report Valid() {
  v1::Report r;
  r.set_seq(1);
  r.mutable_boot()->set_boot_id("b7e5");
  auto* p = r.add_peripherals();
  p->set_name("HP LaserJet 1020");
  p->add_drivers("usblp");
  return r;
}

TEST(ReportLimits, AValidReportPasses) {
  auto r = Valid();
  EXPECT_TRUE(ValidateReport(r).ok());
}

TEST(ReportLimits, ErrorsNameTheField) {
  auto r = Valid();
  r.mutable_peripherals(0)->add_drivers(std::string(65, 'd'));
  EXPECT_EQ(ValidateReport(r).message(),
            "peripherals[0].drivers[1] is 65 bytes, over the limit of 64");
  r = Valid();
  for (int i = 0; i < 65; ++i) r.add_unavailable()->set_measurement("m");
  EXPECT_EQ(ValidateReport(r).message(), "unavailable has 65 entries, over the limit of 64");
  r = Valid();
  r.mutable_stability()->add_crashes()->set_reason(std::string(513, 'r'));
  EXPECT_EQ(ValidateReport(r).message(),
            "stability.crashes[0].reason is 513 bytes, over the limit of 512");
  r = Valid();
  r.mutable_peripherals(0)->mutable_catalog()->set_detail(std::string(600, 'x'));
  EXPECT_NE(ValidateReport(r).message().find("peripherals[0].catalog.detail"), std::string::npos);
}

TEST(ReportLimits, SeqMustFitASignedInteger) {
  auto r = Valid();
  r.set_seq(limits::kMaxSeq);
  EXPECT_TRUE(ValidateReport(r).ok());
  r.set_seq(limits::kMaxSeq + 1);
  EXPECT_EQ(ValidateReport(r).message(), "seq 9223372036854775808 is outside 1 .. 2^63 - 1");
  r.set_seq(0);
  EXPECT_FALSE(ValidateReport(r).ok());
}

TEST(ReportLimits, ClampCutsToTheLimitsAtCharacterBoundaries) {
  auto r = Valid();
  std::string name(510, 'n');
  name += "\xc3\xa9\xc3\xa9";  // two 2-byte characters across the 512-byte limit
  r.mutable_peripherals(0)->set_name(name);
  for (int i = 0; i < 70; ++i) r.add_unavailable()->set_reason(std::string(600, 'r'));
  const std::size_t cut = ClampReport(&r);
  EXPECT_EQ(cut, 1u + 1u + 64u);  // the name, the list, and 64 reasons
  EXPECT_EQ(r.peripherals(0).name().size(), 512u);
  EXPECT_EQ(r.peripherals(0).name().substr(510), "\xc3\xa9");
  EXPECT_EQ(r.unavailable_size(), 64);
  EXPECT_TRUE(ValidateReport(r).ok());
}

TEST(ReportLimits, HelloFields) {
  v1::Hello h;
  h.set_agent_id("a");
  h.set_credential("dpt_x");
  EXPECT_TRUE(ValidateHello(h).ok());
  h.mutable_host()->set_pool(std::string(129, 'p'));
  EXPECT_EQ(ValidateHello(h).message(), "host.pool is 129 bytes, over the limit of 128");
  h.mutable_host()->clear_pool();
  h.set_agent_id("");
  EXPECT_EQ(ValidateHello(h).message(), "agent_id is empty");
  h.set_agent_id(std::string(129, 'a'));
  EXPECT_EQ(ValidateHello(h).message(), "agent_id is 129 bytes, over the limit of 128");
}

}  // namespace
}  // namespace deskpulse
