#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/ingest/writer.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/frame_codec.h"
#include "deskpulse/common/histogram.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector {

/// Failed authentications per peer: slow down, then refuse for a while.
struct AuthThrottleOptions {
  /// Failures within `window` after which each further one is answered late.
  int failures_before_delay = 5;
  std::chrono::milliseconds delay{1000};
  /// Failures within `window` after which the peer's connections are refused
  /// at accept for `lockout` (0: never). Agents behind one NAT share a peer
  /// address: raise it for such sites.
  int failures_before_lockout = 20;
  std::chrono::milliseconds window{60'000};
  std::chrono::milliseconds lockout{300'000};
};

struct IngestOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7741;
  std::string node_name = "collector";
  std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  /// The frame limit until a Hello is accepted (a Hello needs about 1.5 KB).
  std::uint32_t max_hello_frame_bytes = 8192;
  std::uint32_t max_batch_reports = 1000;
  /// Batches a connection may have waiting for their commit before it is read no further.
  int max_inflight_batches = 4;
  /// From accept to the Welcome: the TLS handshake and the Hello together.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Longest wait for the next frame to start between frames, once welcomed.
  std::chrono::milliseconds idle_timeout{300'000};
  /// Longest time from a frame's first byte to its last.
  std::chrono::milliseconds frame_timeout{30'000};
  /// How long a drain waits for connections to finish before closing them.
  std::chrono::milliseconds drain_timeout{10'000};
  /// Connections at once; Listen() lowers it to what the descriptor limit allows.
  std::size_t max_connections = 20'000;
  /// Whether `max_connections` was configured: lowering a configured cap is
  /// worth a warning, lowering the default is only the machine's limit.
  bool max_connections_configured = false;
  /// Connections not yet welcomed, in all and per peer address (IPv6: per /64).
  /// When the first cap is hit the oldest not-yet-welcomed connection of the
  /// peer holding most of them makes room; over the second, the peer's new
  /// connections are refused.
  std::size_t max_pending_connections = 512;
  std::size_t max_pending_per_peer = 128;
  /// Frame bytes held in memory across all connections (received frames and
  /// batches awaiting their commit); past it, reads pause.
  std::uint64_t max_buffered_bytes = 64ull << 20;
  /// Descriptors kept free for the store, the log and refusing connections.
  std::size_t reserved_fds = 64;
  AuthThrottleOptions auth;
  /// Repeated warnings of one kind from one peer: one line per interval.
  std::chrono::milliseconds log_summary_interval{10'000};
  /// TLS for every connection; null means plain TCP (the caller allows that
  /// only on loopback or when configured explicitly).
  std::shared_ptr<asio::ssl::context> tls;
};

struct IngestStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_pending = 0;  // not yet welcomed
  std::uint64_t connections_refused = 0;  // closed at accept: a cap or a locked-out peer
  std::uint64_t pending_evicted = 0;      // not-yet-welcomed connections closed to make room
  std::uint64_t protocol_errors = 0;
  std::uint64_t store_unavailable = 0;  // connections closed because a commit failed
  std::uint64_t auth_failures = 0;
  std::uint64_t auth_delayed = 0;   // refusals answered late (a peer failing repeatedly)
  std::uint64_t auth_lockouts = 0;  // peers locked out after repeated failures
  std::uint64_t timeouts = 0;
  std::uint64_t tls_failures = 0;
  std::uint64_t accept_failures = 0;
  std::uint64_t read_pauses = 0;     // reads held back by the buffered-bytes cap
  std::uint64_t buffered_bytes = 0;  // now
  /// Streams whose agent was acknowledged more than the store holds: the store
  /// lost acknowledged reports (a lost WAL, a restore), and how many.
  std::uint64_t streams_behind_agents = 0;
  std::uint64_t reports_forgotten = 0;
  std::uint64_t max_connections = 0;  // the cap in force
  SparseHistogram ack_us;             // a Batch fully received → its Ack handed to the socket
};

class Session;
struct ProtocolLimits;

/// Accepts agent connections and speaks docs/protocol.md on them: Hello → Welcome,
/// Batch → (writer commits) → Ack. Runs on one io_context thread; the writer
/// thread hands completions back through asio::post.
///
/// Nothing a peer sends before it is welcomed can take the collector down
/// (docs/quality.md): a small frame limit and a short deadline until the Welcome,
/// caps on connections (in all, not yet welcomed, per peer), a cap on frame
/// bytes in memory, failed logins slowed down then refused per peer, and
/// repeated warnings summarised. Connections over a cap are closed at accept,
/// before any TLS; welcomed agents keep being served.
class IngestServer {
 public:
  IngestServer(asio::io_context& io, IngestOptions options, Writer& writer);
  ~IngestServer();

  /// Bind and listen; port 0 picks a free port (see port()).
  Status Listen();
  std::uint16_t port() const { return bound_port_; }
  void Start();
  /// Stop accepting; let each connection commit and acknowledge what it already
  /// sent, tell it the collector is shutting down, and close it. `done` runs on
  /// the io_context when every connection is gone.
  void Drain(std::function<void()> done);

  /// The counters, as a snapshot (call on the io_context thread).
  IngestStats stats() const { return stats_; }
  /// Each batch's acknowledgement latency (batch fully received → its Ack
  /// handed to the socket), for /metrics. Thread-safe.
  prometheus::ClientMetric ack_seconds() const { return ack_seconds_.Collect(); }
  const IngestOptions& options() const { return options_; }
  Writer& writer() { return writer_; }
  asio::io_context& io() { return io_; }

  // For sessions (all on the io_context thread).
  void Remove(const std::shared_ptr<Session>& s);
  /// The session was welcomed: it no longer counts against the pending caps.
  void Welcomed(Session* s);
  /// A failed authentication from `peer`: how long to wait before answering.
  std::chrono::milliseconds NoteAuthFailure(const std::string& peer);
  /// Room for `bytes` more in memory? Otherwise the session waits (WaitForRoom)
  /// and is woken when some is released.
  bool TryReserve(std::uint64_t bytes);
  void Release(std::uint64_t bytes);
  void WaitForRoom(const std::shared_ptr<Session>& s);
  /// True when this warning is to be logged in full; otherwise it is counted
  /// into the next summary line.
  bool ShouldLog(std::string_view kind, const std::string& peer);

 private:
  friend class Session;  // counts into stats_, reads into read_buf_
  IngestStats& mutable_stats() { return stats_; }
  void ObserveAck(std::chrono::microseconds us);
  std::vector<std::uint8_t>& read_buffer() { return read_buf_; }
  const std::shared_ptr<const ProtocolLimits>& protocol_limits() const { return limits_; }
  struct Peer {
    std::vector<Session*> pending;  // not yet welcomed, oldest first
    std::chrono::steady_clock::time_point failures_since{};
    int failures = 0;
    std::chrono::steady_clock::time_point locked_until{};
  };
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Housekeeping();
  /// Times out connections past their deadline: one timer for all of them.
  asio::awaitable<void> SweepDeadlines();
  void MaybeFinishDrain();
  void Admit(TcpSocket socket);
  void Refuse(TcpSocket& socket, const std::string& peer, std::string_view why);
  bool EvictPending();
  void RemovePending(Session* s);
  void FlushSummaries(bool all);

  asio::io_context& io_;
  IngestOptions options_;
  Writer& writer_;
  TcpAcceptor acceptor_;
  std::uint16_t bound_port_ = 0;
  std::vector<std::shared_ptr<Session>> sessions_;  // dense: each knows its slot
  std::unordered_map<std::string, Peer> peers_;
  std::size_t pending_ = 0;
  std::vector<std::weak_ptr<Session>> room_waiters_;
  WarningSummary summary_;
  int spare_fd_ = -1;  // closed to accept (and refuse) when descriptors run out
  bool draining_ = false;
  std::function<void()> drain_done_;
  std::unique_ptr<asio::steady_timer> drain_timer_;
  std::unique_ptr<asio::steady_timer> housekeeping_timer_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  std::shared_ptr<const ProtocolLimits> limits_;
  // Every read lands here first; a connection keeps only an incomplete frame.
  std::vector<std::uint8_t> read_buf_;
  IngestStats stats_;
  prometheus::Histogram ack_seconds_{LatencyBucketsSeconds()};
};

}  // namespace deskpulse::collector
