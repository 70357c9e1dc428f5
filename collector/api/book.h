#pragma once

// The fleet's health book, kept current in the background: every customer
// assessed on a thread of its own (its own store connection), so the
// customers list answers from memory in microseconds however large the fleet,
// and the day's snapshots and risk changes are recorded by serve itself.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
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
  HealthBook(std::unique_ptr<Store> store, HealthOptions options,
             std::chrono::milliseconds interval);
  ~HealthBook();
  HealthBook(const HealthBook&) = delete;
  HealthBook& operator=(const HealthBook&) = delete;

  void Start();
  void Stop();
  /// Assess again soon (after an import or an override).
  void RequestRefresh();
  /// The latest book; null until the first assessment is done.
  std::shared_ptr<const Book> current() const;
  /// Blocks until a book at least as new as `after_ms` exists (tests, start-up).
  bool WaitFor(std::int64_t after_ms, std::chrono::milliseconds timeout);

 private:
  void Run();

  std::unique_ptr<Store> store_;
  const HealthOptions options_;
  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Book> book_;
  bool refresh_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace deskpulse::collector::api
