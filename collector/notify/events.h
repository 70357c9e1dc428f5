#pragma once

// What the collector tells webhooks (docs/metrics.md, "Webhooks"): a
// customer's churn risk rising, and an alert-worthy condition starting. Pure:
// the payloads, their idempotency keys, signatures, backoff and the
// conditions' state machine, tested with plain values.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "collector/reports/health.h"
#include "collector/store/store.h"
#include "deskpulse/common/status.h"

namespace deskpulse::collector::notify {

inline constexpr std::string_view kRiskRaised = "churn_risk.raised";
inline constexpr std::string_view kConditionStarted = "condition.started";

/// One configured webhook (`[webhooks.NAME]` of serve's config).
struct WebhookOptions {
  std::string name;
  std::string url;
  std::string secret;            // the HMAC-SHA256 key, from secret_file
  std::set<std::string> events;  // the event types it takes; empty: all
  std::string ca_file;           // trust these CAs instead of the system's
  std::chrono::milliseconds timeout{10'000};
  std::chrono::milliseconds retry_initial{1'000};
  std::chrono::milliseconds retry_max{300'000};
  std::chrono::milliseconds give_up_after{86'400'000};
};

/// Checks a webhook's options: an http(s) URL with a host; plain http only
/// to a loopback host unless `allow_plaintext` (the payload names customers
/// and the signature does not hide it); a secret of at least 16 bytes.
Status CheckWebhook(const WebhookOptions& w, bool allow_plaintext);

/// An event, ready to queue: the payload carries its key as "id".
struct Event {  // NOLINT(bugprone-exception-escape): nlohmann::json, as api::Response
  std::string type;
  std::string key;  // the idempotency key
  nlohmann::json payload;
};

/// The event of a customer whose recorded churn risk rose (low → medium,
/// medium → high, unknown → medium...); none when it fell or stayed, or
/// when a customer's first data put it at low.
std::optional<Event> RiskRaised(const CustomerHealth& c);

/// One delivery per webhook that takes the event's type.
std::vector<WebhookDelivery> DeliveriesFor(const Event& e,
                                           const std::vector<WebhookOptions>& webhooks);

/// "t=<unix s>,v1=<hex HMAC-SHA256(secret, "<unix s>." + body)>": the
/// X-DeskPulse-Signature header (the time lets receivers refuse replays).
std::string Sign(std::string_view secret, std::int64_t unix_s, std::string_view body);

/// How long to wait after the `attempts`-th failed attempt: doubling from
/// retry_initial up to retry_max, with full jitter (a random half to all of it).
std::chrono::milliseconds Backoff(const WebhookOptions& w, std::int64_t attempts,
                                  std::mt19937_64& rng);

/// What the conditions are judged on: the ingest side's cumulative counters.
struct ConditionInputs {
  std::uint64_t commit_failures = 0;
  std::uint64_t streams_behind_agents = 0;
  std::optional<std::uint64_t> agent_dropped_reports;  // none until an agent reported
  std::uint64_t acks = 0;                              // batches acknowledged
  std::uint64_t acks_within_bar = 0;                   // of which within 50 ms
};

/// Alert-worthy conditions on one collector, judged on what changed between
/// two checks: store commits failing, acknowledged reports the store lost,
/// agents dropping spooled reports, ack p99 above 50 ms (at least 100 acks,
/// fewer than 99% within the bar). A condition starts when it first holds,
/// and ends once it has not held for `quiet`: a flapping one is one event.
class ConditionTracker {
 public:
  explicit ConditionTracker(std::chrono::milliseconds quiet = std::chrono::minutes(5))
      : quiet_ms_(quiet.count()) {}
  /// The events of the conditions that started since the last call; the
  /// first call only takes the baseline. `collector` names this collector.
  std::vector<Event> Update(const ConditionInputs& in, std::int64_t now_ms,
                            const std::string& collector);
  /// The conditions in force, by name.
  std::vector<std::string> active() const;

 private:
  struct State {
    bool active = false;
    std::int64_t last_held_ms = 0;
  };
  void Judge(std::vector<Event>* out, const char* name, bool holds, std::string summary,
             std::int64_t now_ms, const std::string& collector);

  std::int64_t quiet_ms_;
  std::optional<ConditionInputs> last_;
  std::map<std::string, State> states_;
};

}  // namespace deskpulse::collector::notify
