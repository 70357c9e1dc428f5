#include "collector/ingest/writer.h"

#include <spdlog/spdlog.h>

namespace deskpulse::collector {

const std::vector<double>& LatencyBucketsSeconds() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBuckets;
}

Writer::Writer(std::unique_ptr<IngestStore> store, WriterOptions options)
    : store_(std::move(store)), options_(options) {}

Writer::~Writer() { Stop(); }

std::int64_t Writer::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Writer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Writer::SubmitHello(deskpulse::v1::Hello hello, HelloDone done) {
  {
    std::lock_guard lock(mu_);
    hellos_.push_back({std::move(hello), std::move(done)});
  }
  cv_.notify_one();
}

void Writer::SubmitBatch(const StreamInfo& stream, std::vector<IncomingReport> reports,
                         BatchDone done) {
  const std::size_t n = reports.size();
  {
    std::lock_guard lock(mu_);
    BatchJob job;
    job.write.stream = stream;
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
  WriterStats out;
  {
    std::lock_guard lock(mu_);
    out = stats_;
  }
  out.store = store_->stats();
  return out;
}

void Writer::CommitGroup(std::vector<BatchJob>* group) {
  std::vector<BatchWrite> writes;
  writes.reserve(group->size());
  for (auto& j : *group) writes.push_back(std::move(j.write));
  std::size_t n = 0;
  for (const auto& w : writes) n += w.reports.size();
  const auto t0 = std::chrono::steady_clock::now();
  const Status s = store_->CommitBatches(writes, NowMs());
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  queued_reports_ -= n;
  if (s.ok()) {
    commit_seconds_.Observe(static_cast<double>(us) / 1e6);
    // Within a batch seqs rise (the protocol checks), so the duplicates
    // the store skipped are its first reports.
    for (const auto& w : writes) {
      for (std::size_t i = w.duplicates; i < w.reports.size(); ++i) {
        totals_.Add(w.stream.endpoint_id, w.reports[i].report);
      }
    }
  }
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
      stats_.totals = totals_.snapshot();
      stats_.store_failing = false;
    } else {
      stats_.commit_failures += 1;
      stats_.store_failing = true;
    }
  }
  if (!s.ok()) {
    // A failing store fails every commit (a full disk): one line, then a count.
    const auto now = std::chrono::steady_clock::now();
    if (commit_faults_.Note("commits failed (nothing acknowledged; agents resend)", s.message(),
                            now)) {
      spdlog::error("commit of {} reports failed: {}", n, s.ToString());
    }
  }
  for (const auto& line : commit_faults_.Due(std::chrono::steady_clock::now())) {
    spdlog::error("{}", line.Text());
  }
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
  auto next_maintenance = Clock::now();
  for (;;) {
    std::deque<HelloJob> hellos;
    std::vector<BatchJob> group;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_maintenance,
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
    if (stop) {
      // The raw rows are committed; what the bound leaves out is rolled up
      // from them later.
      const Status s = store_->FlushRollups(Clock::now() + options_.final_flush);
      if (s.code() == Code::kDeadlineExceeded) {
        spdlog::info("stop: rollups not finished within {} s: {}",
                     options_.final_flush.count() / 1000.0, s.message());
      } else if (!s.ok()) {
        spdlog::error("final rollup flush failed: {}", s.ToString());
        std::lock_guard lock(mu_);
        stats_.final_flush_failed = true;
      }
      for (const auto& line : commit_faults_.Due(Clock::now(), true)) {
        spdlog::error("{}", line.Text());
      }
      break;
    }
    if (Clock::now() >= next_maintenance) next_maintenance = store_->Maintain(NowMs());
  }
}

}  // namespace deskpulse::collector
