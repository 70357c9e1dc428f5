#include "agent/fleetsim/model.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace deskpulse::fleetsim {
namespace {

constexpr std::int64_t kStart = 1'793'000'000'000;

TEST(FleetsimModel, SameSeedSameFleet) {
  CustomerSpec c{"Acme Corp", "dpt_x", Profile::kTypical};
  SimEndpoint a(c, 3, 42, kStart), b(c, 3, 42, kStart);
  EXPECT_EQ(a.agent_id(), b.agent_id());
  v1::Report ra, rb;
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(a.NextHistory(kStart + 20 * 86'400'000LL, &ra),
              b.NextHistory(kStart + 20 * 86'400'000LL, &rb));
    EXPECT_EQ(ra.SerializeAsString(), rb.SerializeAsString());
  }
}

TEST(FleetsimModel, EachCustomerSpansAllItsSites) {
  CustomerSpec c{"Acme Corp", "dpt_x", Profile::kStruggling};
  std::set<std::string> sites;
  for (int i = 0; i < 9; ++i) sites.insert(SimEndpoint(c, i, 1, kStart).facts().site());
  EXPECT_EQ(sites.size(), 3u);
}

TEST(FleetsimModel, HistoryIsOrderedAndSkipsWeekends) {
  CustomerSpec c{"Acme Corp", "dpt_x", Profile::kHealthy};
  SimEndpoint e(c, 0, 7, kStart);
  v1::Report r;
  std::uint64_t seq = 0;
  int boots = 0;
  std::int64_t last = 0;
  const std::int64_t until = kStart + 14 * 86'400'000LL;
  while (e.NextHistory(until, &r)) {
    EXPECT_EQ(r.seq(), ++seq);
    EXPECT_GE(r.observed_at_unix_ms(), last);
    EXPECT_LT(r.observed_at_unix_ms(), until);
    last = r.observed_at_unix_ms();
    const int weekday = static_cast<int>((r.observed_at_unix_ms() / 86'400'000 + 4) % 7);
    EXPECT_NE(weekday, 0);
    EXPECT_NE(weekday, 6);
    if (r.has_boot()) {
      ++boots;
      EXPECT_TRUE(r.boot().has_login_ready_ms());
      EXPECT_FALSE(r.peripherals().empty());
    }
  }
  EXPECT_EQ(boots, 10);  // two working weeks
}

TEST(FleetsimModel, ProfilesOrderBootTimes) {
  auto mean_boot_s = [](Profile p) {
    CustomerSpec c{"Acme Corp", "dpt_x", p};
    double sum = 0;
    int n = 0;
    for (int i = 0; i < 30; ++i) {
      SimEndpoint e(c, i, 3, kStart);
      v1::Report r;
      while (e.NextHistory(kStart + 30 * 86'400'000LL, &r)) {
        if (r.has_boot()) {
          sum += static_cast<double>(r.boot().login_ready_ms()) / 1000;
          ++n;
        }
      }
    }
    return sum / n;
  };
  const double healthy = mean_boot_s(Profile::kHealthy);
  const double typical = mean_boot_s(Profile::kTypical);
  const double struggling = mean_boot_s(Profile::kStruggling);
  EXPECT_NEAR(healthy, 25, 3);
  EXPECT_NEAR(typical, 58, 5);  // the field's average (DESIGN §1)
  EXPECT_GT(struggling, typical);
}

TEST(FleetsimModel, TokensFileErrorsNameTheLine) {
  EXPECT_EQ(ParseProfile("superb").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(ParseTokensFile("/nonexistent/tokens").ok());
}

}  // namespace
}  // namespace deskpulse::fleetsim
