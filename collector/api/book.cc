#include "collector/api/book.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "collector/api/server.h"
#include "deskpulse/common/logging.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector::api {

HealthBook::HealthBook(std::unique_ptr<Store> store, const HealthOptions& options,
                       std::chrono::milliseconds interval, std::chrono::milliseconds record_every,
                       Recorded recorded)
    : store_(std::move(store)),
      options_([&] {
        HealthOptions o = options;
        o.record = false;  // Record() decides
        return o;
      }()),
      interval_(interval),
      record_every_(record_every),
      recorded_hook_(std::move(recorded)) {}

void HealthBook::Record(Book& book) {
  const std::int64_t now = book.assessed_ms;
  const bool all = now - recorded_ms_ >= record_every_.count() ||
                   FloorTo(now, kDayMs) != FloorTo(recorded_ms_, kDayMs);
  std::vector<CustomerHealth*> due;
  std::vector<HealthRecord> records;
  for (CustomerHealth& c : book.customers) {
    const auto last = recorded_.find(c.technical.customer.id);
    if (!all && last != recorded_.end() && last->second == scoring::RiskName(c.health.risk)) {
      continue;
    }
    due.push_back(&c);
    records.push_back({.snapshot = SnapshotOf(c, now), .reasons = c.health.risk_reasons});
  }
  if (records.empty()) return;
  // One transaction for the round: the store's write lock is taken once,
  // not once per customer between ingest's commits.
  auto events = store_->RecordHealthBatch(records, now);
  if (!events.ok()) {
    spdlog::error("health: recording {} snapshots failed: {}", records.size(),
                  events.status().message());
    return;
  }
  for (std::size_t i = 0; i < due.size(); ++i) {
    CustomerHealth& c = *due[i];
    c.risk_change = std::move((*events)[i]);
    recorded_[c.technical.customer.id] = records[i].snapshot.risk;
    if (c.risk_change) {
      spdlog::info("health: {} churn risk {} → {}", EscapeForLog(c.technical.customer.name),
                   c.risk_change->from_risk, c.risk_change->to_risk);
    }
  }
  if (all) recorded_ms_ = now;
  if (recorded_hook_) recorded_hook_(*store_, book.customers);
}

HealthBook::~HealthBook() { Stop(); }

void HealthBook::Start() {
  thread_ = std::thread([this] { Run(); });
}

void HealthBook::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stopping_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HealthBook::RequestRefresh() {
  {
    std::lock_guard lock(mu_);
    refresh_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<const Book> HealthBook::current() const {
  std::lock_guard lock(mu_);
  return book_;
}

void HealthBook::Run() {
  LowerThreadPriority(kBookNice, "the health book");
  for (;;) {
    const std::int64_t now = NowMs();
    const auto t0 = std::chrono::steady_clock::now();
    // A tenth of the customers' stale loss sources a round: each is read
    // again every ten rounds or so, never all at once after the first.
    std::size_t budget = std::max<std::size_t>(1, sources_.size() / 10);
    HealthOptions round = options_;
    round.source_cache = &sources_;
    round.source_budget = &budget;
    round.stop = &stopping_;
    auto assessed = AssessAllCustomers(*store_, round, now);
    if (stopping_) return;
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    if (assessed.ok()) {
      // Slow against its interval is worth a warning; otherwise a debug line.
      spdlog::log(took > interval_ / 2 ? spdlog::level::warn : spdlog::level::debug,
                  "health: assessed {} in {} ms (every {} ms)",
                  Counted(static_cast<std::int64_t>(assessed->size()), "customer"), took.count(),
                  interval_.count());
    }
    {
      std::unique_lock lock(mu_);
      if (assessed.ok()) {
        auto book = std::make_shared<Book>();
        book->assessed_ms = now;
        book->customers = std::move(assessed).value();
        lock.unlock();
        Record(*book);
        lock.lock();
        book_ = std::move(book);
      } else {
        spdlog::error("health: assessing the customers failed: {}; the API keeps the book of {}",
                      assessed.status().message(), book_ ? "the last assessment" : "nothing");
      }
      cv_.notify_all();
      cv_.wait_for(lock, interval_, [&] { return stop_ || refresh_; });
      if (stop_) return;
      refresh_ = false;
    }
  }
}

}  // namespace deskpulse::collector::api
