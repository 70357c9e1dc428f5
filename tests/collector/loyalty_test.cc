// Loyalty health rules tested by data files: tests/data/loyalty/*.json hold a
// customer's telemetry components, business signals and daily history at a
// given time, an optional policy, and the expected LHI, coverage, factors,
// churn risk, drivers and trends (docs/scoring.md, "Loyalty health").
#include "collector/scoring/loyalty.h"

#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace deskpulse::scoring {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SSZ", as ms since the epoch.
std::int64_t Ms(const std::string& s) {
  std::tm tm{};
  const char* end = s.size() > 10 ? strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)
                                  : strptime(s.c_str(), "%Y-%m-%d", &tm);
  EXPECT_TRUE(end != nullptr && *end == '\0') << "bad time in a data file: " << s;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}

std::optional<double> OptNumber(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

std::optional<std::int64_t> OptTime(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return Ms(j[key].get<std::string>());
}

LoyaltyPolicy PolicyFrom(const json& j) {
  LoyaltyPolicy p;
  auto set = [&](const char* key, auto* field) {
    if (j.contains(key)) *field = j.at(key).get<std::remove_pointer_t<decltype(field)>>();
  };
  set("weight_technical", &p.weight_technical);
  set("weight_value", &p.weight_value);
  set("weight_service", &p.weight_service);
  set("weight_brand", &p.weight_brand);
  set("weight_relationship", &p.weight_relationship);
  set("survey_max_age_days", &p.survey_max_age_days);
  set("review_max_age_days", &p.review_max_age_days);
  set("ticket_window_days", &p.ticket_window_days);
  return p;
}

/// The technical score as ScoreWindow would give it for these component
/// scores, with the default weights.
TechScore TechFrom(const json& j) {
  TechScore t;
  const Policy p;
  t.latency.weight = p.weight_latency;
  t.boot.weight = p.weight_boot;
  t.peripherals.weight = p.weight_peripherals;
  t.stability.weight = p.weight_stability;
  double with_data = 0;
  double weighted = 0;
  for (auto [name, c] :
       {std::pair{"latency", &t.latency}, std::pair{"boot", &t.boot},
        std::pair{"peripherals", &t.peripherals}, std::pair{"stability", &t.stability}}) {
    if (!j.contains(name)) continue;
    c->score = j[name].get<double>();
    c->detail = "figures";
    with_data += c->weight;
    weighted += c->weight * *c->score;
  }
  t.coverage = with_data;
  if (with_data > 0) t.tps = weighted / with_data;
  return t;
}

BusinessSignals SignalsFrom(const json& c) {
  BusinessSignals s;
  for (const json& j : c.value("surveys", json::array())) {
    s.surveys.push_back({.date_ms = Ms(j.at("date")),
                         .nps = OptNumber(j, "nps"),
                         .ces = OptNumber(j, "ces"),
                         .ves = OptNumber(j, "ves"),
                         .respondents = j.value("respondents", 1)});
  }
  for (const json& j : c.value("tickets", json::array())) {
    s.tickets.push_back({.id = j.at("id"),
                         .opened_ms = Ms(j.at("opened")),
                         .first_response_ms = OptTime(j, "first_response"),
                         .resolved_ms = OptTime(j, "resolved"),
                         .severity = j.value("severity", "3")});
  }
  if (c.contains("contract")) {
    const json& j = c["contract"];
    Contract k;
    k.tier = j.value("tier", "C")[0];
    k.annual_value = j.value("annual_value", 0.0);
    k.start_ms = Ms(j.at("start"));
    k.renewal_ms = Ms(j.at("renewal"));
    k.renewal_status = *ParseRenewalStatus(j.value("renewal_status", "pending"));
    k.expected_savings = OptNumber(j, "expected_savings");
    k.realised_savings = OptNumber(j, "realised_savings");
    s.contract = k;
  }
  for (const json& d : c.value("reviews", json::array())) s.review_dates_ms.push_back(Ms(d));
  for (const json& j : c.value("overrides", json::array())) {
    s.overrides.push_back({.factor = *ParseFactor(j.at("factor").get<std::string>()),
                           .value = j.at("value"),
                           .reason = j.at("reason"),
                           .expires_ms = Ms(j.at("expires"))});
  }
  return s;
}

std::vector<DaySnapshot> HistoryFrom(const json& c) {
  std::vector<DaySnapshot> h;
  for (const json& j : c.value("history", json::array())) {
    h.push_back(
        {.day_ms = Ms(j.at("day")), .tps = OptNumber(j, "tps"), .lhi = OptNumber(j, "lhi")});
  }
  return h;
}

bool AnyContains(const std::vector<std::string>& texts, const std::string& part) {
  for (const auto& t : texts) {
    if (t.find(part) != std::string::npos) return true;
  }
  return false;
}

void ExpectOptional(const json& e, const char* key, const std::optional<double>& got, double tol,
                    const std::string& what) {
  if (!e.contains(key)) return;
  if (e[key].is_null()) {
    EXPECT_FALSE(got.has_value()) << what << ": " << key << " should be absent, is " << *got;
  } else {
    ASSERT_TRUE(got.has_value()) << what << ": " << key << " is absent";
    EXPECT_NEAR(*got, e[key].get<double>(), tol) << what << ": " << key;
  }
}

void Check(const json& c, const std::string& file) {
  const LoyaltyPolicy policy = PolicyFrom(c.value("policy", json::object()));
  ASSERT_TRUE(policy.Validate().ok()) << file;
  const LoyaltyHealth h = ScoreLoyalty(TechFrom(c.value("tech", json::object())), SignalsFrom(c),
                                       HistoryFrom(c), Ms(c.at("now")), policy);
  const json& e = c.at("expect");
  const double tol = e.value("tolerance", 0.05);
  ExpectOptional(e, "lhi", h.lhi, tol, file);
  if (e.contains("coverage")) {
    EXPECT_NEAR(h.coverage, e["coverage"].get<double>(), 1e-9) << file;
  }
  if (e.contains("risk")) {
    EXPECT_EQ(RiskName(h.risk), e["risk"].get<std::string>()) << file;
  }
  const json factors = e.value("factors", json::object());
  for (const auto& [name, value] : factors.items()) {
    const FactorScore& f = h.factors.at(static_cast<std::size_t>(*ParseFactor(name)));
    ExpectOptional(json{{name, value}}, name.c_str(), f.score, tol, file);
  }
  for (const json& name : e.value("stale", json::array())) {
    EXPECT_TRUE(h.factors.at(static_cast<std::size_t>(*ParseFactor(name.get<std::string>()))).stale)
        << file << ": " << name << " should be stale";
  }
  for (const json& name : e.value("not_stale", json::array())) {
    EXPECT_FALSE(
        h.factors.at(static_cast<std::size_t>(*ParseFactor(name.get<std::string>()))).stale)
        << file << ": " << name << " should not be stale";
  }
  for (const json& name : e.value("overridden", json::array())) {
    EXPECT_TRUE(h.factors.at(static_cast<std::size_t>(*ParseFactor(name.get<std::string>())))
                    .override_applied.has_value())
        << file << ": " << name << " should be overridden";
  }
  for (const json& name : e.value("not_overridden", json::array())) {
    EXPECT_FALSE(h.factors.at(static_cast<std::size_t>(*ParseFactor(name.get<std::string>())))
                     .override_applied.has_value())
        << file << ": " << name << " should not be overridden";
  }
  for (const json& part : e.value("reasons_contain", json::array())) {
    EXPECT_TRUE(AnyContains(h.risk_reasons, part)) << file << ": no risk reason has " << part;
  }
  for (const json& part : e.value("reasons_lack", json::array())) {
    EXPECT_FALSE(AnyContains(h.risk_reasons, part)) << file << ": a risk reason has " << part;
  }
  if (e.contains("reasons_count")) {
    EXPECT_EQ(h.risk_reasons.size(), e["reasons_count"].get<std::size_t>()) << file;
  }
  for (const json& part : e.value("gaps_contain", json::array())) {
    EXPECT_TRUE(AnyContains(h.gaps, part)) << file << ": no gap has " << part;
  }
  if (e.contains("first_driver")) {
    ASSERT_FALSE(h.drivers.empty()) << file;
    const json& d = e["first_driver"];
    EXPECT_NE(h.drivers[0].text.find(d.at("contains").get<std::string>()), std::string::npos)
        << file << ": " << h.drivers[0].text;
    EXPECT_NEAR(h.drivers[0].lhi_points, d.at("lhi_points").get<double>(), tol)
        << file << ": " << h.drivers[0].text;
    if (d.contains("factor_points")) {
      EXPECT_NEAR(h.drivers[0].factor_points, d["factor_points"].get<double>(), tol) << file;
    }
  }
  if (e.contains("drivers_count")) {
    EXPECT_EQ(h.drivers.size(), e["drivers_count"].get<std::size_t>()) << file;
  }
  if (e.contains("tps_trend")) {
    const json& t = e["tps_trend"];
    ExpectOptional(t, "change_7d", h.tps_trend.change_7d, tol, file + " tps 7d");
    ExpectOptional(t, "change_30d", h.tps_trend.change_30d, tol, file + " tps 30d");
    if (t.contains("weekly")) {
      ASSERT_EQ(h.tps_trend.weekly.size(), 13u) << file;
      for (std::size_t i = 0; i < 13; ++i) {
        ExpectOptional(json{{"w", t["weekly"][i]}}, "w", h.tps_trend.weekly[i], tol,
                       file + " week " + std::to_string(i));
      }
    }
  }
  // Whatever the case, the drivers' LHI points add up to what the LHI lacks
  // of 100: every point lost is explained.
  if (h.lhi) {
    double points = 0;
    for (const Driver& d : h.drivers) points += d.lhi_points;
    EXPECT_NEAR(points, 100 - *h.lhi, 1e-6) << file << ": drivers do not explain the LHI";
  }
}

TEST(LoyaltyCases, EveryDataFileHolds) {
  const fs::path dir = fs::path(DESKPULSE_TEST_DATA) / "loyalty";
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    SCOPED_TRACE(entry.path().filename().string());
    Check(json::parse(in), entry.path().filename().string());
    ++cases;
  }
  EXPECT_GE(cases, 10);
}

