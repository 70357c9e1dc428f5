#pragma once

// The vendor's book of customers: each one's technical performance score
// combined with its business signals into loyalty health, churn risk and
// drivers (docs/scoring.md, "Loyalty health"), with trends from the daily
// snapshots. Assessing records today's snapshot and any change of risk.

#include <cstdint>
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

struct HealthOptions {
  scoring::Policy policy;
  scoring::LoyaltyPolicy loyalty;
  bool record = true;  // store today's snapshots and risk changes
  /// Name the site, pool or protocol technical drivers come from (reads
  /// each customer's endpoint rollups).
  bool loss_sources = true;
};

/// Assesses every customer at `now_ms`: at-risk first (risk, then LHI
/// lowest first, customers without data last).
Result<std::vector<CustomerHealth>> AssessAllCustomers(Store& store, const HealthOptions& options,
                                                       std::int64_t now_ms);

/// One customer's assessment at `now_ms` from its score (recording the
/// day's snapshot when options.record).
Result<CustomerHealth> AssessCustomer(Store& store, CustomerScore technical,
                                      const HealthOptions& options, std::int64_t now_ms);

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
