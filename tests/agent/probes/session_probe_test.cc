#include "agent/probes/session/session_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

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
  {
    Conn c(display);
  }  // both ends closed
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
  Conn second(display);          // a new connection between discoveries ...
  probe.Sample(6'000);
  probe.Sample(11'000);
  EXPECT_EQ(probe.dumps(), 1u);  // ... the known one was looked up, not dumped for
  v1::Report r;
  probe.Collect({.now_unix_ms = 12'000, .window_s = 60}, r);
  ASSERT_EQ(r.sessions_size(), 1);  // both connections are to the same peer: one window
  EXPECT_EQ(r.stability().session_events_size(), 0);  // the new one is not found yet

  first.reset();               // a close ...
  probe.Sample(16'000);        // ... seen by the lookup
  probe.Sample(21'000);        // within the reconnect window: discovery again
  EXPECT_EQ(probe.dumps(), 2u);
  v1::Report after;
  probe.Collect({.now_unix_ms = 22'000, .window_s = 60}, after);  // not started: samples too
  EXPECT_EQ(probe.dumps(), 3u);  // still within the window
  ASSERT_EQ(after.stability().session_events_size(), 1);
  EXPECT_EQ(after.stability().session_events(0).kind(), v1::SESSION_EVENT_KIND_RECONNECT);
  probe.Sample(31'000);        // the window has passed: back to lookups
  EXPECT_EQ(probe.dumps(), 3u);
  probe.Sample(82'000);        // a discovery interval after the last dump
  EXPECT_EQ(probe.dumps(), 4u);
}

TEST(SockDiag, FamiliesWithoutTcpSocketsAreNotDumped) {
  const TcpFamilies f = TcpFamiliesInUse(std::string(DESKPULSE_TEST_DATA) + "/session/sockstat-v4-only");
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
  probe.Sample(11'000);          // 37 gone: still counted by the dump
  probe.Sample(16'000);          // back to lookups? no: the closes opened the reconnect window
  probe.Sample(40'000);          // 3 live, no window: lookups
  EXPECT_EQ(probe.dumps(), 4u);
}

}  // namespace
}  // namespace deskpulse::agent
