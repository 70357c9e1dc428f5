#include "collector/reports/health.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace deskpulse::collector {

namespace {

int RiskRank(scoring::Risk r) {
  switch (r) {
    case scoring::Risk::kHigh:
      return 0;
    case scoring::Risk::kMedium:
      return 1;
    case scoring::Risk::kLow:
      return 2;
    case scoring::Risk::kUnknown:
      return 3;
  }
  return 4;
}

nlohmann::json Num(const std::optional<double>& v) {
  return v ? nlohmann::json(std::round(*v * 10) / 10) : nlohmann::json();
}

std::string Cell(const std::optional<double>& v, const char* spec = "{:.1f}") {
  return v ? fmt::format(fmt::runtime(spec), *v) : std::string("n/a");
}

/// At most `n` characters (UTF-8 safe: never cuts inside a character).
std::string Clip(const std::string& s, std::size_t n) {
  if (s.size() <= n) return s;
  std::size_t cut = n - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "...";
}

nlohmann::json TrendJson(const scoring::Trend& t) {
  nlohmann::json weekly = nlohmann::json::array();
  for (const auto& w : t.weekly) weekly.push_back(Num(w));
  return {{"change_7d", Num(t.change_7d)}, {"change_30d", Num(t.change_30d)}, {"weekly", weekly}};
}

}  // namespace

