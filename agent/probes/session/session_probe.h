#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/probe.h"
#include "agent/probes/session/session_kernel.h"
#include "agent/probes/session/sock_diag.h"

namespace deskpulse::agent {

/// Remote-display session latency and stability (report.proto): RTT, jitter and
/// retransmit rate of live display-protocol TCP connections, stalls (data
/// outstanding, nothing acknowledged), connects, disconnects and reconnects,
/// and a rate-limited TCP-connect probe to brokers or gateways when no session
/// is live. How RTT is measured per role: README.md.
class SessionProbe : public Probe {
 public:
  SessionProbe(SessionConfig config, deskpulse::v1::EndpointRole role,
               std::unique_ptr<SessionKernel> kernel = nullptr);
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
  /// Milliseconds from `now_ms` to the next pass the timer should make.
  std::int64_t NextSampleDelayMs(std::int64_t now_ms) const;

 private:
  struct Tracked {
    deskpulse::v1::DisplayProtocol protocol{};
    std::string peer;                   // "addr:port" of the far end
    std::string peer_addr;              // reconnects match on the address
    std::vector<std::uint32_t> rtt_us;  // this window's samples
    std::vector<std::uint32_t> rttvar_us;
    std::uint32_t look_min_rtt_us = 0, look_rttvar_us = 0;  // the least look this sample
    int looks = 0;
    std::uint32_t retrans_at_start = 0, segs_at_start = 0;
    std::uint32_t retrans_now = 0, segs_now = 0;
    std::int64_t last_seen_ms = 0;
    std::int64_t idle_seen_ms = 0;    // last sample with nothing outstanding
    std::int64_t stall_start_ms = 0;  // 0: not stalled
    std::int64_t path_back_ms = 0;    // a probe of the peer answered during the stall
    std::int64_t stall_counted_to_ms = 0;
    std::int64_t stalled_ms = 0;  // this window
    TcpConn conn;                 // the identity to look it up by
  };
  struct Closed {
    deskpulse::v1::DisplayProtocol protocol{};
    std::string peer_addr;
    std::int64_t at_ms = 0;
  };
  using GroupKey = std::pair<int, std::string>;  // (protocol, peer)
  /// Handshake probes of one peer: its RTT samples on a thin client, and the
  /// moment the path answers again during a stall.
  struct PeerRtt {
    std::vector<std::uint32_t> rtt_us;     // this window's samples, in order
    std::vector<std::uint32_t> rttvar_us;  // RFC 6298 RTTVAR after each
    double srtt = 0, rttvar = 0;           // the estimator, over this window
    bool primed = false;
    std::int64_t last_probe_ms = 0;
    bool in_flight = false;
    std::string last_error;
  };

  /// The protocol and far end of a connection, if it is a display connection.
  bool Classify(const TcpConn& c, deskpulse::v1::DisplayProtocol* protocol,
                std::string* peer) const;
  void Discover(std::int64_t now_ms);
  void AddSample(Tracked& t, const TcpConn& c, std::int64_t now_ms);
  void SampleKnown(std::int64_t now_ms);
  void Closing(std::uint64_t cookie, std::int64_t at_ms);
  void ExpireClosings(std::int64_t now_ms);
  void CountStall(Tracked& t, std::int64_t upto_ms);
  void EndStall(Tracked& t, std::int64_t end_ms, bool acknowledged);
  void ProbePeers(std::int64_t now_ms);
  void OnPeerAnswer(const GroupKey& key, std::int64_t sent_ms, const PeerAnswer& a);
  void ResolveGateways(std::int64_t now_ms);
  void ActiveProbe(const CycleContext& ctx, deskpulse::v1::Report& report);
  void ArmTimer(std::int64_t delay_ms);
  void ReadDestroyed();

  SessionConfig config_;
  deskpulse::v1::EndpointRole role_;
  bool connect_rtt_ = false;  // RTT from handshakes to the peer, not the connection's own
  std::unique_ptr<SessionKernel> kernel_;
  std::vector<std::uint16_t> ports_;
  std::map<std::uint16_t, deskpulse::v1::DisplayProtocol> protocol_of_;
  std::set<std::string> gateway_addrs_;
  std::string gateway_error_;
  std::int64_t gateways_resolved_ms_ = 0;
  std::map<std::uint64_t, Tracked> live_;
  std::vector<Tracked> finished_;  // closed this window: their samples still count
  std::vector<Closed> closing_;    // waiting to see whether a reconnect follows
  std::map<GroupKey, PeerRtt> peer_rtt_;
  std::set<std::uint16_t> own_ports_;  // local ports of handshakes in flight
  std::vector<deskpulse::v1::SessionEvent> events_;
  std::vector<deskpulse::v1::SessionStall> stalls_;
  std::int64_t window_start_ms_ = 0;
  std::int64_t up_since_ms_ = -1;  // a display connection has been live since; -1: none
  std::int64_t connected_ms_ = 0;  // this window
  bool started_ = false;
  bool sampled_once_ = false;
  std::string dump_error_;
  std::string destroy_error_;
  std::int64_t last_probe_ms_ = 0;
  std::int64_t next_discovery_ms_ = 0;
  std::uint64_t dumps_ = 0;
  std::uint64_t passes_ = 0;
  int looks_per_sample_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unique_ptr<asio::steady_timer> timer_;
  std::unique_ptr<asio::posix::stream_descriptor> destroy_;
  std::vector<char> destroy_buf_;
};

/// Percentile (nearest rank) of `values`, which it sorts.
std::uint32_t Percentile(std::vector<std::uint32_t>& values, double q);

}  // namespace deskpulse::agent
