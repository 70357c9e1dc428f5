#include "agent/probes/session/session_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace deskpulse::agent {
namespace {

// A loopback listener on an ephemeral port standing in for a display server.
struct Listener {
  int fd = -1;
  std::uint16_t port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::listen(fd, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

// A connected pair (client → listener) that has exchanged some data.
struct Conn {
  int client = -1, server = -1;
  explicit Conn(const Listener& l) {
    client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(l.port);
    EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    server = ::accept(l.fd, nullptr, nullptr);
    char buf[256] = {};
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(::send(client, buf, sizeof buf, 0), static_cast<ssize_t>(sizeof buf));
      EXPECT_EQ(::recv(server, buf, sizeof buf, MSG_WAITALL), static_cast<ssize_t>(sizeof buf));
      EXPECT_EQ(::send(server, buf, 1, 0), 1);
      EXPECT_EQ(::recv(client, buf, 1, 0), 1);
    }
  }
  void Close() {
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
    client = server = -1;
  }
  ~Conn() { Close(); }
};

SessionConfig OnlyPort(std::uint16_t port) {
  SessionConfig c;
  c.ica_ports = {};
  c.blast_ports = {};
  c.pcoip_ports = {};
  c.gateway_ports = {};
  c.rdp_ports = {port};
  c.reconnect_window_s = 10;
  c.rtt_method = "passive";  // a handshake probe would land in the listener's accept queue
  return c;
}

TEST(SockDiag, DumpsLoopbackConnectionWithTcpInfoThroughThePortFilter) {
  Listener display, other;
  Conn a(display), b(other);
  auto conns = DumpTcp({display.port});
  ASSERT_TRUE(conns.ok()) << conns.status().ToString();
  int client_side = 0;
  for (const auto& c : *conns) {
    EXPECT_TRUE(c.local_port == display.port || c.remote_port == display.port)
        << "the kernel filter let through port " << c.local_port << "->" << c.remote_port;
    if (c.remote_port == display.port) {
      ++client_side;
      EXPECT_TRUE(c.has_info);
      EXPECT_GT(c.rtt_us, 0u);
      EXPECT_GT(c.data_segs_out, 0u);
      EXPECT_NE(c.cookie, 0u);
      EXPECT_EQ(c.remote_addr, "127.0.0.1");
    }
  }
  EXPECT_EQ(client_side, 1);
}

TEST(SockDiag, ParserRejectsTruncatedAndHostileBuffers) {
  std::mt19937 rng(3);
  std::vector<TcpConn> out;
  bool done = false;
  for (int i = 0; i < 5000; ++i) {
    std::string buf(rng() % 200, '\0');
    for (auto& ch : buf) ch = static_cast<char>(rng());
    (void)ParseSockDiag(buf, &out, &done);  // must not crash or read past the end (ASan)
  }
  // A header claiming more than the buffer holds.
  std::string lie(16, '\0');
  const std::uint32_t len = 4096;
  std::memcpy(lie.data(), &len, 4);
  EXPECT_EQ(ParseSockDiag(lie, &out, &done).code(), Code::kDataLoss);
}

TEST(SockDiag, DestroyGroupDeliversTheClosedConnection) {
  auto fd = OpenDestroyListener();
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  Listener display;
  { Conn c(display); }  // both ends closed
  bool seen = false;
  char buf[16384];
  while (!seen) {
    pollfd p{*fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no destroy event within 5 s";
    const ssize_t n = ::recv(*fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    std::vector<TcpConn> conns;
    bool done = false;
    ASSERT_TRUE(ParseSockDiag({buf, static_cast<std::size_t>(n)}, &conns, &done).ok());
    for (const auto& c : conns) {
      if (c.remote_port == display.port) seen = true;
    }
  }
  ::close(*fd);
}

TEST(SessionProbe, WindowFromLiveConnection) {
  Listener display;
  Conn c(display);
  SessionProbe probe(OnlyPort(display.port), v1::ENDPOINT_ROLE_THIN_CLIENT);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
  ASSERT_EQ(r.sessions_size(), 1);
  const auto& w = r.sessions(0);
  EXPECT_EQ(w.protocol(), v1::DISPLAY_PROTOCOL_RDP);
  EXPECT_EQ(w.peer(), "127.0.0.1:" + std::to_string(display.port));
  EXPECT_GT(w.rtt_p50_us(), 0u);
  EXPECT_LE(w.rtt_p50_us(), w.rtt_p95_us());
  EXPECT_LE(w.rtt_p95_us(), w.rtt_max_us());
  EXPECT_TRUE(w.has_jitter_us());
  EXPECT_EQ(w.retransmit_ppm(), 0u);
  EXPECT_EQ(w.source(), v1::LATENCY_SOURCE_PASSIVE_TCP_INFO);
  EXPECT_EQ(r.stability().session_s(), 60u);
  EXPECT_EQ(r.unavailable_size(), 0);
}

TEST(SessionProbe, ReconnectWithinTheWindowAndDisconnectAfterIt) {
  Listener display;
  SessionProbe probe(OnlyPort(display.port), v1::ENDPOINT_ROLE_THIN_CLIENT);
  auto c1 = std::make_unique<Conn>(display);
  probe.Sample(1'000);  // the connection that was up when the agent started
  c1.reset();
  probe.Sample(2'000);  // gone
  Conn c2(display);
  probe.Sample(4'500);  // back 2.5 s later: a reconnect
  v1::Report r;
  probe.Collect({.now_unix_ms = 5'000, .window_s = 60}, r);
  ASSERT_EQ(r.stability().session_events_size(), 1);
  const auto& e = r.stability().session_events(0);
  EXPECT_EQ(e.kind(), v1::SESSION_EVENT_KIND_RECONNECT);
  EXPECT_EQ(e.downtime_ms(), 2'500u);

  c2.Close();
  probe.Sample(6'000);
  v1::Report within;
  probe.Collect({.now_unix_ms = 10'000, .window_s = 60}, within);
  for (const auto& ev : within.stability().session_events()) {
    EXPECT_NE(ev.kind(), v1::SESSION_EVENT_KIND_DISCONNECT) << "decided before the window ended";
  }
  v1::Report after;
  probe.Collect({.now_unix_ms = 17'000, .window_s = 60}, after);
  ASSERT_EQ(after.stability().session_events_size(), 1);
  EXPECT_EQ(after.stability().session_events(0).kind(), v1::SESSION_EVENT_KIND_DISCONNECT);
  EXPECT_EQ(after.stability().session_events(0).at_unix_ms(), 6'000);
}

TEST(SessionProbe, ActiveConnectProbeWhenNoSessionIsLive) {
  Listener broker;
  SessionConfig c = OnlyPort(broker.port);
  c.probe_targets = {{"127.0.0.1", broker.port}, {"127.0.0.1", 1}};  // port 1: refused
  SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
  ASSERT_EQ(r.sessions_size(), 2);  // a refusal is a round trip too
  for (const auto& w : r.sessions()) {
    EXPECT_EQ(w.source(), v1::LATENCY_SOURCE_ACTIVE_CONNECT);
    EXPECT_GT(w.rtt_p50_us(), 0u);
  }
  // Rate-limited: not again within probe_interval_s.
  v1::Report again;
  probe.Collect({.now_unix_ms = 1'030'000, .window_s = 60}, again);
  EXPECT_EQ(again.sessions_size(), 0);
}

TEST(SessionProbe, UnresolvableTargetIsUnavailableWithTheName) {
  SessionConfig c = OnlyPort(1);
  c.probe_targets = {{"no-such-host.invalid", 443}};
  SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "session.active_probe");
  EXPECT_NE(r.unavailable(0).reason().find("no-such-host.invalid"), std::string::npos);
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

TEST(SessionProbe, DiscoversByDumpAndSamplesKnownConnectionsByLookup) {
  Listener display;
  SessionConfig c = OnlyPort(display.port);
  c.discovery_interval_s = 60;
  c.reconnect_window_s = 10;
  SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
  auto first = std::make_unique<Conn>(display);
  probe.Sample(1'000);
  EXPECT_EQ(probe.dumps(), 1u);
  Conn second(display);  // a new connection between discoveries ...
  probe.Sample(6'000);
  probe.Sample(11'000);
  EXPECT_EQ(probe.dumps(), 1u);  // ... the known one was looked up, not dumped for
  v1::Report r;
  probe.Collect({.now_unix_ms = 12'000, .window_s = 60}, r);
  ASSERT_EQ(r.sessions_size(), 1);  // both connections are to the same peer: one window
  EXPECT_EQ(r.stability().session_events_size(), 0);  // the new one is not found yet

  first.reset();                                    // a close ...
  probe.Sample(16'000);                             // ... seen by the lookup
  EXPECT_EQ(probe.NextSampleDelayMs(16'000), 100);  // watching for the reconnect
  probe.Sample(16'100);  // within the reconnect window: discovery, which finds it
  EXPECT_EQ(probe.dumps(), 2u);
  v1::Report after;
  probe.Collect({.now_unix_ms = 22'000, .window_s = 60}, after);  // not started: samples too
  EXPECT_EQ(probe.dumps(), 2u);  // the reconnect came: back to lookups
  ASSERT_EQ(after.stability().session_events_size(), 1);
  EXPECT_EQ(after.stability().session_events(0).kind(), v1::SESSION_EVENT_KIND_RECONNECT);
  EXPECT_EQ(after.stability().session_events(0).downtime_ms(), 100u);
  probe.Sample(31'000);
  EXPECT_EQ(probe.dumps(), 2u);
  probe.Sample(77'000);  // a discovery interval after the last dump
  EXPECT_EQ(probe.dumps(), 3u);
}

TEST(SockDiag, FamiliesWithoutTcpSocketsAreNotDumped) {
  const TcpFamilies f =
      TcpFamiliesInUse(std::string(DESKPULSE_TEST_DATA) + "/session/sockstat-v4-only");
  EXPECT_TRUE(f.v4);
  EXPECT_FALSE(f.v6);
  const TcpFamilies unknown = TcpFamiliesInUse("/does-not-exist");
  EXPECT_TRUE(unknown.v4 && unknown.v6);  // unreadable: dump both
}

TEST(SockDiag, LookupFindsALiveConnectionAndNotAClosedOne) {
  Listener display;
  auto conn = std::make_unique<Conn>(display);
  auto dumped = DumpTcp({display.port});
  ASSERT_TRUE(dumped.ok()) << dumped.status().message();
  ASSERT_FALSE(dumped->empty());
  const TcpConn known = (*dumped)[0];
  auto found = LookupTcp(known);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->cookie, known.cookie);
  EXPECT_TRUE((*found)->has_info);
  conn.reset();
  auto gone = LookupTcp(known);
  ASSERT_TRUE(gone.ok()) << gone.status().message();
  EXPECT_FALSE(gone->has_value());
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

TEST(SessionProbe, ManyLiveConnectionsAreSampledByOneDumpNotALookupEach) {
  Listener display;
  SessionConfig c = OnlyPort(display.port);
  SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
  std::vector<std::unique_ptr<Conn>> conns;
  conns.reserve(40);
  for (int i = 0; i < 40; ++i) conns.push_back(std::make_unique<Conn>(display));
  probe.Sample(1'000);
  probe.Sample(6'000);
  EXPECT_EQ(probe.dumps(), 2u);  // 40 lookups would cost more than one dump
  conns.resize(3);
  probe.Sample(11'000);  // 37 gone: still counted by the dump
  probe.Sample(16'000);  // back to lookups? no: the closes opened the reconnect window
  probe.Sample(40'000);  // 3 live, no window: lookups
  EXPECT_EQ(probe.dumps(), 4u);
}

}  // namespace
}  // namespace deskpulse::agent

// ---------------------------------------------------------------- lifecycle and truth
namespace deskpulse::agent {
namespace {

// The kernel as a test sets it: the connections the next dump or lookup
// returns, and the answers handshake probes get, in order.
class ReplayKernel : public SessionKernel {
 public:
  std::vector<TcpConn> conns;
  std::vector<PeerAnswer> answers;  // consumed front first; empty: no answer
  int probes = 0;

  void Attach(const asio::any_io_executor&) override {}
  TcpFamilies Families() override { return {}; }
  Result<std::vector<TcpConn>> Dump(const std::vector<std::uint16_t>&, TcpFamilies) override {
    return conns;
  }
  Result<std::optional<TcpConn>> Lookup(const TcpConn& known) override {
    for (const auto& c : conns) {
      if (c.cookie == known.cookie) return std::optional<TcpConn>(c);
    }
    return std::optional<TcpConn>{};
  }
  std::uint16_t ProbePeer(const std::string&, std::uint16_t, int,
                          std::function<void(const PeerAnswer&)> done) override {
    ++probes;
    PeerAnswer a;
    a.error = "no answer within 900 ms";
    if (!answers.empty()) {
      a = answers.front();
      answers.erase(answers.begin());
    }
    done(a);
    return 0;
  }
};

TcpConn DisplayConn(std::uint64_t cookie, const std::string& remote, std::uint16_t remote_port,
                    std::uint16_t local_port) {
  TcpConn c;
  c.cookie = cookie;
  c.family = AF_INET;
  c.state = 1;
  c.local_addr = "10.77.0.2";
  c.local_port = local_port;
  c.remote_addr = remote;
  c.remote_port = remote_port;
  c.has_info = true;
  c.rtt_us = 50'000;
  c.rttvar_us = 2'000;
  c.data_segs_in = 100;
  c.data_segs_out = 100;
  c.rto_us = 250'000;
  return c;
}

struct Replay {
  ReplayKernel* kernel;
  std::unique_ptr<SessionProbe> probe;
};

Replay MakeReplay(SessionConfig config, v1::EndpointRole role) {
  auto k = std::make_unique<ReplayKernel>();
  ReplayKernel* raw = k.get();
  return {raw, std::make_unique<SessionProbe>(std::move(config), role, std::move(k))};
}

std::vector<v1::SessionEventKind> Kinds(const v1::Report& r) {
  std::vector<v1::SessionEventKind> out;
  for (const auto& e : r.stability().session_events()) out.push_back(e.kind());
  return out;
}

TEST(SessionLifecycle, AReconnectWithinOneDumpIsOneReconnect) {
  Listener display;
  SessionProbe probe(OnlyPort(display.port), v1::ENDPOINT_ROLE_THIN_CLIENT);
  auto c1 = std::make_unique<Conn>(display);
  probe.Sample(1'000);
  c1.reset();
  Conn c2(display);      // the close and the new connection land in one dump
  probe.Sample(61'000);  // discovery is due
  v1::Report r;
  probe.Collect({.now_unix_ms = 90'000, .window_s = 60}, r);  // the window has passed
  EXPECT_EQ(Kinds(r), std::vector<v1::SessionEventKind>{v1::SESSION_EVENT_KIND_RECONNECT});
}

TEST(SessionLifecycle, TheReconnectWindowIsEnforcedAcrossDumps) {
  Listener display;
  SessionProbe probe(OnlyPort(display.port), v1::ENDPOINT_ROLE_THIN_CLIENT);
  auto c1 = std::make_unique<Conn>(display);
  probe.Sample(1'000);
  c1.reset();
  probe.Sample(2'000);  // the close
  Conn c2(display);
  probe.Sample(42'000);  // the window passed 30 s ago: a disconnect
  probe.Sample(62'000);  // the next discovery finds a new session, not a reconnect
  v1::Report r;
  probe.Collect({.now_unix_ms = 63'000, .window_s = 60}, r);
  ASSERT_EQ(Kinds(r), (std::vector<v1::SessionEventKind>{v1::SESSION_EVENT_KIND_DISCONNECT,
                                                         v1::SESSION_EVENT_KIND_CONNECT}));
  EXPECT_EQ(r.stability().session_events(0).at_unix_ms(), 2'000);
  for (const auto& e : r.stability().session_events()) EXPECT_FALSE(e.has_downtime_ms());
}

TEST(SessionLifecycle, DowntimeRunsFromTheCloseToTheNewConnection) {
  auto [kernel, probe] = MakeReplay(OnlyPort(3389), v1::ENDPOINT_ROLE_THIN_CLIENT);
  kernel->conns = {DisplayConn(1, "10.77.0.1", 3389, 40000)};
  std::int64_t t = 1'000;
  probe->Sample(t);
  probe->OnDestroyed(kernel->conns[0], 2'000);  // closed at 2.000 s
  kernel->conns.clear();
  // The timer's cadence after a close: the reconnect at 3.600 s is seen
  // within 100 ms of it, not at the next 1 s (or 5 s) sample.
  t = 2'000;
  bool reopened = false;
  while (t < 5'000) {
    t += probe->NextSampleDelayMs(t);
    if (!reopened && t >= 3'600) {
      kernel->conns = {DisplayConn(2, "10.77.0.1", 3389, 40002)};
      reopened = true;
    }
    probe->Sample(t);
  }
  v1::Report r;
  probe->Collect({.now_unix_ms = 6'000, .window_s = 60}, r);
  ASSERT_EQ(Kinds(r), std::vector<v1::SessionEventKind>{v1::SESSION_EVENT_KIND_RECONNECT});
  EXPECT_GE(r.stability().session_events(0).downtime_ms(), 1'600u);
  EXPECT_LE(r.stability().session_events(0).downtime_ms(), 1'700u);
  // Connected 1.0–2.0 s and from the reconnect on: not the whole window.
  EXPECT_EQ(r.stability().session_s(), 3u);
}

TEST(SessionLifecycle, WithNothingLiveDiscoveryRunsOnItsOwnTimer) {
  auto [kernel, probe] = MakeReplay(OnlyPort(3389), v1::ENDPOINT_ROLE_THIN_CLIENT);
  probe->Sample(1'000);
  EXPECT_EQ(probe->NextSampleDelayMs(1'000), 60'000);  // discovery_interval_s, not a report cycle
  kernel->conns = {DisplayConn(1, "10.77.0.1", 3389, 40000)};
  probe->Sample(61'000);
  EXPECT_EQ(probe->dumps(), 2u);
  EXPECT_EQ(probe->NextSampleDelayMs(61'000), 1'000);  // something live: every sample_interval_s
}

TEST(SessionClassify, AGatewayPortConnectionToANonGatewayIsNotASession) {
  Listener https;
  SessionConfig c = OnlyPort(1);
  c.rdp_ports = {};
  c.gateway_ports = {https.port};
  Conn browser(https);
  {
    SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
    v1::Report r;
    probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
    EXPECT_EQ(r.sessions_size(), 0) << "a browser's HTTPS is not a display session";
    EXPECT_FALSE(r.has_stability());
  }
  c.gateways = {"127.0.0.1"};  // now the peer is the configured gateway
  {
    SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
    v1::Report r;
    probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
    ASSERT_EQ(r.sessions_size(), 1);
    EXPECT_EQ(r.sessions(0).protocol(), v1::DISPLAY_PROTOCOL_GATEWAY);
  }
  c.gateways = {"localhost"};  // by name
  {
    SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
    v1::Report r;
    probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
    EXPECT_EQ(r.sessions_size(), 1);
  }
  c.gateways = {};
  c.gateway_port_any_peer = true;  // an endpoint that carries nothing else on it
  {
    SessionProbe probe(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
    v1::Report r;
    probe.Collect({.now_unix_ms = 1'000'000, .window_s = 60}, r);
    EXPECT_EQ(r.sessions_size(), 1);
  }
}

TEST(SessionStall, ACutWithTheSocketOpenIsAStallNotANormalWindow) {
  SessionConfig c = OnlyPort(3389);
  auto [kernel, probe] = MakeReplay(c, v1::ENDPOINT_ROLE_VDI_GUEST);
  TcpConn conn = DisplayConn(1, "10.77.0.2", 51000, 3389);
  conn.unacked = 2;
  conn.last_ack_recv_ms = 10;
  kernel->conns = {conn};
  probe->Sample(1'000);
  // The path is cut at 2.000 s: the last ACK. The sender keeps data
  // outstanding and backs off; tcp_info's RTT freezes at its last value.
  auto cut = [&, k = kernel, p = probe.get()](std::int64_t now, int backoff) {
    TcpConn s = conn;
    s.unacked = 12;
    s.backoff = static_cast<std::uint8_t>(backoff);
    s.last_ack_recv_ms = static_cast<std::uint32_t>(now - 2'000);
    k->conns = {s};
    p->Sample(now);
  };
  cut(3'000, 1);  // 1 s without an ACK: below the threshold
  int backoff = 1;
  for (std::int64_t t = 4'000; t <= 20'000; t += 1'000) cut(t, ++backoff > 7 ? 7 : backoff);
  v1::Report during;
  probe->Collect({.now_unix_ms = 20'000, .window_s = 19}, during);
  ASSERT_EQ(during.sessions_size(), 1);
  EXPECT_EQ(during.sessions(0).stalled_ms(), 18'000u) << "frozen since the last ACK at 2 s";
  EXPECT_EQ(during.sessions(0).rtt_samples(), 2u) << "no RTT samples while nothing is acknowledged";
  EXPECT_EQ(during.stability().stalls_size(), 0) << "still going";
  EXPECT_GT(kernel->probes, 10) << "the peer is probed every pass during a stall";

  // The path is back at 32 s: the peer's kernel answers a probe (a reset: no
  // listener on a client's port) ...
  for (std::int64_t t = 21'000; t <= 31'000; t += 1'000) cut(t, 7);
  kernel->answers = {PeerAnswer{.answered = true, .refused = true, .rtt_us = 50'000, .error = {}}};
  cut(32'000, 7);
  // ... and TCP's next retransmission, at 52.5 s, is acknowledged.
  for (std::int64_t t = 33'000; t <= 52'000; t += 1'000) cut(t, 7);
  TcpConn back = conn;
  back.last_ack_recv_ms = 500;
  kernel->conns = {back};
  probe->Sample(53'000);
  v1::Report after;
  probe->Collect({.now_unix_ms = 60'000, .window_s = 40}, after);
  ASSERT_EQ(after.stability().stalls_size(), 1);
  const auto& s = after.stability().stalls(0);
  EXPECT_EQ(s.start_unix_ms(), 2'000);
  EXPECT_EQ(s.duration_ms(), 30'025u) << "until the path answered (probe sent at 32 s + RTT/2)";
  EXPECT_EQ(s.frozen_ms(), 50'500u) << "until the connection acknowledged again";
  EXPECT_EQ(s.peer(), "10.77.0.2:51000");
  ASSERT_EQ(after.sessions_size(), 1);
  EXPECT_EQ(after.sessions(0).stalled_ms(), 32'500u);  // 20 s → 52.5 s
}

TEST(SessionStall, AnIdleConnectionThatJustSentIsNotStalled) {
  auto [kernel, probe] = MakeReplay(OnlyPort(3389), v1::ENDPOINT_ROLE_VDI_GUEST);
  TcpConn c = DisplayConn(1, "10.77.0.2", 51000, 3389);
  c.unacked = 1;
  c.last_ack_recv_ms = 60'000;  // the last ACK was a minute ago, before the idle time
  c.backoff = 0;                // and no retransmission timeout has fired
  kernel->conns = {c};
  probe->Sample(1'000);
  v1::Report r;
  probe->Collect({.now_unix_ms = 2'000, .window_s = 60}, r);
  ASSERT_EQ(r.sessions_size(), 1);
  EXPECT_FALSE(r.sessions(0).has_stalled_ms());
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

// A thin client's session as the truth rig (bench/session_truth) recorded it:
// every second, the session socket's tcp_info (`ss -ti`), and every fifth a
// handshake to the peer's address and port. The socket's own RTT carries the
// server's wait to piggyback its ACK on the next frame (33 ms at 30 frames/s);
// the agent's figure must be the network's.
void ReplayThinClient(const std::string& fixture) {
  std::ifstream in(std::string(DESKPULSE_TEST_DATA) + "/session/" + fixture);
  ASSERT_TRUE(in) << fixture;
  const auto doc = nlohmann::json::parse(in);
  const double truth_p50 = doc["truth_udp_p50_ms"].get<double>();
  const double truth_p95 = doc["truth_udp_p95_ms"].get<double>();
  SessionConfig c = OnlyPort(3389);
  c.rtt_method = "auto";
  auto [kernel, probe] = MakeReplay(c, v1::ENDPOINT_ROLE_THIN_CLIENT);
  std::vector<std::uint32_t> passive;
  std::int64_t first = 0, last = 0;
  for (const auto& tick : doc["ticks"]) {
    const auto& k = tick["conn"];
    TcpConn conn = DisplayConn(1, "10.77.0.1", 3389, 40000);
    conn.rtt_us = k["rtt_us"];
    conn.rttvar_us = k["rttvar_us"];
    conn.min_rtt_us = k["min_rtt_us"];
    conn.unacked = k["unacked"];
    conn.last_ack_recv_ms = k["last_ack_recv_ms"];
    conn.backoff = static_cast<std::uint8_t>(k["backoff"].get<int>());
    conn.rto_us = k["rto_us"];
    conn.total_retrans = k["total_retrans"];
    conn.data_segs_out = k["data_segs_out"];
    conn.data_segs_in = k["data_segs_in"];
    kernel->conns = {conn};
    passive.push_back(conn.rtt_us);
    if (!tick["probe_rtt_us"].is_null()) {
      PeerAnswer a;
      a.answered = true;
      a.rtt_us = tick["probe_rtt_us"];
      kernel->answers.push_back(a);
    }
    last = tick["t_ms"];
    if (first == 0) first = last;
    probe->Sample(last);
  }
  v1::Report r;
  probe->Collect(
      {.now_unix_ms = last, .window_s = static_cast<std::uint32_t>((last - first) / 1000)}, r);
  ASSERT_EQ(r.sessions_size(), 1);
  const auto& w = r.sessions(0);
  EXPECT_EQ(w.source(), v1::LATENCY_SOURCE_PEER_CONNECT);
  EXPECT_GE(w.rtt_samples(), 10u);
  const double p50 = w.rtt_p50_us() / 1000.0, p95 = w.rtt_p95_us() / 1000.0;
  EXPECT_NEAR(p50, truth_p50, std::max(2.0, 0.10 * truth_p50)) << fixture;
  EXPECT_NEAR(p95, truth_p95, std::max(3.0, 0.15 * truth_p95)) << fixture;
  // The fixture does carry the bias the agent must not report.
  const double passive_p50 = Percentile(passive, 0.5) / 1000.0;
  EXPECT_GT(std::abs(passive_p50 - truth_p50), std::max(2.0, 0.10 * truth_p50))
      << "passive p50 " << passive_p50 << " ms";
}

TEST(SessionRtt, ThinClientRttIsTheNetworksNotTheServersAckDelay) {
  ReplayThinClient("thin-client-rtt20-loss0.json");
  ReplayThinClient("thin-client-rtt50-loss2.json");
}

}  // namespace
}  // namespace deskpulse::agent