TEST(Loyalty, PolicyValidationNamesTheProblem) {
  LoyaltyPolicy p;
  p.first_response_good_min = 500;
  EXPECT_NE(p.Validate().message().find("first response"), std::string::npos);
  LoyaltyPolicy w;
  w.weight_technical = w.weight_value = w.weight_service = w.weight_brand = w.weight_relationship =
      0;
  EXPECT_NE(w.Validate().message().find("weights"), std::string::npos);
  EXPECT_TRUE(LoyaltyPolicy{}.Validate().ok());
}

TEST(Loyalty, NamesRoundTrip) {
  for (Factor f : kFactors) EXPECT_EQ(ParseFactor(FactorName(f)), f);
  EXPECT_FALSE(ParseFactor("vibes").has_value());
  EXPECT_EQ(ParseRenewalStatus("renewed"), RenewalStatus::kRenewed);
  EXPECT_FALSE(ParseRenewalStatus("maybe").has_value());
}

// Technical drivers say where their points come from: a pool whose boots are
// slow carries most of boot's loss, the rest of the pool dimension the rest,
// and the drivers still add up to what the LHI lost.
TEST(Loyalty, TechnicalDriversNameThePoolTheirPointsComeFrom) {
  const Policy p;
  EndpointGroup finance{.dimension = "pool", .name = "finance-vdi", .endpoints = 41, .window = {}};
  EndpointGroup office{.dimension = "pool", .name = "office-vdi", .endpoints = 80, .window = {}};
  EndpointGroup lyon{.dimension = "site", .name = "lyon", .endpoints = 60, .window = {}};
  EndpointGroup paris{.dimension = "site", .name = "paris", .endpoints = 61, .window = {}};
  for (int i = 0; i < 41 * 3; ++i) {
    finance.window.boot_ms.AddValue(87'000);
    (i % 2 ? lyon : paris).window.boot_ms.AddValue(87'000);
  }
  for (int i = 0; i < 80 * 3; ++i) {
    office.window.boot_ms.AddValue(36'000);
    (i % 2 ? lyon : paris).window.boot_ms.AddValue(36'000);
  }
  WindowRollup all;
  all.boot_ms.Merge(finance.window.boot_ms);
  all.boot_ms.Merge(office.window.boot_ms);
  TechScore t = ScoreWindow(all, p);
  ASSERT_TRUE(t.boot.score.has_value());
  AttributeLosses(t, {finance, office, lyon, paris}, p);
  ASSERT_TRUE(t.boot.source.has_value());
  const LossSource& src = *t.boot.source;
  EXPECT_EQ(src.dimension, "pool");  // the sites split the slow boots evenly
  EXPECT_EQ(src.name, "finance-vdi");
  EXPECT_EQ(src.endpoints, 41);
  EXPECT_EQ(src.rest_endpoints, 80);
  const double finance_loss = 123 * (100 - BootComponent(finance.window.boot_ms, p));
  const double office_loss = 240 * (100 - BootComponent(office.window.boot_ms, p));
  EXPECT_NEAR(src.share, finance_loss / (finance_loss + office_loss), 1e-9);
  EXPECT_FALSE(t.latency.source.has_value());  // no latency data

  const LoyaltyHealth h = ScoreLoyalty(t, {}, {}, 0, LoyaltyPolicy{});
  ASSERT_TRUE(h.lhi.has_value());
  double sum = 0;
  const Driver* pool = nullptr;
  for (const Driver& d : h.drivers) {
    sum += d.lhi_points;
    if (d.where == "pool finance-vdi") pool = &d;
  }
  EXPECT_NEAR(sum, 100 - *h.lhi, 1e-9);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->text.starts_with("boot p95 ")) << pool->text;
  EXPECT_NE(pool->text.find(" on 41 endpoints of pool finance-vdi (-"), std::string::npos)
      << pool->text;
  EXPECT_NEAR(pool->factor_points, (100 - *t.boot.score) * src.share, 1e-9);
  EXPECT_EQ(h.drivers.front().where, "pool finance-vdi");  // it costs most
}

// A loss spread evenly over the pools has no source: the driver stays whole.
TEST(Loyalty, AnEvenlySpreadLossIsNotLocalised) {
  const Policy p;
  EndpointGroup a{.dimension = "pool", .name = "a", .endpoints = 5, .window = {}};
  EndpointGroup b{.dimension = "pool", .name = "b", .endpoints = 5, .window = {}};
  for (int i = 0; i < 10; ++i) {
    a.window.boot_ms.AddValue(80'000 + 1000 * i);
    b.window.boot_ms.AddValue(80'000 + 1000 * i);
  }
  WindowRollup all;
  all.boot_ms.Merge(a.window.boot_ms);
  all.boot_ms.Merge(b.window.boot_ms);
  TechScore t = ScoreWindow(all, p);
  AttributeLosses(t, {a, b}, p);
  EXPECT_FALSE(t.boot.source.has_value());
}

// One group in every dimension localises nothing: the driver stays whole.
TEST(Loyalty, ASingleGroupIsNotASource) {
  const Policy p;
  EndpointGroup only{.dimension = "pool", .name = "all", .endpoints = 5, .window = {}};
  for (int i = 0; i < 10; ++i) only.window.boot_ms.AddValue(90'000);
  TechScore t = ScoreWindow(only.window, p);
  AttributeLosses(t, {only}, p);
  EXPECT_FALSE(t.boot.source.has_value());
}

}  // namespace
}  // namespace deskpulse::scoring
