#pragma once

// The fleet's health book, kept current in the background: every customer
// assessed on a thread of its own (its own store connection), so the
// customers list answers from memory in microseconds however large the fleet,
// and the day's snapshots and risk changes are recorded by serve itself.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collector/reports/health.h"
#include "collector/store/store.h"

namespace deskpulse::collector::api {

struct Book {
  std::int64_t assessed_ms = 0;
  std::vector<CustomerHealth> customers;  // ranked (RanksBefore)
};

class HealthBook {
 public:
  /// `store` is the book's own (opened by the caller, used on its thread only).
  /// Snapshots are recorded at most every `record_every` (and at once on a
  /// change of risk), a round's in one transaction: the ingest writer waits
  /// behind it once, not once per customer.
  /// Called on the book's thread with its store after each round's records
  /// (risk changes are in each customer's `risk_change`): webhooks' events.
  using Recorded = std::function<void(Store& store, const std::vector<CustomerHealth>& customers)>;
  HealthBook(std::unique_ptr<Store> store, const HealthOptions& options,
             std::chrono::milliseconds interval,
             std::chrono::milliseconds record_every = std::chrono::hours(1),
             Recorded recorded = nullptr);
  ~HealthBook();
  HealthBook(const HealthBook&) = delete;
  HealthBook& operator=(const HealthBook&) = delete;

  void Start();
  void Stop();
  /// Assess again soon (after an import or an override).
  void RequestRefresh();
  /// The latest book; null until the first assessment is done.
  std::shared_ptr<const Book> current() const;
  /// The customers' loss sources, as the book last read them: shared with
  /// the API's detail calls (thread-safe), so neither reads a customer's
  /// endpoint rollups again while the other's reading is fresh.
  SourceCache& sources() { return sources_; }

 private:
  void Run();

  /// Records the snapshots of the customers that need it: all of them once
  /// `record_every` has passed or the day has changed, else those whose risk
  /// differs from the one last recorded (a risk change is an event at once).
  void Record(Book& book);

  std::unique_ptr<Store> store_;
  SourceCache sources_;
  std::int64_t recorded_ms_ = 0;                  // when every customer was last recorded
  std::map<std::int64_t, std::string> recorded_;  // customer id → risk last recorded
  const HealthOptions options_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds record_every_;
  Recorded recorded_hook_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Book> book_;
  bool refresh_ = false;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};  // stop_, read by a round between customers
  std::thread thread_;
};

}  // namespace deskpulse::collector::api
