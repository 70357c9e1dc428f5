// Score rules tested by data files: tests/data/scoring/*.json hold inputs, an
// optional policy and the expected scores, so a change to the formula shows up
// as a readable diff of expectations.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "collector/scoring/score.h"

namespace deskpulse::scoring {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Policy PolicyFrom(const json& j) {
  Policy p;
  auto set = [&](const char* key, double* field) {
    if (j.contains(key)) *field = j.at(key).get<double>();
  };
  set("boot_good_s", &p.boot_good_s);
  set("boot_poor_s", &p.boot_poor_s);
  set("rtt_good_ms", &p.rtt_good_ms);
  set("rtt_poor_ms", &p.rtt_poor_ms);
  set("retransmit_good_pct", &p.retransmit_good_pct);
  set("retransmit_poor_pct", &p.retransmit_poor_pct);
  set("unavailability_good", &p.unavailability_good);
  set("unavailability_poor", &p.unavailability_poor);
  set("weight_latency", &p.weight_latency);
  set("weight_boot", &p.weight_boot);
  set("weight_peripherals", &p.weight_peripherals);
  set("weight_stability", &p.weight_stability);
  return p;
}

// Builds the rollup exactly as the store does: through the same buckets.
WindowRollup RollupFrom(const json& in) {
  WindowRollup w;
  for (double s : in.value("boots_s", json::array())) {
    w.boot_ms.AddValue(static_cast<std::uint64_t>(s * 1000));
  }
  for (const auto& win : in.value("windows", json::array())) {
    const auto rtt_us = static_cast<std::uint64_t>(win.at("rtt_p95_ms").get<double>() * 1000);
    std::uint64_t ppm = 0;
    if (win.contains("retransmit_pct")) {
      ppm = static_cast<std::uint64_t>(win.at("retransmit_pct").get<double>() * 10'000);
    }
    w.latency.Add(latency_cells::Key(rtt_us, win.contains("retransmit_pct") ? &ppm : nullptr),
                  win.at("duration_s").get<std::uint64_t>());
    ++w.latency_windows;
  }
  if (in.contains("peripherals")) {
    w.peripherals_working = in["peripherals"].value("working", 0);
    w.peripherals_failed = in["peripherals"].value("failed", 0);
  }
  w.session_s = in.value("session_s", 0.0);
  w.downtime_ms = in.value("downtime_s", 0.0) * 1000;
  return w;
}

void ExpectComponent(const json& expect, const char* name, const Component& c, double tol,
                     const std::string& file) {
  if (!expect.contains(name)) return;
  if (expect[name].is_null()) {
    EXPECT_FALSE(c.score.has_value()) << file << ": " << name << " should have no data";
  } else {
    ASSERT_TRUE(c.score.has_value()) << file << ": " << name << " has no score";
    EXPECT_NEAR(*c.score, expect[name].get<double>(), tol) << file << ": " << name;
  }
}

TEST(ScoringCases, EveryDataFileHolds) {
  const fs::path dir = fs::path(DESKPULSE_TEST_DATA) / "scoring";
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    const std::string file = entry.path().filename().string();
    std::ifstream in(entry.path());
    const json c = json::parse(in);
    const Policy policy = PolicyFrom(c.value("policy", json::object()));
    ASSERT_TRUE(policy.Validate().ok()) << file;
    const TechScore t = ScoreWindow(RollupFrom(c.at("input")), policy);
    const json& e = c.at("expect");
    const double tol = e.value("tolerance", 0.3);
    ExpectComponent(e, "boot", t.boot, tol, file);
    ExpectComponent(e, "latency", t.latency, tol, file);
    ExpectComponent(e, "peripherals", t.peripherals, tol, file);
    ExpectComponent(e, "stability", t.stability, tol, file);
    if (e.at("tps").is_null()) {
      EXPECT_FALSE(t.tps.has_value()) << file;
      EXPECT_FALSE(t.band.has_value()) << file;
    } else {
      ASSERT_TRUE(t.tps.has_value()) << file;
      EXPECT_NEAR(*t.tps, e.at("tps").get<double>(), tol) << file;
      EXPECT_EQ(BandName(*t.band), e.at("band").get<std::string>()) << file;
    }
    EXPECT_NEAR(t.coverage, e.at("coverage").get<double>(), 1e-9) << file;
    if (e.contains("first_driver_starts_with")) {
      ASSERT_FALSE(t.drivers.empty()) << file;
      EXPECT_EQ(t.drivers.front().rfind(e["first_driver_starts_with"].get<std::string>(), 0), 0u)
          << file << ": " << t.drivers.front();
    }
    ++cases;
  }
  EXPECT_GE(cases, 6);
}

TEST(Scoring, EventScoreIsLinearBetweenThresholds) {
  EXPECT_EQ(EventScore(10, 30, 100), 1);
  EXPECT_EQ(EventScore(30, 30, 100), 1);
  EXPECT_DOUBLE_EQ(EventScore(65, 30, 100), 0.5);
  EXPECT_EQ(EventScore(100, 30, 100), 0);
  EXPECT_EQ(EventScore(1000, 30, 100), 0);
}

TEST(Scoring, StabilityIsLogarithmic) {
  Policy p;
  EXPECT_DOUBLE_EQ(StabilityComponent(0, p), 100);
  EXPECT_DOUBLE_EQ(StabilityComponent(1e-5, p), 100);
  EXPECT_NEAR(StabilityComponent(1e-4, p), 100, 1e-9);
  EXPECT_NEAR(StabilityComponent(1e-3, p), 50, 1e-9);
  EXPECT_NEAR(StabilityComponent(1e-2, p), 0, 1e-9);
  EXPECT_DOUBLE_EQ(StabilityComponent(0.5, p), 0);
}

TEST(Scoring, BandsFollowThePublishedCuts) {
  EXPECT_STREQ(BandName(BandOf(70)), "good");
  EXPECT_STREQ(BandName(BandOf(69.99)), "fair");
  EXPECT_STREQ(BandName(BandOf(40)), "fair");
  EXPECT_STREQ(BandName(BandOf(39.9)), "poor");
}

TEST(Scoring, PolicyValidationNamesTheProblem) {
  Policy p;
  p.boot_good_s = 200;
  EXPECT_NE(p.Validate().message().find("boot"), std::string::npos);
  Policy w;
  w.weight_latency = w.weight_boot = w.weight_peripherals = w.weight_stability = 0;
  EXPECT_FALSE(w.Validate().ok());
}

}  // namespace
}  // namespace deskpulse::scoring
