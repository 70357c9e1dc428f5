#pragma once

// Delivers the webhooks' outbox (docs/metrics.md, "Webhooks") on a thread of
// its own, with its own store connection and libcurl's multi interface: every
// webhook has at most one request in flight, a slow or dead one holds only
// its own queue, and nothing here runs on the ingest threads. It also judges
// the alert-worthy conditions every check interval and queues their events.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "collector/notify/events.h"
#include "collector/store/store.h"
#include "deskpulse/common/status.h"

namespace deskpulse::collector::notify {

struct NotifierOptions {
  std::vector<WebhookOptions> webhooks;
  /// How often the conditions are judged.
  std::chrono::milliseconds check_interval{15'000};
  /// How often each webhook's queue is looked at when nothing woke it (the
  /// other collectors' events, retries another collector left).
  std::chrono::milliseconds poll_interval{5'000};
  /// Delivered and abandoned deliveries are forgotten after this.
  std::chrono::milliseconds keep_finished{std::chrono::hours(24 * 7)};
  std::string collector = "collector";  // this collector's name in condition events
};

/// Counters for /metrics and the log.
struct NotifierStats {
  std::uint64_t delivered = 0;
  std::uint64_t failed_attempts = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t queued = 0;  // events queued by this collector
};

class Notifier {
 public:
  using Inputs = std::function<std::optional<ConditionInputs>()>;
  /// `inputs` gives the ingest side's counters (called on the notifier's
  /// thread); null: no conditions are judged.
  Notifier(NotifierOptions options, StoreOptions store, Inputs inputs);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  /// Opens the store connection and starts the thread.
  Status Start();
  /// Joins the thread at once: a request in flight is dropped unrecorded and
  /// sent again once its lease runs out.
  void Stop();
  /// Deliveries were queued: look at the queues now. Thread-safe, until Stop.
  void Wake();
  /// Deliveries queued elsewhere (the health book's risk events). Thread-safe.
  void CountQueued(std::size_t n);
  NotifierStats stats() const;
  const NotifierOptions& options() const { return options_; }

  struct Impl;

 private:
  NotifierOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace deskpulse::collector::notify
