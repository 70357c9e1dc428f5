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

void Writer::Start() {
  thread_ = std::thread([this] { Run(); });
  checkpointer_ = std::thread([this] { RunCheckpointer(); });
}

// PASSIVE checkpoints on a connection of their own copy committed WAL frames
// into the database without taking the write lock, so commits (and acks) do
// not wait for them.
void Writer::RunCheckpointer() {
  auto db = Database::Open(store_->path(), false);
  if (!db.ok()) {
    spdlog::warn("checkpointer: {}; SQLite's automatic checkpoints remain",
                 db.status().message());
    return;
  }
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_checkpoint_.wait_for(lock, options_.checkpoint_interval, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    const Status s = (*db)->Exec("PRAGMA wal_checkpoint(PASSIVE);");
    lock.lock();
    if (s.ok()) {
      stats_.checkpoints += 1;
    } else {
      spdlog::debug("checkpoint: {}", s.message());
    }
  }
}

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
  cv_checkpoint_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
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
  const auto t0 = std::chrono::steady_clock::now();
  const Status s = store_->CommitBatches(writes, NowMs(), &pending_rollups_);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
  queued_reports_ -= n;
  if (us > 40'000) {
    spdlog::debug("slow commit: {} reports in {} batches took {:.1f} ms", n, writes.size(),
                  static_cast<double>(us) / 1000);
  }
  {
    std::lock_guard lock(mu_);
    if (s.ok()) {
      stats_.commits += 1;
      stats_.commit_us.AddValue(static_cast<std::uint64_t>(us));
      stats_.group_reports.AddValue(n);
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
  auto next_round = Clock::now() + options_.rollup_flush_interval;
  int flush_cursor = -1;  // the next slice of this flush round; -1 between rounds
  auto next_retention = Clock::now();
  for (;;) {
    std::deque<HelloJob> hellos;
    std::vector<BatchJob> group;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      const auto wake = flush_cursor >= 0 ? Clock::now() : next_round;
      cv_.wait_until(lock, wake,
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
    if (!hellos.empty()) {
      std::vector<deskpulse::v1::Hello> batch;
      batch.reserve(hellos.size());
      for (auto& h : hellos) batch.push_back(std::move(h.hello));
      auto results = store_->AuthenticateAndRegister(batch, NowMs());
      for (std::size_t i = 0; i < hellos.size(); ++i) hellos[i].done(std::move(results[i]));
    }
    if (!group.empty()) CommitGroup(&group);

    // Rollups: one slice per turn, so commits wait at most one short transaction.
    const auto now = Clock::now();
    if (flush_cursor < 0 && now >= next_round) flush_cursor = 0;
    if (flush_cursor >= 0 || stop) {
      const int first = stop ? 0 : flush_cursor;
      const int last = stop ? kRollupSlices - 1 : flush_cursor;
      for (int slice = first; slice <= last; ++slice) {
        const auto t0 = Clock::now();
        if (Status s = store_->FlushRollupSlice(&pending_rollups_, slice); !s.ok()) {
          // The raw rows are committed; the rollups catch up from them later or at start.
          spdlog::error("rollup flush failed (will retry): {}", s.ToString());
        }
        std::lock_guard lock(mu_);
        stats_.flush_us.AddValue(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
      }
      flush_cursor = stop || flush_cursor + 1 >= kRollupSlices ? -1 : flush_cursor + 1;
      if (flush_cursor < 0) next_round = Clock::now() + options_.rollup_flush_interval;
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
