#include <gtest/gtest.h>

#include "collector/api/routes.h"

namespace deskpulse::collector::api {
namespace {

TEST(BootHistogram, RoundBinsUpToThe99thPercentileThenAnOpenOne) {
  SparseHistogram h;
  for (int s = 20; s < 80; ++s) h.AddValue(static_cast<std::uint64_t>(s) * 1000);
  const auto j = BootHistogram(h);
  EXPECT_EQ(j["bin_s"], 5.0);  // p99 79 s: 2 s bins would be 40, 5 s ones 16
  const auto& bins = j["bins"];
  EXPECT_TRUE(bins.back()["to_s"].is_null());
  std::uint64_t boots = 0;
  for (const auto& b : bins) boots += b["boots"].get<std::uint64_t>();
  EXPECT_EQ(boots, 60u);
}

TEST(BootHistogram, AnAbsurdFigureCannotMakeItLarge) {
  SparseHistogram h;
  h.AddValue(std::uint64_t{1} << 62, 100);  // an agent's login-ready of 146 million years
  h.AddValue(30'000);
  const auto j = BootHistogram(h);
  EXPECT_LE(j["bins"].size(), 32u);
  std::uint64_t boots = 0;
  for (const auto& b : j["bins"]) boots += b["boots"].get<std::uint64_t>();
  EXPECT_EQ(boots, 101u);
}

}  // namespace
}  // namespace deskpulse::collector::api
