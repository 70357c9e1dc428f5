#include "collector/ingest/writer.h"

#include <spdlog/spdlog.h>

namespace deskpulse::collector {

Writer::Writer(std::unique_ptr<Store> store, WriterOptions options)
    : store_(std::move(store)), options_(options) {}

Writer::~Writer() { Stop(); }

std::int64_t Writer::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Writer::Start() { thread_ = std::thread([this] { Run(); }); }

void Writer::SubmitHello(deskpulse::v1::Hello hello, HelloDone done) {
  {
    std::lock_guard lock(mu_);
    hellos_.push_back({std::move(hello), std::move(done)});
  }
  cv_.notify_one();
}

void Writer::SubmitBatch(std::int64_t stream_id, std::vector<IncomingReport> reports,
                         BatchDone done) {
  const std::size_t n = reports.size();
  {
    std::lock_guard lock(mu_);
    BatchJob job;
    job.write.stream_id = stream_id;
    job.write.reports = std::move(reports);
    job.done = std::move(done);
    job.enqueued = std::chrono::steady_clock::now();
    batches_.push_back(std::move(job));
  }
  queued_reports_ += n;
  cv_.notify_one();
}

void Writer::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

WriterStats Writer::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Writer::CommitGroup(std::vector<BatchJob>* group) {
  std::vector<BatchWrite> writes;
  writes.reserve(group->size());
  for (auto& j : *group) writes.push_back(std::move(j.write));
  std::size_t n = 0;
  for (const auto& w : writes) n += w.reports.size();
  const Status s = store_->CommitBatches(writes, NowMs(), &pending_rollups_);
  queued_reports_ -= n;
  {
    std::lock_guard lock(mu_);
    if (s.ok()) {
      stats_.commits += 1;
      for (const auto& w : writes) {
        stats_.reports_stored += w.reports.size() - w.duplicates;
        stats_.duplicates += w.duplicates;
      }
    } else {
      stats_.commit_failures += 1;
    }
  }
  if (!s.ok()) spdlog::error("commit of {} reports failed: {}", n, s.ToString());
  for (std::size_t i = 0; i < group->size(); ++i) {
    if (s.ok()) {
      (*group)[i].done(BatchOutcome{writes[i].acked_through,
                                    writes[i].reports.size() - writes[i].duplicates,
                                    writes[i].duplicates});
    } else {
      (*group)[i].done(s);
    }
  }
}

void Writer::Run() {
  using Clock = std::chrono::steady_clock;
  auto next_flush = Clock::now() + options_.rollup_flush_interval;
  auto next_retention = Clock::now();
  for (;;) {
    std::deque<HelloJob> hellos;
    std::vector<BatchJob> group;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_flush,
                     [&] { return stopping_ || !hellos_.empty() || !batches_.empty(); });
      if (!batches_.empty() && !stopping_) {
        // Group commit: give the group a short window to fill, unless it is full.
        const auto until = batches_.front().enqueued + options_.group_commit_window;
        cv_.wait_until(lock, until, [&] {
          return stopping_ || !hellos_.empty() ||
                 queued_reports_.load() >= options_.group_commit_reports;
        });
      }
      hellos.swap(hellos_);
      std::size_t rows = 0;
      while (!batches_.empty() && rows < options_.group_commit_reports) {
        rows += batches_.front().write.reports.size();
        group.push_back(std::move(batches_.front()));
        batches_.pop_front();
      }
      stop = stopping_ && batches_.empty() && hellos_.empty();
    }
    for (auto& h : hellos) {
      auto customer = store_->Authenticate(h.hello.credential());
      if (!customer.ok()) {
        h.done(customer.status());
        continue;
      }
      h.done(store_->RegisterStream(customer->id, h.hello, NowMs()));
    }
    if (!group.empty()) CommitGroup(&group);

    const auto now = Clock::now();
    if (now >= next_flush || stop) {
      if (Status s = store_->FlushRollups(&pending_rollups_); !s.ok()) {
        // The raw rows are committed; the rollups catch up from them at the next flush or start.
        spdlog::error("rollup flush failed (will retry): {}", s.ToString());
      }
      next_flush = now + options_.rollup_flush_interval;
    }
    if (now >= next_retention && !stop) {
      if (Status s = store_->ApplyRetention(NowMs()); !s.ok()) {
        spdlog::warn("retention pass failed: {}", s.ToString());
      }
      next_retention = now + options_.retention_interval;
    }
    if (stop) break;
  }
}

}  // namespace deskpulse::collector
