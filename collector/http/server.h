#pragma once

// The collector's HTTP/1.1 server (the JSON API, the dashboard and /metrics),
// on the collector's own Asio connections as ingest has them: every
// connection has a deadline in each phase (TLS handshake, head, body, idle
// between requests, write), connections are capped in all and per peer with
// the oldest idle one making room, and nothing unauthenticated is read past a
// request's head. The handler decides on the head (its route, its caller)
// whether a body may follow and how large; pipelined requests are answered
// one at a time, in order.

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "collector/http/message.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: a free port
  /// Set: HTTPS with this context.
  std::shared_ptr<asio::ssl::context> tls;
  /// Connections at once, in all and from one peer address (IPv6: per /64).
  std::size_t max_connections = 256;
  std::size_t max_connections_per_peer = 32;
  /// From accept to the end of the TLS handshake.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// To a whole request head: from the connection's start (after TLS), or
  /// from the first byte of a later request.
  std::chrono::milliseconds head_timeout{10'000};
  /// Between requests on a kept-alive connection.
  std::chrono::milliseconds idle_timeout{30'000};
  /// From a head to the last byte of its body.
  std::chrono::milliseconds body_timeout{60'000};
  /// To hand a reply to the socket.
  std::chrono::milliseconds write_timeout{30'000};
  Limits limits;
  /// Request bodies held in memory across all connections; a body that would
  /// go past it is answered 503 before it is read.
  std::uint64_t max_body_memory = 64ull << 20;
  /// Repeated warnings of one kind from one peer: one line per interval.
  std::chrono::milliseconds log_summary_interval{10'000};
  /// Sent with every HTTPS reply.
  std::string hsts = "max-age=31536000";
};

/// What the server has seen (read on its io thread, or after Stop()).
struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_refused = 0;  // closed at accept: a cap, nothing idle to evict
  std::uint64_t connections_evicted = 0;  // idle connections closed to make room
  std::uint64_t tls_failures = 0;
  std::uint64_t handshake_timeouts = 0;
  std::uint64_t head_timeouts = 0;
  std::uint64_t body_timeouts = 0;
  std::uint64_t idle_closes = 0;  // kept-alive connections closed after idle_timeout
  std::uint64_t write_timeouts = 0;
  std::uint64_t requests = 0;
  std::uint64_t bad_requests = 0;     // refused by the server itself (malformed, over a limit)
  std::uint64_t responses[6] = {};    // by class: [1] 1xx … [5] 5xx
  std::uint64_t body_bytes_held = 0;  // now
  std::uint64_t max_connections = 0;
};

/// Where a reply goes: call it once, from any thread.
using Respond = std::function<void(Reply)>;

/// Go on past the head: read a body of at most `body_limit` bytes (none when
/// 0), then hand the whole request to `then` on the server's thread.
struct Proceed {
  std::uint64_t body_limit = 0;
  std::function<void(std::string body, Respond respond)> then;
};
/// A head is answered at once, or proceeds.
using Decision = std::variant<Reply, Proceed>;

class Handler {
 public:
  virtual ~Handler() = default;
  /// A complete, well-formed head (its target decoded), on the server's
  /// thread. Nothing of its body has been read.
  virtual Decision OnHead(const Head& head, Target target, const asio::ip::address& peer) = 0;
  /// The reply for an error of the server's own (a malformed request, a
  /// limit, a deadline), with `message` saying what was wrong.
  virtual Reply ErrorReply(int status, std::string message) = 0;
};

class Connection;

class Server {
 public:
  Server(asio::io_context& io, ServerOptions options, Handler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds and listens; port 0 picks a free port.
  Status Listen();
  std::uint16_t port() const { return bound_port_; }
  void Start();
  /// Stops accepting and closes every connection (on the io thread).
  void Close();

  const ServerStats& stats() const { return stats_; }
  const ServerOptions& options() const { return options_; }

  // For connections (all on the io thread).
  asio::io_context& io() { return io_; }
  Handler& handler() { return handler_; }
  ServerStats& mutable_stats() { return stats_; }
  std::vector<char>& read_buffer() { return read_buf_; }
  void Remove(Connection* c);
  bool TryReserveBody(std::uint64_t bytes);
  void ReleaseBody(std::uint64_t bytes);
  /// True when this warning is to be logged in full; otherwise it is counted
  /// into the next summary line.
  bool ShouldLog(std::string_view kind, const std::string& peer);
  /// The Date field's value, formatted once a second.
  const std::string& Date();

 private:
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Sweep();
  void Admit(TcpSocket socket);
  void Refuse(TcpSocket& socket, const std::string& peer, std::string_view why);
  /// Closes the oldest idle connection of `peer` (or, empty, of the peer
  /// with the most connections). False when none is idle.
  bool EvictIdle(const std::string& peer);
  void FlushSummaries(bool all);

  asio::io_context& io_;
  ServerOptions options_;
  Handler& handler_;
  TcpAcceptor acceptor_;
  std::uint16_t bound_port_ = 0;
  std::vector<std::shared_ptr<Connection>> connections_;             // dense: each knows its slot
  std::unordered_map<std::string, std::vector<Connection*>> peers_;  // oldest first
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  WarningSummary summary_;
  std::chrono::steady_clock::time_point summary_flushed_{};
  std::vector<char> read_buf_;
  std::int64_t date_second_ = -1;
  std::string date_;
  ServerStats stats_;
  bool closed_ = false;
};

}  // namespace deskpulse::collector::http
