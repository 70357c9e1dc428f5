#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
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
  /// Collectors sharing one store. The uplink starts at a random one (so a
  /// fleet spreads over them) and moves to the next whenever its collector
  /// fails, with the usual backoff; the store's watermark makes the move
  /// lossless.
  std::vector<HostPort> collectors;
  std::string credential;
  std::string agent_id;
  std::uint64_t epoch = 1;
  deskpulse::v1::HostFacts host;
  std::size_t max_batch_reports = 100;
  int max_inflight_batches = 2;
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{30'000};
  /// After a refused credential or protocol version (stop and retry slowly):
  /// collectors get restored, moved and reconfigured, so the agent keeps
  /// trying, minutes apart.
  std::chrono::milliseconds refused_backoff_min{60'000};
  std::chrono::milliseconds refused_backoff_max{900'000};
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds ack_timeout{30'000};
  /// Hold a part-full batch this long after the previous send, so reports
  /// trickling in travel together (Kafka's linger.ms). 0 sends at once.
  std::chrono::milliseconds linger{0};
  /// TLS to the collector, verified against the client's CA and the host
  /// name of the collector connected to; null means plain TCP.
  std::shared_ptr<TlsClient> tls;
  /// Log the first failure of each kind and the recovery (the agent does; a
  /// simulator with thousands of uplinks does not).
  bool log_connection_changes = false;
  /// Connect from this local address rather than the one the kernel picks
  /// (the simulator spreads a fleet over loopback addresses, so that the
  /// collector sees many peers as it would in the field).
  std::optional<asio::ip::address> local_address;
};

/// Where to resume after a Welcome, and what the Welcome revealed.
struct ResumePoint {
  enum class Event {
    kNone,
    /// The collector holds seqs above what this agent kept: its local state
    /// was lost (power cut, reverted snapshot). Reports made since were
    /// renumbered past the collector's, so none is taken for a resend.
    kLostLocalState,
    /// The collector holds less than it acknowledged before: it lost
    /// acknowledged reports. What the queue still holds is sent again.
    kCollectorForgot,
  };
  std::uint64_t send_after = 0;
  Event event = Event::kNone;
  std::string detail;  // for the log line
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
  /// A Welcome says the collector holds everything through `collector_acked`.
  /// Returns where sending resumes. Called before any Batch of the connection.
  /// An error (the spool cannot be rewritten) fails the connection: nothing
  /// is sent that the collector might take for a resend.
  virtual Result<ResumePoint> Resume(std::uint64_t collector_acked) {
    Acknowledge(collector_acked);
    return ResumePoint{collector_acked, ResumePoint::Event::kNone, ""};
  }
  /// The collector refused report `seq` on its own (everything before it is
  /// acknowledged): drop it and count it, so that the reports after it move.
  virtual void Reject(std::uint64_t seq) { Acknowledge(seq); }
  /// The highest seq a collector acknowledged, for the Hello (0: unknown).
  virtual std::uint64_t CollectorAcked() const { return 0; }
};

/// What the uplink does with each error code a collector can send (docs/quality.md),
/// as Fluent Bit's three-way write result: nothing is resent forever and
/// nothing stops for good.
enum class ErrorOutcome {
  kRetry,        // transient: reconnect with the normal backoff and resend
  kSplit,        // a batch was refused: split it to find the bad report, drop and count it
  kRetrySlowly,  // a refused credential or protocol: retry minutes apart
};
/// The one table: every ErrorCode and what it leads to (unknown codes: kRetrySlowly).
ErrorOutcome OutcomeOf(deskpulse::v1::ErrorCode code);

struct UplinkStats {
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t batches_sent = 0;
  std::uint64_t reports_sent = 0;
  std::uint64_t acks = 0;
  std::uint64_t errors_received = 0;
  std::uint64_t refused = 0;           // connections ended by a kRetrySlowly error
  std::uint64_t batches_split = 0;     // refused batches sent again in smaller pieces
  std::uint64_t reports_rejected = 0;  // refused alone (or over the frame limit) and dropped
  SparseHistogram ack_latency_us;      // batch written → its Ack read
  std::string last_error;
};

/// The agent's side of docs/protocol.md: connect, Hello, resume after
/// Welcome.last_acked_seq (as the queue judges it), stream batches sized by
/// the collector's limits with a bounded window in flight, drop reports from
/// the queue only on Ack, and reconnect with capped exponential backoff and
/// full jitter when anything goes wrong. Collector errors are handled as
/// OutcomeOf() says.
class Uplink {
 public:
  Uplink(asio::io_context::executor_type executor, UplinkOptions options, ReportQueue& queue,
         std::uint64_t seed);

  /// Runs until Stop().
  asio::awaitable<void> Run();
  /// New reports are in the queue.
  void Notify();
  void Stop();

  const UplinkStats& stats() const { return stats_; }
  std::uint64_t acked_through() const { return acked_through_; }
  bool connected() const { return connected_; }
  /// The last connection was refused (credential or protocol): the uplink
  /// retries slowly until a collector accepts it.
  bool refused() const { return refused_; }
  /// The collector the uplink is on (or trying next).
  const HostPort& collector() const { return options_.collectors[current_]; }
  /// Moves made from a failed collector to the next.
  std::uint64_t failovers() const { return failovers_; }

 private:
  struct Conn;
  asio::awaitable<Status> Session();
  asio::awaitable<void> ReadLoop(std::shared_ptr<Conn> conn);
  std::chrono::milliseconds NextBackoff();
  /// A batch was refused (kSplit): halve the batch until the bad report is
  /// alone, then drop it.
  void OnBatchRefused(const std::string& why);
  void RejectLocally(std::uint64_t seq, const std::string& why);
  struct InFlight {
    std::uint64_t last = 0;
    std::size_t reports = 0;
    std::chrono::steady_clock::time_point sent{};
  };

  asio::io_context::executor_type executor_;
  UplinkOptions options_;
  ReportQueue& queue_;
  std::mt19937_64 rng_;
  std::size_t current_ = 0;  // index into options_.collectors
  std::uint64_t failovers_ = 0;
  asio::steady_timer wake_;
  asio::steady_timer backoff_;
  bool stopping_ = false;
  bool connected_ = false;
  bool refused_ = false;
  int failures_in_row_ = 0;
  int refusals_in_row_ = 0;
  bool retry_at_once_ = false;  // the last connection split a refused batch
  // While > 0, batches hold at most this many reports, one at a time, to
  // find a report the collector refuses; it doubles with every Ack.
  std::size_t probe_limit_ = 0;
  std::uint32_t max_frame_bytes_ = 0;  // from the Welcome
  std::string logged_error_;           // the failure last logged (log_connection_changes)
  std::uint64_t acked_through_ = 0;
  std::uint64_t sent_through_ = 0;
  std::chrono::steady_clock::time_point last_send_{};
  std::vector<InFlight> inflight_;
  UplinkStats stats_;
};

}  // namespace deskpulse::agent
