#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/probe.h"
#include "agent/probes/session/sock_diag.h"

namespace deskpulse::agent {

/// Remote-display session latency (DESIGN §2.2): passive RTT, jitter and
/// retransmit rate of live display-protocol TCP connections from the kernel
/// (sock_diag), disconnects and reconnects from the TCP destroy group, and a
/// rate-limited TCP-connect probe to brokers or gateways as the fallback.
class SessionProbe : public Probe {
 public:
  SessionProbe(SessionConfig config, deskpulse::v1::EndpointRole role);
  ~SessionProbe() override;
  std::string_view name() const override { return "session"; }
  void Start(const asio::any_io_executor& executor) override;
  void Collect(const CycleContext& ctx, deskpulse::v1::Report& report) override;

  /// One sampling pass (the timer calls it; tests may too).
  void Sample(std::int64_t now_ms);
  /// A connection closed, as the destroy group reports it.
  void OnDestroyed(const TcpConn& conn, std::int64_t now_ms);
  /// Full dumps so far (discovery), for tests.
  std::uint64_t dumps() const { return dumps_; }

 private:
  struct Tracked {
    deskpulse::v1::DisplayProtocol protocol{};
    std::string peer;       // "addr:port" of the far end
    std::string peer_addr;  // reconnects match on the address
    std::vector<std::uint32_t> rtt_us;  // this window's samples
    std::vector<std::uint32_t> rttvar_us;
    std::uint32_t retrans_at_start = 0, segs_at_start = 0;
    std::uint32_t retrans_now = 0, segs_now = 0;
    std::int64_t last_seen_ms = 0;
    TcpConn conn;  // the identity to look it up by
  };
  struct Closed {
    deskpulse::v1::DisplayProtocol protocol{};
    std::string peer_addr;
    std::int64_t at_ms = 0;
  };

  /// The protocol and far end of a connection, if it is a display connection.
  bool Classify(const TcpConn& c, deskpulse::v1::DisplayProtocol* protocol,
                std::string* peer) const;
  void AddSample(Tracked& t, const TcpConn& c);
  void SampleKnown(std::int64_t now_ms);
  void Closing(std::uint64_t cookie, std::int64_t now_ms);
  void ActiveProbe(const CycleContext& ctx, deskpulse::v1::Report& report);
  void ArmTimer();
  void ReadDestroyed();

  SessionConfig config_;
  deskpulse::v1::EndpointRole role_;
  std::vector<std::uint16_t> ports_;
  std::map<std::uint16_t, deskpulse::v1::DisplayProtocol> protocol_of_;
  std::map<std::uint64_t, Tracked> live_;
  std::vector<Tracked> finished_;  // closed this window: their samples still count
  std::vector<Closed> closing_;    // waiting to see whether a reconnect follows
  std::vector<deskpulse::v1::SessionEvent> events_;
  std::uint32_t live_samples_ = 0;  // samples that saw at least one display connection
  bool started_ = false;
  bool sampled_once_ = false;
  std::string dump_error_;
  std::string destroy_error_;
  std::int64_t last_probe_ms_ = 0;
  std::int64_t next_discovery_ms_ = 0;
  std::int64_t rediscover_until_ms_ = 0;
  std::string proc_root_ = "/proc";
  std::uint64_t dumps_ = 0;
  bool timer_armed_ = false;
  std::unique_ptr<asio::steady_timer> timer_;
  std::unique_ptr<asio::posix::stream_descriptor> destroy_;
  std::vector<char> destroy_buf_;
};

/// Percentile (nearest rank) of `values`, which it sorts.
std::uint32_t Percentile(std::vector<std::uint32_t>& values, double q);

}  // namespace deskpulse::agent
