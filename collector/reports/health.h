#pragma once

// The vendor's book of customers: each one's technical performance score
// combined with its business signals into loyalty health, churn risk and
// drivers (docs/scoring.md, "Loyalty health"), with trends from the daily
// snapshots. Assessing records today's snapshot and any change of risk.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "collector/reports/scores.h"
#include "collector/scoring/loyalty.h"
#include "collector/store/store.h"

namespace deskpulse::collector {

struct CustomerHealth {
  CustomerScore technical;  // the TPS over the policy's window, with its drivers
  std::optional<scoring::Contract> contract;
  scoring::LoyaltyHealth health;
  std::optional<RiskEvent> risk_change;  // recorded by this assessment
};

/// Where each customer's technical losses came from, as last computed:
/// reading every customer's endpoint rollups each minute would cost the
/// collector most of a core at 100,000 endpoints, so the health book keeps
/// them and recomputes a share of the stalest each round.
struct SourceCache {
  struct Entry {
    std::int64_t computed_ms = 0;
    std::optional<scoring::LossSource> boot, latency, stability;
  };
  std::map<std::int64_t, Entry> entries;  // by customer id
  std::int64_t max_age_ms = std::int64_t{10} * 60'000;
  /// Entries older than max_age_ms recomputed this round, at most (a
  /// customer without one is always computed).
  std::size_t budget = SIZE_MAX;
};

struct HealthOptions {
  scoring::Policy policy;
  scoring::LoyaltyPolicy loyalty;
  bool record = true;  // store today's snapshots and risk changes
  /// Name the site, pool or protocol technical drivers come from (reads the
  /// customer's endpoint rollups): for every customer, or only where the top
  /// driver is technical (what a list of top drivers needs: splitting a
  /// driver only makes it smaller, so it cannot make another one the top).
  enum class Sources { kNone, kWhenTopIsTechnical, kAll };
  Sources loss_sources = Sources::kAll;
  /// With kWhenTopIsTechnical: sources reused from here while fresh enough.
  SourceCache* source_cache = nullptr;
};

/// Assesses every customer at `now_ms`: at-risk first (risk, then LHI
/// lowest first, customers without data last).
Result<std::vector<CustomerHealth>> AssessAllCustomers(Store& store, const HealthOptions& options,
                                                       std::int64_t now_ms);

/// One customer's assessment at `now_ms` from its score (recording the
/// day's snapshot when options.record).
Result<CustomerHealth> AssessCustomer(Store& store, CustomerScore technical,
                                      const HealthOptions& options, std::int64_t now_ms);

/// The day's snapshot of an assessment made at `now_ms`.
HealthSnapshot SnapshotOf(const CustomerHealth& h, std::int64_t now_ms);
/// Records it (replacing the day's earlier one) and any change of risk,
/// which it sets in `h.risk_change`.
Status RecordAssessment(Store& store, CustomerHealth& h, std::int64_t now_ms);

/// The book's order: risk (high first), then LHI lowest first, no data last.
bool RanksBefore(const CustomerHealth& a, const CustomerHealth& b);

/// A fixed-width table for a terminal: customer, tier, TPS, LHI, coverage,
/// 30-day LHI trend, risk with its first reason, top driver.
std::string FormatHealthTable(const std::vector<CustomerHealth>& book);
/// One customer: id, name, contract, TPS with its components, LHI with its
/// factors, coverage, risk with reasons, drivers, gaps and trends.
nlohmann::json CustomerHealthToJson(const CustomerHealth& c);
nlohmann::json HealthToJson(const std::vector<CustomerHealth>& book, const HealthOptions& options,
                            std::int64_t now_ms);

}  // namespace deskpulse::collector
