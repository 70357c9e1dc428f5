#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/histogram.h"
#include "deskpulse/common/host_port.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::agent {

struct UplinkOptions {
  HostPort collector;
  std::string credential;
  std::string agent_id;
  std::uint64_t epoch = 1;
  deskpulse::v1::HostFacts host;
  std::size_t max_batch_reports = 100;
  int max_inflight_batches = 2;
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds ack_timeout{30'000};
  /// Hold a part-full batch this long after the previous send, so reports
  /// trickling in travel together (Kafka's linger.ms). 0 sends at once.
  std::chrono::milliseconds linger{0};
  /// TLS to the collector, verified against the client's CA and the host
  /// name in `collector`; null means plain TCP.
  std::shared_ptr<TlsClient> tls;
  /// Log the first failure of each kind and the recovery (the agent does; a
  /// simulator with thousands of uplinks does not).
  bool log_connection_changes = false;
};

/// What the uplink drains: the agent's spool, or the simulator's memory.
class ReportQueue {
 public:
  virtual ~ReportQueue() = default;
  /// Append up to `max` reports with seq > after_seq, in seq order, to `out`.
  virtual void Peek(std::uint64_t after_seq, std::size_t max,
                    std::vector<std::pair<std::uint64_t, std::string>>* out) = 0;
  /// Reports through `seq` are durable at the collector and may be dropped.
  virtual void Acknowledge(std::uint64_t seq) = 0;
};

struct UplinkStats {
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t batches_sent = 0;
  std::uint64_t reports_sent = 0;
  std::uint64_t acks = 0;
  std::uint64_t errors_received = 0;
  SparseHistogram ack_latency_us;  // batch written → its Ack read
  std::string last_error;
};

/// The agent's side of DESIGN §2.1: connect, Hello, resume after
/// Welcome.last_acked_seq, stream batches with a bounded window in flight,
/// drop reports from the queue only on Ack, and reconnect with capped
/// exponential backoff and full jitter when anything goes wrong.
class Uplink {
 public:
  Uplink(asio::any_io_executor executor, UplinkOptions options, ReportQueue& queue,
         std::uint64_t seed);

  /// Runs until Stop().
  asio::awaitable<void> Run();
  /// New reports are in the queue.
  void Notify();
  void Stop();

  const UplinkStats& stats() const { return stats_; }
  std::uint64_t acked_through() const { return acked_through_; }
  bool connected() const { return connected_; }
  /// The collector refused the credential: retrying will not help.
  bool refused() const { return refused_; }

 private:
  struct Conn;
  asio::awaitable<Status> Session();
  asio::awaitable<void> ReadLoop(std::shared_ptr<Conn> conn);
  std::chrono::milliseconds NextBackoff();

  asio::any_io_executor executor_;
  UplinkOptions options_;
  ReportQueue& queue_;
  std::mt19937_64 rng_;
  asio::steady_timer wake_;
  asio::steady_timer backoff_;
  bool stopping_ = false;
  bool connected_ = false;
  bool refused_ = false;
  int failures_in_row_ = 0;
  std::string logged_error_;  // the failure last logged (log_connection_changes)
  std::uint64_t acked_through_ = 0;
  std::uint64_t sent_through_ = 0;
  std::chrono::steady_clock::time_point last_send_{};
  std::vector<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> inflight_;
  UplinkStats stats_;
};

}  // namespace deskpulse::agent
