#include "collector/api/book.h"

#include <spdlog/spdlog.h>

namespace deskpulse::collector::api {
namespace {

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

HealthBook::HealthBook(std::unique_ptr<Store> store, HealthOptions options,
                       std::chrono::milliseconds interval)
    : store_(std::move(store)), options_(options), interval_(interval) {}

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

bool HealthBook::WaitFor(std::int64_t after_ms, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return stop_ || (book_ && book_->assessed_ms >= after_ms);
  }) && !stop_;
}

void HealthBook::Run() {
  for (;;) {
    const std::int64_t now = NowMs();
    auto assessed = AssessAllCustomers(*store_, options_, now);
    {
      std::unique_lock lock(mu_);
      if (assessed.ok()) {
        auto book = std::make_shared<Book>();
        book->assessed_ms = now;
        book->customers = std::move(assessed).value();
        for (const CustomerHealth& c : book->customers) {
          if (c.risk_change) {
            spdlog::info("health: {} churn risk {} → {}", c.technical.customer.name,
                         c.risk_change->from_risk, c.risk_change->to_risk);
          }
        }
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
