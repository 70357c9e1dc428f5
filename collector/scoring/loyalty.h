#pragma once

// The loyalty health index (LHI), churn risk and their drivers for one
// customer: the technical performance score combined with the business
// signals the vendor imports (docs/scoring.md, "Loyalty health"). Pure: the
// caller reads the signals, the TPS and the daily history from the store.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/scoring/score.h"
#include "deskpulse/common/status.h"

namespace deskpulse::scoring {

/// One survey round: any of NPS (-100..100), CES and VES (1..7).
struct Survey {
  std::int64_t date_ms = 0;
  std::optional<double> nps, ces, ves;
  std::int64_t respondents = 0;
  bool operator==(const Survey&) const = default;
};

/// One support ticket; the times absent while it waits for them.
struct Ticket {
  std::string id;
  std::int64_t opened_ms = 0;
  std::optional<std::int64_t> first_response_ms;
  std::optional<std::int64_t> resolved_ms;
  std::string severity;
  bool operator==(const Ticket&) const = default;
};

enum class RenewalStatus { kPending, kRenewed, kCancelled };
const char* RenewalStatusName(RenewalStatus s);
std::optional<RenewalStatus> ParseRenewalStatus(std::string_view s);

struct Contract {
  char tier = 'C';  // S, A, B or C by annual spend
  double annual_value = 0;
  std::int64_t start_ms = 0;
  std::int64_t renewal_ms = 0;
  RenewalStatus renewal_status = RenewalStatus::kPending;
  /// Savings the customer expected and has realised, per year, when known.
  std::optional<double> expected_savings, realised_savings;
  bool operator==(const Contract&) const = default;
};

/// The five loyalty factors, in the order of their weights.
enum class Factor { kTechnical, kValue, kService, kBrand, kRelationship };
inline constexpr Factor kFactors[] = {Factor::kTechnical, Factor::kValue, Factor::kService,
                                      Factor::kBrand, Factor::kRelationship};
const char* FactorName(Factor f);
std::optional<Factor> ParseFactor(std::string_view s);

/// An account manager's value for a business factor, until it expires.
struct Override {
  Factor factor = Factor::kValue;
  double value = 0;  // 0..100
  std::string reason;
  std::int64_t expires_ms = 0;
  bool operator==(const Override&) const = default;
};

struct BusinessSignals {
  std::vector<Survey> surveys;
  std::vector<Ticket> tickets;
  std::optional<Contract> contract;
  std::vector<std::int64_t> review_dates_ms;  // business reviews held
  std::vector<Override> overrides;
  bool operator==(const BusinessSignals&) const = default;
};

/// One day of a customer's history, as the daily snapshot keeps it.
struct DaySnapshot {
  std::int64_t day_ms = 0;  // 00:00 UTC
  std::optional<double> tps, lhi;
};

/// Weights, thresholds and ages (docs/scoring.md); the defaults are the published ones.
struct LoyaltyPolicy {
  double weight_technical = 0.32, weight_value = 0.28, weight_service = 0.22, weight_brand = 0.10,
         weight_relationship = 0.08;
  int survey_max_age_days = 180;  // older: the factors it feeds count as missing
  int review_max_age_days = 365;
  int ticket_window_days = 90;  // tickets opened in the last N days make Service
  double first_response_good_min = 30, first_response_poor_min = 240;
  double resolution_good_h = 2, resolution_poor_h = 24;
  double survey_scale_good = 5, survey_scale_poor = 1;  // CES and VES, 1..7
  double savings_good_ratio = 1.0, savings_poor_ratio = 0.5;
  double review_good_days = 90, review_poor_days = 365;
  double renewal_overdue_poor_days = 90;
  // Churn risk.
  double high_nps_below = 20;
  double high_renewal_overdue_days = 90;
  double high_tps_fall_points = 10;  // over 30 days
  double high_lhi_below = 40;
  double medium_lhi_below = 60;

  Status Validate() const;
  double Weight(Factor f) const;
};

/// One input of a factor (first response, NPS, ...), scored 0..100.
struct Input {
  std::string name;
  std::optional<double> score;  // absent: no data, or only stale data
  bool stale = false;
  std::string detail;  // the figures behind it, or why it is missing
  /// Its weight within the factor: 1 for a business input (the factor is
  /// the mean), the policy's weight for a TPS component.
  double weight = 1;
  /// A TPS component's: the site, pool or protocol most of its loss comes from.
  std::optional<LossSource> source;
};

struct FactorScore {
  Factor factor = Factor::kTechnical;
  std::optional<double> score;
  double weight = 0;   // the policy's weight; renormalised over the factors with data
  bool stale = false;  // missing because its only inputs are too old
  std::optional<Override> override_applied;
  std::vector<Input> inputs;
};

enum class Risk { kUnknown, kLow, kMedium, kHigh };  // unknown: no data at all
const char* RiskName(Risk r);

/// What pulls a score down: what to fix, the points it costs, where it comes from.
struct Driver {
  Factor factor = Factor::kTechnical;
  std::string text;
  double lhi_points = 0;     // LHI points lost to it
  double factor_points = 0;  // points of its own factor (TPS for technical)
  /// Where it comes from, when it is one group's ("pool finance-vdi", "protocol ICA").
  std::string where;
};

struct Trend {
  std::optional<double> change_7d, change_30d;
  /// 13 weekly points, oldest first, the last one today; absent where no snapshot is.
  std::vector<std::optional<double>> weekly;
};

struct LoyaltyHealth {
  std::vector<FactorScore> factors;  // in kFactors order
  std::optional<double> lhi;
  double coverage = 0;  // share of the weight that had data, 0..1
  Risk risk = Risk::kUnknown;
  std::vector<std::string> risk_reasons;  // every rule that holds, the deciding ones first
  std::vector<Driver> drivers;            // costed, worst first
  std::vector<std::string> gaps;          // missing or stale factors and inputs, in words
  Trend tps_trend, lhi_trend;
};

/// Scores one customer at `now_ms`. `tech` is its TPS over the current
/// window; `history` its daily snapshots in any order (today's, if present,
/// is replaced by the figures computed here).
LoyaltyHealth ScoreLoyalty(const TechScore& tech, const BusinessSignals& signals,
                           const std::vector<DaySnapshot>& history, std::int64_t now_ms,
                           const LoyaltyPolicy& policy);

}  // namespace deskpulse::scoring
