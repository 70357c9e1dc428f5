#include "collector/api/worker.h"

#include <malloc.h>

#include "collector/api/server.h"

namespace deskpulse::collector::api {

Worker::Worker(std::unique_ptr<Store> store, Context context, std::size_t max_waiting)
    : store_(std::move(store)), context_(std::move(context)), max_jobs_(max_waiting + 1) {
  context_.write = [this](const std::function<void()>& write) { Write(write); };
}

Worker::~Worker() { Stop(); }

void Worker::Start() {
  write_thread_ = std::thread([this] { RunWrites(); });
  thread_ = std::thread([this] {
    LowerThreadPriority(kBookNice, "the API's worker");
    Run();
  });
}

void Worker::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lock(write_mu_);
    write_stop_ = true;
  }
  write_cv_.notify_all();
  if (write_thread_.joinable()) write_thread_.join();
  std::deque<std::pair<Ticket, Job>> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(queue_);
  }
}

Worker::Ticket Worker::Reserve() {
  std::lock_guard lock(mu_);
  if (stopping_ || reserved_ >= max_jobs_) return nullptr;
  ++reserved_;
  return Ticket(this, [](Worker* w) {
    std::lock_guard inner(w->mu_);
    --w->reserved_;
  });
}

void Worker::Post(Ticket ticket, Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.emplace_back(std::move(ticket), std::move(job));
  }
  cv_.notify_one();
}

void Worker::Write(const std::function<void()>& write) {
  std::unique_lock lock(write_mu_);
  write_ = &write;
  write_done_ = false;
  write_cv_.notify_all();
  write_cv_.wait(lock, [this] { return write_done_; });
}

void Worker::RunWrites() {
  std::unique_lock lock(write_mu_);
  for (;;) {
    write_cv_.wait(lock, [this] { return write_stop_ || write_ != nullptr; });
    if (write_ != nullptr) {
      const std::function<void()>* write = std::exchange(write_, nullptr);
      lock.unlock();
      (*write)();
      lock.lock();
      write_done_ = true;
      write_cv_.notify_all();
      continue;
    }
    if (write_stop_) return;
  }
}

void Worker::Run() {
  for (;;) {
    std::pair<Ticket, Job> next;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    next.second(context_);
    next = {};
    // An import's parse leaves its memory in the allocator's arenas: give it
    // back, so a collector's size is not that of its largest import.
    ::malloc_trim(0);
  }
}

}  // namespace deskpulse::collector::api
