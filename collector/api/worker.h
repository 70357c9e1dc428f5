#pragma once

// The API's long calls (vendor imports: a 16 MiB CSV is parsed and
// committed in about two seconds) on a thread of their own, with its own
// store connection, at the health book's priority: other API calls and
// agents' acknowledgements are not held behind them. A call's store write
// (Context::write) runs on a second thread at the collector's own priority:
// a low-priority thread holding the store's write lock would keep ingest's
// writer waiting for as long as the scheduler kept it off the CPU.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "collector/api/routes.h"

namespace deskpulse::collector::api {

class Worker {
 public:
  using Job = std::function<void(Context&)>;

  /// `context` is the worker's own (its store is used on its thread only).
  /// At most `max_waiting` jobs wait behind the one running.
  Worker(std::unique_ptr<Store> store, Context context, std::size_t max_waiting);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void Start();
  /// Finishes the running job; those waiting are dropped.
  void Stop();

  /// A place in the queue, held from a request's head until its job is
  /// posted (or the request is dropped, which frees it); null when the
  /// queue is full.
  using Ticket = std::shared_ptr<void>;
  Ticket Reserve();
  void Post(Ticket ticket, Job job);

 private:
  void Run();
  void RunWrites();
  /// Runs `write` on the writes' thread and waits for it.
  void Write(const std::function<void()>& write);

  std::unique_ptr<Store> store_;
  Context context_;
  std::size_t max_jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Ticket, Job>> queue_;
  std::size_t reserved_ = 0;  // tickets alive: running, queued or still reading
  bool stopping_ = false;
  std::thread thread_;
  // The writes' thread: one write at a time, handed over and waited for.
  std::mutex write_mu_;
  std::condition_variable write_cv_;
  const std::function<void()>* write_ = nullptr;
  bool write_done_ = false;
  bool write_stop_ = false;
  std::thread write_thread_;
};

}  // namespace deskpulse::collector::api
