#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "collector/ingest/writer.h"
#include "deskpulse/common/frame_codec.h"
#include "deskpulse/common/histogram.h"

namespace deskpulse::collector {

struct IngestOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7741;
  std::string node_name = "collector";
  std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  std::uint32_t max_batch_reports = 1000;
  /// Batches a connection may have waiting for their commit before it is read no further.
  int max_inflight_batches = 4;
  /// Longest wait for the next frame to start between frames (Hello included).
  std::chrono::milliseconds idle_timeout{300'000};
  /// Longest time from a frame's first byte to its last.
  std::chrono::milliseconds frame_timeout{30'000};
  /// How long a drain waits for connections to finish before closing them.
  std::chrono::milliseconds drain_timeout{10'000};
  /// TLS for every connection; null means plain TCP (the caller allows that
  /// only on loopback or when configured explicitly).
  std::shared_ptr<asio::ssl::context> tls;
};

struct IngestStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t protocol_errors = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t tls_failures = 0;
  SparseHistogram ack_us;  // a Batch fully received → its Ack handed to the socket
};

class Session;

/// Accepts agent connections and speaks DESIGN §2.1 on them: Hello → Welcome,
/// Batch → (writer commits) → Ack. Runs on one io_context thread; the writer
/// thread hands completions back through asio::post.
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

  const IngestStats& stats() const { return stats_; }
  IngestStats& mutable_stats() { return stats_; }
  const IngestOptions& options() const { return options_; }
  Writer& writer() { return writer_; }
  asio::io_context& io() { return io_; }
  void Remove(const std::shared_ptr<Session>& s);

 private:
  asio::awaitable<void> AcceptLoop();
  void MaybeFinishDrain();

  asio::io_context& io_;
  IngestOptions options_;
  Writer& writer_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t bound_port_ = 0;
  std::set<std::shared_ptr<Session>> sessions_;
  bool draining_ = false;
  std::function<void()> drain_done_;
  std::unique_ptr<asio::steady_timer> drain_timer_;
  IngestStats stats_;
};

}  // namespace deskpulse::collector
