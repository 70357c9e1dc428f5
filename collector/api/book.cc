#include "collector/api/book.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "collector/api/server.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::api {

HealthBook::HealthBook(std::unique_ptr<Store> store, const HealthOptions& options,
                       std::chrono::milliseconds interval, std::chrono::milliseconds record_every)
    : store_(std::move(store)),
      options_([&] {
        HealthOptions o = options;
        o.record = false;  // Record() decides
        return o;
      }()),
      interval_(interval),
      record_every_(record_every) {}

void HealthBook::Record(Book& book) {
  const std::int64_t now = book.assessed_ms;
  const bool all = now - recorded_ms_ >= record_every_.count() ||
                   FloorTo(now, kDayMs) != FloorTo(recorded_ms_, kDayMs);
  std::size_t failed = 0;
  Status first;
  for (CustomerHealth& c : book.customers) {
    const std::int64_t id = c.technical.customer.id;
    const std::string risk = scoring::RiskName(c.health.risk);
    const auto last = recorded_.find(id);
    if (!all && last != recorded_.end() && last->second == risk) continue;
    if (Status s = RecordAssessment(*store_, c, now); !s.ok()) {
      if (failed++ == 0) first = s;
      continue;
    }
    recorded_[id] = risk;
    if (c.risk_change) {
      spdlog::info("health: {} churn risk {} → {}", EscapeForLog(c.technical.customer.name),
                   c.risk_change->from_risk, c.risk_change->to_risk);
    }
  }
  if (failed > 0) {
    spdlog::error("health: recording {} of {} snapshots failed: {}", failed, book.customers.size(),
                  first.message());
  } else if (all) {
    recorded_ms_ = now;
  }
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
    sources_.budget = std::max<std::size_t>(1, sources_.entries.size() / 10);
    options_.source_cache = &sources_;
    auto assessed = AssessAllCustomers(*store_, options_, now);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    if (assessed.ok()) {
      // Slow against its interval is worth a warning; otherwise a debug line.
      spdlog::log(took > interval_ / 2 ? spdlog::level::warn : spdlog::level::debug,
                  "health: assessed {} customers in {} ms (every {} ms)", assessed->size(),
                  took.count(), interval_.count());
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
