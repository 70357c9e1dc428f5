#include <gtest/gtest.h>

#include <map>
#include <set>

#include "agent/fleetsim/model.h"

namespace deskpulse::fleetsim {
namespace {

constexpr std::int64_t kStart = 1'793'000'000'000;

// Device models drawn from the catalog the CTest fixture builds.
const CustomerDevices& Devices() {
  static const CustomerDevices kDevices = [] {
    auto d = DrawCustomerDevices(DESKPULSE_TEST_CATALOG, "Acme Corp", 42);
    EXPECT_TRUE(d.ok()) << d.status().message();
    return d.ok() ? *d : CustomerDevices{};
  }();
  return kDevices;
}

TEST(FleetsimModel, SameSeedSameFleet) {
  CustomerSpec c{"Acme Corp", "dpt_x", Profile::kTypical};
  SimEndpoint a(c, Devices(), 3, 42, kStart), b(c, Devices(), 3, 42, kStart);
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
  for (int i = 0; i < 9; ++i) sites.insert(SimEndpoint(c, Devices(), i, 1, kStart).facts().site());
  EXPECT_EQ(sites.size(), 3u);
}

TEST(FleetsimModel, HistoryIsOrderedAndSkipsWeekends) {
  CustomerSpec c{"Acme Corp", "dpt_x", Profile::kHealthy};
  SimEndpoint e(c, Devices(), 0, 7, kStart);
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
      SimEndpoint e(c, Devices(), i, 3, kStart);
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
  EXPECT_NEAR(typical, 58, 5);  // the field's average (docs/quality.md)
  EXPECT_GT(struggling, typical);
}

TEST(FleetsimModel, DevicesComeFromTheCatalogWithItsVerdicts) {
  const CustomerDevices& d = Devices();
  EXPECT_EQ(d.supported.size(), 8u);  // 3 printers, 2 webcams, a scanner, 2 readers
  EXPECT_EQ(d.partial.size(), 1u);
  EXPECT_EQ(d.problem.size(), 3u);
  auto r = catalog::Reader::Open(DESKPULSE_TEST_CATALOG, LinkedSqliteApi());
  ASSERT_TRUE(r.ok());
  for (const auto* pool : {&d.supported, &d.partial, &d.problem}) {
    for (const DeviceModel& m : *pool) {
      catalog::Observation o;
      if (m.vendor_id != 0) {
        o.vendor_id = static_cast<std::uint16_t>(m.vendor_id);
        o.product_id = static_cast<std::uint16_t>(m.product_id);
        // A real id: a source lists it.
        auto f = r->Lookup(o);
        ASSERT_TRUE(f.ok());
        EXPECT_TRUE(!f->product_name.empty() || f->sane_models || f->ccid_reader) << m.name;
      } else {
        EXPECT_TRUE(catalog::PrinterKeyFromIeee1284(m.ieee1284_id).has_value()) << m.name;
      }
    }
  }
  // Another customer has another fleet standard.
  auto other = DrawCustomerDevices(DESKPULSE_TEST_CATALOG, "Globex", 42);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->supported.front().name + other->supported.back().name,
            d.supported.front().name + d.supported.back().name);
  EXPECT_FALSE(DrawCustomerDevices("/nonexistent/catalog.sqlite", "Acme", 1).ok());
}

TEST(FleetsimModel, TypicalCustomersHaveAbout78PercentOfDevicesWorkingWellRunOnes95) {
  auto working_share = [](Profile p) {
    CustomerSpec c{"Acme Corp", "dpt_x", p};
    int working = 0, total = 0;
    for (int i = 0; i < 1500; ++i) {
      SimEndpoint e(c, Devices(), i, 11, kStart);
      v1::Report r;
      while (e.NextHistory(kStart + 2 * 86'400'000LL, &r)) {
        if (!r.has_boot()) continue;
        for (const auto& d : r.peripherals()) {
          ++total;
          working += d.state() == v1::DEVICE_STATE_WORKING;
        }
        break;  // each device instance once
      }
    }
    return static_cast<double>(working) / total;
  };
  EXPECT_NEAR(working_share(Profile::kTypical), 0.78, 0.03);
  EXPECT_NEAR(working_share(Profile::kHealthy), 0.95, 0.02);
  EXPECT_LT(working_share(Profile::kStruggling), 0.70);
}

TEST(FleetsimModel, TokensFileErrorsNameTheLine) {
  EXPECT_EQ(ParseProfile("superb").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(ParseTokensFile("/nonexistent/tokens").ok());
}

}  // namespace
}  // namespace deskpulse::fleetsim