std::optional<SourceCache::Entry> SourceCache::Find(std::int64_t customer_id) const {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(customer_id);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void SourceCache::Put(std::int64_t customer_id, Entry entry) {
  std::lock_guard lock(mu_);
  entries_[customer_id] = std::move(entry);
}

std::size_t SourceCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

namespace {

// The losses' sources of `cs` from options.source_cache when fresh (or when
// the budget is spent), else read and kept there. Returns when they were read.
Result<std::int64_t> SourcesFromCache(Store& store, CustomerScore& cs, const HealthOptions& options,
                                      std::int64_t now_ms) {
  SourceCache* cache = options.source_cache;
  std::size_t* budget = options.source_budget;
  const std::optional<SourceCache::Entry> had =
      cache != nullptr ? cache->Find(cs.customer.id) : std::nullopt;
  if (had &&
      (now_ms - had->computed_ms < cache->max_age_ms() || (budget != nullptr && *budget == 0))) {
    // Only where the component still loses points.
    auto apply = [](scoring::Component& c, const std::optional<scoring::LossSource>& src) {
      if (c.score && *c.score < 100) c.source = src;
    };
    apply(cs.score.boot, had->boot);
    apply(cs.score.latency, had->latency);
    apply(cs.score.stability, had->stability);
    return had->computed_ms;
  }
  DP_RETURN_IF_ERROR(AttachLossSources(store, cs, options.policy, now_ms));
  if (cache != nullptr) {
    cache->Put(cs.customer.id, {.computed_ms = now_ms,
                                .boot = cs.score.boot.source,
                                .latency = cs.score.latency.source,
                                .stability = cs.score.stability.source});
    if (had && budget != nullptr) --*budget;
  }
  return now_ms;
}

}  // namespace

Result<CustomerHealth> AssessCustomer(Store& store, CustomerScore technical,
                                      const HealthOptions& options, std::int64_t now_ms) {
  using Sources = HealthOptions::Sources;
  std::int64_t sources_ms = 0;
  if (options.loss_sources == Sources::kAll) {
    DP_ASSIGN_OR_RETURN(sources_ms, SourcesFromCache(store, technical, options, now_ms));
  }
  const std::int64_t today = FloorTo(now_ms, kDayMs);
  // 13 weeks of weekly points, and 3 days' slack before the first.
  const std::int64_t history_from = today - (12 * 7 + 6) * kDayMs;
  DP_ASSIGN_OR_RETURN(CustomerSignals signals, store.LoadSignals(technical.customer.id));
  DP_ASSIGN_OR_RETURN(auto snapshots, store.LoadHistory(technical.customer.id, history_from));
  std::vector<scoring::DaySnapshot> history;
  history.reserve(snapshots.size());
  for (const HealthSnapshot& s : snapshots) {
    history.push_back({.day_ms = s.day_ms, .tps = s.tps, .lhi = s.lhi});
  }
  CustomerHealth h{.technical = std::move(technical),
                   .contract = signals.signals.contract,
                   .health = {},
                   .risk_change = std::nullopt};
  h.health =
      scoring::ScoreLoyalty(h.technical.score, signals.signals, history, now_ms, options.loyalty);
  if (options.loss_sources == Sources::kWhenTopIsTechnical && !h.health.drivers.empty() &&
      h.health.drivers.front().factor == scoring::Factor::kTechnical) {
    DP_ASSIGN_OR_RETURN(sources_ms, SourcesFromCache(store, h.technical, options, now_ms));
    h.health =
        scoring::ScoreLoyalty(h.technical.score, signals.signals, history, now_ms, options.loyalty);
  }
  h.sources_ms = sources_ms;
  if (options.record) DP_RETURN_IF_ERROR(RecordAssessment(store, h, now_ms));
  return h;
}

HealthSnapshot SnapshotOf(const CustomerHealth& h, std::int64_t now_ms) {
  HealthSnapshot snap;
  snap.customer_id = h.technical.customer.id;
  snap.day_ms = FloorTo(now_ms, kDayMs);
  snap.tps = h.technical.score.tps;
  snap.lhi = h.health.lhi;
  snap.coverage = h.health.coverage;
  snap.risk = scoring::RiskName(h.health.risk);
  return snap;
}

Status RecordAssessment(Store& store, CustomerHealth& h, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(h.risk_change,
                      store.RecordHealth(SnapshotOf(h, now_ms), h.health.risk_reasons, now_ms));
  return Status::Ok();
}

bool RanksBefore(const CustomerHealth& a, const CustomerHealth& b) {
  if (RiskRank(a.health.risk) != RiskRank(b.health.risk)) {
    return RiskRank(a.health.risk) < RiskRank(b.health.risk);
  }
  return a.health.lhi.value_or(101) < b.health.lhi.value_or(101);
}

Result<std::vector<CustomerHealth>> AssessAllCustomers(Store& store, const HealthOptions& options,
                                                       std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(options.loyalty.Validate());
  DP_ASSIGN_OR_RETURN(auto scores, ScoreAllCustomers(store, options.policy, now_ms));
  std::vector<CustomerHealth> book;
  book.reserve(scores.size());
  for (CustomerScore& cs : scores) {
    if (options.stop != nullptr && options.stop->load()) {
      return Status(Code::kUnavailable, "stopping: the assessment was left unfinished");
    }
    DP_ASSIGN_OR_RETURN(CustomerHealth h, AssessCustomer(store, std::move(cs), options, now_ms));
    book.push_back(std::move(h));
  }
  std::stable_sort(book.begin(), book.end(), RanksBefore);
  return book;
}

std::string FormatHealthTable(const std::vector<CustomerHealth>& book) {
  std::string s =
      fmt::format("{:<24} {:<4} {:>6} {:>6} {:>8} {:>7} {:<7} {:<44} {}\n", "CUSTOMER", "TIER",
                  "TPS", "LHI", "COVERAGE", "30D", "RISK", "REASON", "TOP DRIVER");
  for (const CustomerHealth& c : book) {
    const scoring::LoyaltyHealth& h = c.health;
    const std::string trend = h.lhi_trend.change_30d
                                  ? fmt::format("{:+.1f}", *h.lhi_trend.change_30d)
                                  : std::string("n/a");
    s += fmt::format("{:<24} {:<4} {:>6} {:>6} {:>7.0f}% {:>7} {:<7} {:<44} {}\n",
                     Clip(c.technical.customer.name, 24),
                     c.contract ? std::string(1, c.contract->tier) : std::string("-"),
                     Cell(c.technical.score.tps), Cell(h.lhi), h.coverage * 100, trend,
                     scoring::RiskName(h.risk),
                     h.risk_reasons.empty() ? std::string("-") : Clip(h.risk_reasons.front(), 44),
                     h.drivers.empty() ? std::string("-") : Clip(h.drivers.front().text, 90));
  }
  return s;
}

nlohmann::json CustomerHealthToJson(const CustomerHealth& c) {
  const scoring::LoyaltyHealth& h = c.health;
  nlohmann::json j;
  j["id"] = c.technical.customer.id;
  j["customer"] = c.technical.customer.name;
  j["endpoints"] = c.technical.window.endpoints;
  if (c.contract) {
    j["contract"] = {{"tier", std::string(1, c.contract->tier)},
                     {"annual_value", c.contract->annual_value},
                     {"renewal_unix_ms", c.contract->renewal_ms},
                     {"renewal_status", scoring::RenewalStatusName(c.contract->renewal_status)}};
  } else {
    j["contract"] = nullptr;
  }
  j["tps"] = Num(c.technical.score.tps);
  j["tps_coverage"] = std::round(c.technical.score.coverage * 1000) / 1000;
  const scoring::TechScore& t = c.technical.score;
  j["components"] = {{"boot", ComponentToJson(t.boot)},
                     {"latency", ComponentToJson(t.latency)},
                     {"peripherals", ComponentToJson(t.peripherals)},
                     {"stability", ComponentToJson(t.stability)}};
  j["lhi"] = Num(h.lhi);
  j["coverage"] = std::round(h.coverage * 1000) / 1000;
  j["risk"] = scoring::RiskName(h.risk);
  j["risk_reasons"] = h.risk_reasons;
  j["factors"] = nlohmann::json::array();
  for (const scoring::FactorScore& f : h.factors) {
    nlohmann::json fj = {{"factor", scoring::FactorName(f.factor)},
                         {"score", Num(f.score)},
                         {"weight", f.weight},
                         {"stale", f.stale}};
    if (f.override_applied) {
      fj["override"] = {{"value", f.override_applied->value},
                        {"reason", f.override_applied->reason},
                        {"expires_unix_ms", f.override_applied->expires_ms}};
    }
    fj["inputs"] = nlohmann::json::array();
    for (const scoring::Input& in : f.inputs) {
      fj["inputs"].push_back({{"name", in.name},
                              {"score", Num(in.score)},
                              {"stale", in.stale},
                              {"detail", in.detail}});
    }
    j["factors"].push_back(std::move(fj));
  }
  j["drivers"] = nlohmann::json::array();
  for (const scoring::Driver& d : h.drivers) {
    j["drivers"].push_back(
        {{"factor", scoring::FactorName(d.factor)},
         {"text", d.text},
         {"lhi_points", std::round(d.lhi_points * 10) / 10},
         {"factor_points", std::round(d.factor_points * 10) / 10},
         {"where", d.where.empty() ? nlohmann::json() : nlohmann::json(d.where)}});
  }
  // When the technical drivers' sites, pools and protocols were read (at
  // most the source cache's age before the assessment); null: not read.
  j["sources_unix_ms"] = c.sources_ms > 0 ? nlohmann::json(c.sources_ms) : nlohmann::json();
  j["gaps"] = h.gaps;
  j["trends"] = {{"tps", TrendJson(h.tps_trend)}, {"lhi", TrendJson(h.lhi_trend)}};
  if (c.risk_change) {
    j["risk_change"] = {{"from", c.risk_change->from_risk}, {"to", c.risk_change->to_risk}};
  }
  return j;
}

nlohmann::json HealthToJson(const std::vector<CustomerHealth>& book, const HealthOptions& options,
                            std::int64_t now_ms) {
  nlohmann::json out;
  out["score_version"] = "lhi-v1";
  out["assessed_unix_ms"] = now_ms;
  out["tps_window_days"] = options.policy.window_days;
  out["customers"] = nlohmann::json::array();
  for (const CustomerHealth& c : book) out["customers"].push_back(CustomerHealthToJson(c));
  return out;
}

}  // namespace deskpulse::collector
