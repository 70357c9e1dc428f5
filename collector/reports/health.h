#pragma once

// The vendor's book of customers: each one's technical performance score
// combined with its business signals into loyalty health, churn risk and
// drivers (docs/scoring.md, "Loyalty health"), with trends from the daily
// snapshots. Assessing records today's snapshot and any change of risk.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
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
  /// When the technical drivers' sources were read from the endpoint
  /// rollups (they may come from a SourceCache); 0: not read.
  std::int64_t sources_ms = 0;
};

/// Where each customer's technical losses came from, as last computed.
/// Reading a customer's endpoint rollups for them costs about 10 ms at 200
/// endpoints and 30 days, and every customer's each minute most of a core at
/// 100,000 endpoints: the health book and the API's customer detail share
/// one of these, and read a customer's again only once its entry is older
/// than max_age_ms. Thread-safe.
class SourceCache {
 public:
  struct Entry {
    std::int64_t computed_ms = 0;
    std::optional<scoring::LossSource> boot, latency, stability;
  };
  explicit SourceCache(std::int64_t max_age_ms = std::int64_t{10} * 60'000)
      : max_age_ms_(max_age_ms) {}
  std::int64_t max_age_ms() const { return max_age_ms_; }
  std::optional<Entry> Find(std::int64_t customer_id) const;
  void Put(std::int64_t customer_id, Entry entry);
  std::size_t size() const;

 private:
  const std::int64_t max_age_ms_;
  mutable std::mutex mu_;
  std::map<std::int64_t, Entry> entries_;  // by customer id
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
  /// Sources reused from here while fresh enough, and kept here when read.
  SourceCache* source_cache = nullptr;
  /// Stale entries read again in this assessment at most, counted down (then
  /// the stale ones are used); a customer without one is always read. Null:
  /// every stale one is read again.
  std::size_t* source_budget = nullptr;
  /// Checked between customers: once set, the assessment gives up
  /// (Unavailable), so a stopping collector does not wait for a whole round.
  const std::atomic<bool>* stop = nullptr;
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
