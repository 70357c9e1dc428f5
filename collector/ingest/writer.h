#pragma once

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

#include "collector/store/store.h"

namespace deskpulse::collector {

struct WriterOptions {
  /// After the first batch of a group arrives, wait this long for more.
  std::chrono::microseconds group_commit_window{2000};
  /// ...or until this many reports are waiting.
  std::size_t group_commit_reports = 4096;
  /// How often a round of rollup flushes starts (one slice per writer turn).
  std::chrono::milliseconds rollup_flush_interval{5000};
  /// How often the checkpointer moves the WAL into the database file.
  std::chrono::milliseconds checkpoint_interval{250};
  std::chrono::milliseconds retention_interval{3'600'000};
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
  SparseHistogram commit_us;       // one transaction of batches, begin to durable commit
  SparseHistogram flush_us;        // one rollup slice flush
  std::uint64_t checkpoints = 0;
  SparseHistogram group_reports;   // reports per group commit
};

/// The one thread that writes the store. Everything that touches the database
/// goes through its queue, so group commit needs no locking in the store, and
/// a batch's completion runs only after the transaction holding it committed.
///
/// Completions run on the writer thread; callers post them where they belong.
class Writer {
 public:
  using HelloDone = std::function<void(Result<StreamInfo>)>;
  using BatchDone = std::function<void(Result<BatchOutcome>)>;

  Writer(std::unique_ptr<Store> store, WriterOptions options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void Start();
  /// Authenticate `hello.credential` and register the stream.
  void SubmitHello(deskpulse::v1::Hello hello, HelloDone done);
  void SubmitBatch(std::int64_t stream_id, std::vector<IncomingReport> reports, BatchDone done);
  /// Commit everything queued, flush rollups, and join the thread.
  void Stop();

  WriterStats stats() const;
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
  void RunCheckpointer();
  void CommitGroup(std::vector<BatchJob>* group);
  static std::int64_t NowMs();

  std::unique_ptr<Store> store_;
  WriterOptions options_;
  std::thread thread_;
  std::thread checkpointer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable cv_checkpoint_;
  std::deque<HelloJob> hellos_;
  std::deque<BatchJob> batches_;
  std::atomic<std::size_t> queued_reports_{0};
  bool stopping_ = false;
  PendingRollups pending_rollups_;
  WriterStats stats_;
};

}  // namespace deskpulse::collector
