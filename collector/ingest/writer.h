#pragma once

#include <prometheus/histogram.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collector/ingest/report_totals.h"
#include "collector/store/store.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector {

struct WriterOptions {
  /// After the first batch of a group arrives, wait this long for more.
  std::chrono::microseconds group_commit_window{2000};
  /// ...or until this many reports are waiting.
  std::size_t group_commit_reports = 4096;
  /// At stop, how long the rollups of what was committed may take; the rest
  /// is rolled up from the stored rows later (IngestStore::FlushRollups), so
  /// a stop is bounded without losing anything.
  std::chrono::milliseconds final_flush{5000};
};

struct BatchOutcome {
  std::uint64_t acked_through = 0;
  std::size_t stored = 0;
  std::size_t duplicates = 0;
};

struct WriterStats {
  std::uint64_t commits = 0;
  std::uint64_t reports_stored = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t commit_failures = 0;
  /// The last commit failed (a success since clears it): the store is failing now.
  bool store_failing = false;
  /// The rollups' last flush at stop failed (not one cut short by its deadline).
  bool final_flush_failed = false;
  SparseHistogram commit_us;      // one transaction of batches, begin to durable commit
  SparseHistogram group_reports;  // reports per group commit
  ReportTotalsSnapshot totals;    // what the stored reports add up to
  /// The store's counters, as of the call (StoreStats are thread-safe).
  StoreStats store;
};

/// The bucket bounds of /metrics' latency histograms, in seconds: the
/// ingest bar (50 ms) is one of them.
const std::vector<double>& LatencyBucketsSeconds();

/// The one thread that writes the store. Everything that writes goes through
/// its queue, so group commit needs no locking in the store, and a batch's
/// completion runs only after the transaction holding it committed. Between
/// commits it gives the store's own maintenance (rollups, retention) a turn.
///
/// Completions run on the writer thread; callers post them where they belong.
class Writer {
 public:
  using HelloDone = std::function<void(Result<StreamInfo>)>;
  using BatchDone = std::function<void(Result<BatchOutcome>)>;

  Writer(std::unique_ptr<IngestStore> store, WriterOptions options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void Start();
  /// Authenticate `hello.credential` and register the stream.
  void SubmitHello(deskpulse::v1::Hello hello, HelloDone done);
  void SubmitBatch(const StreamInfo& stream, std::vector<IncomingReport> reports, BatchDone done);
  /// Commit everything queued, flush rollups, and join the thread.
  void Stop();

  WriterStats stats() const;
  /// Each group commit's latency (begin to durable commit), for /metrics.
  /// Thread-safe.
  prometheus::ClientMetric commit_seconds() const { return commit_seconds_.Collect(); }
  std::size_t queued_reports() const { return queued_reports_.load(); }

 private:
  struct HelloJob {
    deskpulse::v1::Hello hello;
    HelloDone done;
  };
  struct BatchJob {
    BatchWrite write;
    BatchDone done;
    std::chrono::steady_clock::time_point enqueued;
  };

  void Run();
  void CommitGroup(std::vector<BatchJob>* group);
  static std::int64_t NowMs();

  std::unique_ptr<IngestStore> store_;
  WriterOptions options_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<HelloJob> hellos_;
  std::deque<BatchJob> batches_;
  std::atomic<std::size_t> queued_reports_{0};
  bool stopping_ = false;
  WriterStats stats_;
  ReportTotals totals_;           // writer thread only; copied into stats_
  WarningSummary commit_faults_;  // writer thread only
  prometheus::Histogram commit_seconds_{LatencyBucketsSeconds()};
};

}  // namespace deskpulse::collector
