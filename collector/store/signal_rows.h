#pragma once

// Business signals as imported (docs/signals.md): the rows of one import of
// one kind, each naming its customer and where in the file it came from. The
// store keeps them by natural key, so a later row with the same key replaces
// the earlier one.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/scoring/loyalty.h"

namespace deskpulse::collector {

enum class SignalKind { kSurveys, kTickets, kContracts, kReviews };
inline constexpr SignalKind kSignalKinds[] = {SignalKind::kSurveys, SignalKind::kTickets,
                                              SignalKind::kContracts, SignalKind::kReviews};
const char* SignalKindName(SignalKind k);
std::optional<SignalKind> ParseSignalKind(std::string_view s);

/// A contract's service-level targets, where it sets them (SLA reports).
struct SlaTargets {
  std::optional<double> boot_s, boot_pct;  // boot_pct% of boots within boot_s
  std::optional<double> rtt_ms, rtt_pct;   // RTT p95 within rtt_ms in rtt_pct% of session-hours
  std::optional<double> peripherals_pct;
  std::optional<double> availability_pct;
  bool operator==(const SlaTargets&) const = default;
};

struct SignalRow {
  std::string where;  // "line 12" or "record 3": for errors
  std::string customer;
};
/// Key: (customer, date).
struct SurveyRow : SignalRow {
  scoring::Survey survey;
};
/// Key: (customer, ticket id).
struct TicketRow : SignalRow {
  scoring::Ticket ticket;
};
/// Key: customer (one contract each).
struct ContractRow : SignalRow {
  scoring::Contract contract;
  SlaTargets sla;
};
/// Key: (customer, date).
struct ReviewRow : SignalRow {
  std::int64_t date_ms = 0;
};

/// One import: rows of one kind, all stored or none.
struct SignalBatch {
  SignalKind kind = SignalKind::kSurveys;
  std::string content_sha256;  // of the bytes imported: the same file again is a no-op
  std::vector<SurveyRow> surveys;
  std::vector<TicketRow> tickets;
  std::vector<ContractRow> contracts;
  std::vector<ReviewRow> reviews;
  std::size_t size() const {
    return surveys.size() + tickets.size() + contracts.size() + reviews.size();
  }
};

struct ImportResult {
  bool already_imported = false;  // these exact bytes of this kind were imported before
  std::size_t rows = 0;           // rows stored (inserted or replacing one with their key)
};

/// An import as the store logged it.
struct ImportRecord {
  SignalKind kind = SignalKind::kSurveys;
  std::string content_sha256;
  std::int64_t rows = 0;
  std::int64_t imported_ms = 0;
  bool operator==(const ImportRecord&) const = default;
};

/// One customer's loyalty health on one day, as the daily snapshot keeps it.
struct HealthSnapshot {
  std::int64_t customer_id = 0;
  std::int64_t day_ms = 0;  // 00:00 UTC
  std::optional<double> tps, lhi;
  double coverage = 0;
  std::string risk;  // scoring::RiskName
  bool operator==(const HealthSnapshot&) const = default;
};

/// A snapshot to record, with the reasons its risk holds for (kept with a
/// risk change).
struct HealthRecord {
  HealthSnapshot snapshot;
  std::vector<std::string> reasons;
};

/// A change of a customer's churn risk, with the reasons that held then.
struct RiskEvent {
  std::int64_t customer_id = 0;
  std::int64_t at_ms = 0;
  std::string from_risk, to_risk;
  std::vector<std::string> reasons;
  bool operator==(const RiskEvent&) const = default;
};

/// One customer's signals as the store holds them, with its contract's SLA targets.
struct CustomerSignals {
  scoring::BusinessSignals signals;
  SlaTargets sla;
};

}  // namespace deskpulse::collector
