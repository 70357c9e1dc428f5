#include "agent/probes/session/session_probe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

// While a display connection is down, dump this often to time its reconnect.
constexpr std::int64_t kReconnectWatchMs = 100;
// Past a few dozen live connections (a VDI host) one dump is cheaper than a
// lookup each.
constexpr std::size_t kMaxLookups = 32;
// Passive RTT: each sample is the least of this many looks at tcpi_rtt spread
// over the sample interval. After a lost ACK the next cumulative ACK covers an
// older segment, and Linux times it from that segment's send: the smoothed RTT
// jumps by a frame interval and decays over about eight ACKs (a quarter second
// at 30 frames/s). The least of four looks skips those bumps.
constexpr int kLooksPerSample = 4;
// Gateway names are looked up again this often.
constexpr std::int64_t kResolveEveryMs = 600'000;

std::string JoinHostPort(const std::string& addr, std::uint16_t port) {
  if (addr.find(':') != std::string::npos) return "[" + addr + "]:" + std::to_string(port);
  return addr + ":" + std::to_string(port);
}

// Elapsed µs of one blocking TCP connect (≈ one RTT: SYN → SYN/ACK). A
// refusal (RST) is also a round trip. Errors name the target.
Result<std::uint32_t> TimeConnect(const HostPort& target, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(target.port);
  if (int rc = ::getaddrinfo(target.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Unavailable(target.host + ": " + ::gai_strerror(rc));
  }
  const int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return Unavailable(std::string("socket: ") + std::strerror(errno));
  }
  const auto start = std::chrono::steady_clock::now();
  int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  int err = rc == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, timeout_ms);
    if (rc == 0) {
      ::close(fd);
      return Status(Code::kDeadlineExceeded, JoinHostPort(target.host, target.port) +
                                                 ": no answer within " +
                                                 std::to_string(timeout_ms) + " ms");
    }
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  linger l{1, 0};  // reset, no TIME_WAIT left behind
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
  if (err != 0 && err != ECONNREFUSED) {
    return Unavailable(JoinHostPort(target.host, target.port) + ": " + std::strerror(err));
  }
  return static_cast<std::uint32_t>(std::max<std::int64_t>(1, us));
}

}  // namespace

std::uint32_t Percentile(std::vector<std::uint32_t>& values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // Nearest rank, ceil(q * n), in integer steps: the agent links no libm.
  const double exact = q * static_cast<double>(values.size());
  std::size_t rank = exact > 0 ? static_cast<std::size_t>(exact) : 0;
  if (static_cast<double>(rank) < exact) ++rank;
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

SessionProbe::SessionProbe(SessionConfig config, v1::EndpointRole role,
                           std::unique_ptr<SessionKernel> kernel)
    : config_(std::move(config)), role_(role), kernel_(std::move(kernel)) {
  if (!kernel_) kernel_ = MakeLinuxSessionKernel("/proc");
  connect_rtt_ = config_.rtt_method == "connect" ||
                 (config_.rtt_method == "auto" && role_ == v1::ENDPOINT_ROLE_THIN_CLIENT);
  auto add = [&](const std::vector<std::uint16_t>& ports, v1::DisplayProtocol p) {
    for (auto port : ports) {
      if (protocol_of_.emplace(port, p).second) ports_.push_back(port);
    }
  };
  add(config_.ica_ports, v1::DISPLAY_PROTOCOL_ICA);
  add(config_.blast_ports, v1::DISPLAY_PROTOCOL_BLAST);
  add(config_.pcoip_ports, v1::DISPLAY_PROTOCOL_PCOIP);
  add(config_.rdp_ports, v1::DISPLAY_PROTOCOL_RDP);
  add(config_.gateway_ports, v1::DISPLAY_PROTOCOL_GATEWAY);
}

SessionProbe::~SessionProbe() { *alive_ = false; }

void SessionProbe::ResolveGateways(std::int64_t now_ms) {
  if (config_.gateways.empty() || config_.gateway_port_any_peer) return;
  if (gateways_resolved_ms_ != 0 && now_ms - gateways_resolved_ms_ < kResolveEveryMs) return;
  gateways_resolved_ms_ = now_ms;
  std::set<std::string> addrs;
  std::string errors;
  for (const std::string& name : config_.gateways) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res); rc != 0) {
      errors += (errors.empty() ? "" : "; ") + name + ": " + ::gai_strerror(rc);
      continue;
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
        ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
        addrs.insert(text);
        addrs.insert(std::string("::ffff:") + text);  // as a dual-stack socket shows it
      } else if (a->ai_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
        ::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
        addrs.insert(text);
      }
    }
    ::freeaddrinfo(res);
  }
  // A name that stops resolving keeps the addresses it had.
  if (addrs.empty() && !gateway_addrs_.empty()) addrs = gateway_addrs_;
  gateway_addrs_ = std::move(addrs);
  gateway_error_ = std::move(errors);
}

bool SessionProbe::Classify(const TcpConn& c, v1::DisplayProtocol* protocol,
                            std::string* peer) const {
  if (own_ports_.count(c.local_port) != 0) return false;  // our own handshake probe
  auto is_session = [&](v1::DisplayProtocol p) {
    // A gateway port (443) carries every HTTPS connection: only a configured
    // gateway's is a display session.
    return p != v1::DISPLAY_PROTOCOL_GATEWAY || config_.gateway_port_any_peer ||
           gateway_addrs_.count(c.remote_addr) != 0;
  };
  // A thin client connects out to the display port; a VDI guest or host
  // serves it (and may also connect out through a gateway).
  if (auto it = protocol_of_.find(c.remote_port);
      it != protocol_of_.end() && is_session(it->second)) {
    *protocol = it->second;
    *peer = JoinHostPort(c.remote_addr, c.remote_port);
    return true;
  }
  if (role_ != v1::ENDPOINT_ROLE_THIN_CLIENT) {
    if (auto it = protocol_of_.find(c.local_port);
        it != protocol_of_.end() && is_session(it->second)) {
      *protocol = it->second;
      *peer = JoinHostPort(c.remote_addr, c.remote_port);
      return true;
    }
  }
  return false;
}

void SessionProbe::CountStall(Tracked& t, std::int64_t upto_ms) {
  const std::int64_t from = std::max({t.stall_start_ms, t.stall_counted_to_ms, window_start_ms_});
  if (upto_ms > from) t.stalled_ms += upto_ms - from;
  t.stall_counted_to_ms = std::max(t.stall_counted_to_ms, upto_ms);
}

void SessionProbe::EndStall(Tracked& t, std::int64_t end_ms, bool acknowledged) {
  end_ms = std::max(end_ms, t.stall_start_ms);
  v1::SessionStall s;
  s.set_protocol(t.protocol);
  s.set_peer(t.peer);
  s.set_start_unix_ms(t.stall_start_ms);
  const std::int64_t path_end = t.path_back_ms != 0 ? std::min(t.path_back_ms, end_ms) : end_ms;
  s.set_duration_ms(static_cast<std::uint64_t>(path_end - t.stall_start_ms));
  if (acknowledged) s.set_frozen_ms(static_cast<std::uint64_t>(end_ms - t.stall_start_ms));
  stalls_.push_back(std::move(s));
  t.stall_start_ms = 0;
  t.path_back_ms = 0;
}

void SessionProbe::AddSample(Tracked& t, const TcpConn& c, std::int64_t now_ms) {
  t.last_seen_ms = now_ms;
  t.conn = c;
  if (!c.has_info) return;
  t.retrans_now = c.total_retrans;
  t.segs_now = c.data_segs_out;
  // Stalled: data outstanding, the retransmission timer has fired, and no
  // ACK for the threshold. (An idle connection that has just sent has a
  // stale last-ACK time but no backoff yet.) It began at the last ACK, and
  // not before the last time nothing was outstanding.
  const bool stalled = c.unacked > 0 && c.backoff > 0 &&
                       c.last_ack_recv_ms >= static_cast<std::uint32_t>(config_.stall_threshold_ms);
  if (stalled) {
    if (t.stall_start_ms == 0) {
      t.stall_start_ms = std::max(now_ms - std::int64_t(c.last_ack_recv_ms), t.idle_seen_ms);
      t.stall_counted_to_ms = t.stall_start_ms;
      t.path_back_ms = 0;
    }
    CountStall(t, now_ms);
    return;  // the RTT estimate does not move without ACKs: not a sample
  }
  if (t.stall_start_ms != 0) {
    const std::int64_t acked_at = now_ms - std::int64_t(c.last_ack_recv_ms);
    CountStall(t, acked_at);
    EndStall(t, acked_at, true);
  }
  if (c.unacked == 0) t.idle_seen_ms = now_ms;
  // tcpi_rtt only moves on ACKs; an idle socket repeats its last value, which
  // is still the latest estimate the kernel has.
  if (c.rtt_us > 0) {
    if (t.looks == 0 || c.rtt_us < t.look_min_rtt_us) {
      t.look_min_rtt_us = c.rtt_us;
      t.look_rttvar_us = c.rttvar_us;
    }
    if (++t.looks >= looks_per_sample_) {
      t.rtt_us.push_back(t.look_min_rtt_us);
      t.rttvar_us.push_back(t.look_rttvar_us);
      t.looks = 0;
    }
  }
}

void SessionProbe::Sample(std::int64_t now_ms) {
  if (window_start_ms_ == 0) window_start_ms_ = now_ms;
  ++passes_;
  ResolveGateways(now_ms);
  ExpireClosings(now_ms);
  // A dump walks the kernel's whole TCP hash table; looking up a known
  // connection is one hash probe. So dump to discover (at start, every
  // discovery_interval_s, and every 100 ms while a display connection that
  // closed may come back, to time its reconnect) and look up known ones in
  // between.
  const bool discover = !sampled_once_ || now_ms >= next_discovery_ms_ || !closing_.empty() ||
                        live_.size() > kMaxLookups;
  // Lookups are cheap enough to look several times a sample; dumps are not.
  // One pass (--once) is one look.
  looks_per_sample_ = live_.size() > kMaxLookups || !started_ ? 1 : kLooksPerSample;
  if (discover) {
    Discover(now_ms);
  } else {
    SampleKnown(now_ms);
  }
  ProbePeers(now_ms);
}

void SessionProbe::Discover(std::int64_t now_ms) {
  next_discovery_ms_ = now_ms + std::int64_t(config_.discovery_interval_s) * 1000;
  ++dumps_;
  auto conns = kernel_->Dump(ports_, kernel_->Families());
  if (!conns.ok()) {
    dump_error_ = conns.status().message();
    return;
  }
  dump_error_.clear();
  struct Seen {
    const TcpConn* conn;
    v1::DisplayProtocol protocol;
    std::string peer;
  };
  std::vector<Seen> display;
  std::set<std::uint64_t> present;
  for (const TcpConn& c : *conns) {
    Seen s{&c, {}, {}};
    if (!Classify(c, &s.protocol, &s.peer)) continue;
    present.insert(c.cookie);
    display.push_back(std::move(s));
  }
  // Vanished ones close first, so that a reconnect within this one dump is
  // matched to the close it follows.
  for (auto it = live_.begin(); it != live_.end();) {
    const std::uint64_t cookie = it->first;
    ++it;
    if (present.count(cookie) == 0) Closing(cookie, now_ms);
  }
  for (const Seen& s : display) {
    const TcpConn& c = *s.conn;
    if (auto it = live_.find(c.cookie); it != live_.end()) {
      AddSample(it->second, c, now_ms);
      continue;
    }
    // A handshake that never carried data is not a session yet (a probe's
    // connect-and-reset, or one just accepted): the next dump sees it.
    if (c.has_info && c.data_segs_in == 0 && c.data_segs_out == 0) continue;
    if (live_.empty()) up_since_ms_ = now_ms;
    Tracked& t = live_[c.cookie];
    t.protocol = s.protocol;
    t.peer = s.peer;
    t.peer_addr = c.remote_addr;
    t.retrans_at_start = c.total_retrans;
    t.segs_at_start = c.data_segs_out;
    t.idle_seen_ms = now_ms;
    // A new connection to a peer that dropped within the window is a
    // reconnect; its downtime runs from the close to this connection.
    auto back = std::find_if(closing_.begin(), closing_.end(), [&](const Closed& x) {
      return x.protocol == s.protocol && x.peer_addr == c.remote_addr &&
             now_ms - x.at_ms <= std::int64_t(config_.reconnect_window_s) * 1000;
    });
    v1::SessionEvent e;
    e.set_at_unix_ms(now_ms);
    if (back != closing_.end()) {
      e.set_kind(v1::SESSION_EVENT_KIND_RECONNECT);
      e.set_reason("reconnected to " + s.peer);
      e.set_downtime_ms(
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ms - back->at_ms)));
      closing_.erase(back);
    } else {
      e.set_kind(v1::SESSION_EVENT_KIND_CONNECT);
      e.set_reason("connected to " + s.peer);
    }
    // Connections already up at the first look are not new sessions.
    if (sampled_once_) events_.push_back(std::move(e));
    AddSample(t, c, now_ms);
  }
  sampled_once_ = true;
}

void SessionProbe::SampleKnown(std::int64_t now_ms) {
  std::vector<std::uint64_t> gone;
  for (auto& [cookie, t] : live_) {
    auto c = kernel_->Lookup(t.conn);
    if (!c.ok()) {
      dump_error_ = c.status().message();
      return;
    }
    if (!c->has_value()) {
      gone.push_back(cookie);
      continue;
    }
    AddSample(t, **c, now_ms);
  }
  dump_error_.clear();
  for (std::uint64_t cookie : gone) Closing(cookie, now_ms);
}

void SessionProbe::Closing(std::uint64_t cookie, std::int64_t at_ms) {
  auto it = live_.find(cookie);
  if (it == live_.end()) return;
  Tracked& t = it->second;
  if (t.stall_start_ms != 0) {
    CountStall(t, at_ms);
    EndStall(t, at_ms, false);
  }
  closing_.push_back(Closed{t.protocol, t.peer_addr, at_ms});
  finished_.push_back(std::move(t));
  live_.erase(it);
  if (live_.empty() && up_since_ms_ >= 0) {
    connected_ms_ += std::max<std::int64_t>(0, at_ms - std::max(up_since_ms_, window_start_ms_));
    up_since_ms_ = -1;
  }
}

void SessionProbe::ExpireClosings(std::int64_t now_ms) {
  // Drops with no reconnect inside the window are disconnects.
  const std::int64_t window = std::int64_t(config_.reconnect_window_s) * 1000;
  for (auto it = closing_.begin(); it != closing_.end();) {
    if (now_ms - it->at_ms > window) {
      v1::SessionEvent e;
      e.set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
      e.set_at_unix_ms(it->at_ms);
      e.set_reason("connection to " + it->peer_addr + " closed, no reconnect within " +
                   std::to_string(config_.reconnect_window_s) + " s");
      events_.push_back(std::move(e));
      it = closing_.erase(it);
    } else {
      ++it;
    }
  }
}

void SessionProbe::OnDestroyed(const TcpConn& conn, std::int64_t now_ms) {
  auto it = live_.find(conn.cookie);
  if (it == live_.end()) return;
  AddSample(it->second, conn, now_ms);  // the final tcp_info
  Closing(conn.cookie, now_ms);
}

void SessionProbe::ProbePeers(std::int64_t now_ms) {
  // One handshake in flight per peer. On a thin client they are the RTT
  // samples, every rtt_probe_interval_s; on any role, while a connection to
  // the peer is stalled, every pass, to time when the path answers again.
  std::map<GroupKey, const Tracked*> groups;
  std::set<GroupKey> stalled;
  for (const auto& [cookie, t] : live_) {
    const GroupKey key{t.protocol, t.peer};
    groups.emplace(key, &t);
    if (t.stall_start_ms != 0 && t.path_back_ms == 0) stalled.insert(key);
  }
  const std::int64_t tick_ms = std::int64_t(config_.sample_interval_s) * 1000;
  for (const auto& [group, t] : groups) {
    const GroupKey key = group;  // a structured binding cannot be captured (clang 14)
    PeerRtt& g = peer_rtt_[key];
    if (g.in_flight) continue;
    // During a stall: once a sample interval, not every look.
    const bool is_stalled = stalled.count(key) != 0 && now_ms - g.last_probe_ms >= tick_ms;
    const bool due = connect_rtt_ && (g.last_probe_ms == 0 ||
                                      now_ms - g.last_probe_ms >=
                                          std::int64_t(config_.rtt_probe_interval_s) * 1000);
    if (!is_stalled && !due) continue;
    const int timeout_ms =
        is_stalled
            ? static_cast<int>(std::min<std::int64_t>(config_.probe_timeout_ms, tick_ms * 9 / 10))
            : config_.probe_timeout_ms;
    g.in_flight = true;
    g.last_probe_ms = now_ms;
    std::weak_ptr<bool> alive = alive_;
    const std::uint16_t local =
        kernel_->ProbePeer(t->conn.remote_addr, t->conn.remote_port, timeout_ms,
                           [this, alive, key, now_ms](const PeerAnswer& a) {
                             if (auto p = alive.lock(); p && *p) OnPeerAnswer(key, now_ms, a);
                           });
    if (g.in_flight && local != 0) own_ports_.insert(local);
  }
}

void SessionProbe::OnPeerAnswer(const GroupKey& key, std::int64_t sent_ms, const PeerAnswer& a) {
  own_ports_.erase(a.local_port);
  PeerRtt& g = peer_rtt_[key];
  g.in_flight = false;
  if (!a.answered) {
    g.last_error = a.error;
    return;
  }
  g.last_error.clear();
  // The SYN reached the peer half a round trip after it left: the path was
  // back by then.
  const std::int64_t reached = sent_ms + std::int64_t(a.rtt_us) / 2000;
  std::uint32_t rto_us = 0;
  for (auto& [cookie, t] : live_) {
    if (t.protocol != key.first || t.peer != key.second) continue;
    if (t.stall_start_ms != 0 && t.path_back_ms == 0)
      t.path_back_ms = std::max(reached, t.stall_start_ms);
    if (t.stall_start_ms == 0) rto_us = std::max(rto_us, t.conn.rto_us);
  }
  if (!connect_rtt_ || a.refused || a.retransmitted) return;
  // A lost SYN/ACK comes again after the peer's 1 s timeout, and the kernel
  // times the SYN it acknowledges: beyond the session's own RTO it is a
  // retransmission, not a round trip.
  if (rto_us != 0 && a.rtt_us > rto_us) return;
  const double r = a.rtt_us;
  if (!g.primed) {
    // RFC 6298 starts RTTVAR at R/2 to keep a new connection's RTO safe; as
    // a measure of jitter that start would read as jitter for many samples.
    g.srtt = r;
    g.rttvar = 0;
    g.primed = true;
  } else {
    g.rttvar = 0.75 * g.rttvar + 0.25 * std::abs(g.srtt - r);
    g.srtt = 0.875 * g.srtt + 0.125 * r;
  }
  g.rtt_us.push_back(a.rtt_us);
  g.rttvar_us.push_back(static_cast<std::uint32_t>(g.rttvar));
}

std::int64_t SessionProbe::NextSampleDelayMs(std::int64_t now_ms) const {
  if (!closing_.empty()) return kReconnectWatchMs;
  if (!live_.empty()) return std::int64_t(config_.sample_interval_s) * 1000 / looks_per_sample_;
  // Nothing live: discovery on its own timer, at the promised interval.
  return std::max<std::int64_t>(kReconnectWatchMs, next_discovery_ms_ - now_ms);
}

void SessionProbe::Start(const asio::any_io_executor& executor) {
  started_ = true;
  kernel_->Attach(executor);
  timer_ = std::make_unique<asio::steady_timer>(executor);
  ArmTimer(0);
  auto fd = OpenDestroyListener();
  if (!fd.ok()) {
    destroy_error_ = fd.status().message();
    return;
  }
  destroy_ = std::make_unique<asio::posix::stream_descriptor>(executor, *fd);
  destroy_buf_.resize(16384);
  ReadDestroyed();
}

void SessionProbe::ArmTimer(std::int64_t delay_ms) {
  timer_->expires_after(std::chrono::milliseconds(delay_ms));
  timer_->async_wait([this](std::error_code ec) {
    if (ec) return;
    const std::int64_t now = NowUnixMs();
    Sample(now);
    ArmTimer(NextSampleDelayMs(now));
  });
}

void SessionProbe::ReadDestroyed() {
  destroy_->async_read_some(asio::buffer(destroy_buf_), [this](std::error_code ec, std::size_t n) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      std::vector<TcpConn> conns;
      bool done = false;
      if (ParseSockDiag({destroy_buf_.data(), n}, &conns, &done).ok()) {
        const std::int64_t now = NowUnixMs();
        for (const auto& c : conns) OnDestroyed(c, now);
      }
    } else if (ec != asio::error::no_buffer_space) {
      destroy_error_ = "TCP destroy group: " + ec.message();
      return;
    }
    // ENOBUFS: the kernel dropped events; the next dump notices the gaps.
    ReadDestroyed();
  });
}

void SessionProbe::ActiveProbe(const CycleContext& ctx, v1::Report& report) {
  if (config_.probe_targets.empty()) return;
  if (last_probe_ms_ != 0 && ctx.now_unix_ms - last_probe_ms_ < config_.probe_interval_s * 1000LL) {
    return;
  }
  last_probe_ms_ = ctx.now_unix_ms;
  for (const HostPort& target : config_.probe_targets) {
    auto us = TimeConnect(target, config_.probe_timeout_ms);
    if (!us.ok()) {
      AddUnavailable(report, "session.active_probe", us.status().message());
      continue;
    }
    auto* w = report.add_sessions();
    auto it = protocol_of_.find(target.port);
    w->set_protocol(it != protocol_of_.end() ? it->second : v1::DISPLAY_PROTOCOL_GATEWAY);
    w->set_peer(JoinHostPort(target.host, target.port));
    w->set_window_start_unix_ms(ctx.now_unix_ms);
    w->set_window_s(0);
    w->set_rtt_p50_us(*us);
    w->set_rtt_p95_us(*us);
    w->set_rtt_max_us(*us);
    w->set_rtt_samples(1);
    w->set_source(v1::LATENCY_SOURCE_ACTIVE_CONNECT);
  }
}

void SessionProbe::Collect(const CycleContext& ctx, v1::Report& report) {
  const std::int64_t now = ctx.now_unix_ms;
  if (!started_) Sample(now);  // --once: one pass, now
  ExpireClosings(now);
  if (!dump_error_.empty()) AddUnavailable(report, "session.latency", dump_error_);
  if (started_ && !destroy_error_.empty() && ctx.first_cycle) {
    AddUnavailable(report, "session.disconnects", destroy_error_);
  }
  if (!gateway_error_.empty() && ctx.first_cycle) {
    AddUnavailable(report, "session.gateways", gateway_error_);
  }
  const std::int64_t window_start = now - ctx.window_s * 1000LL;

  // One window per (protocol, peer): parallel streams of one session merge.
  std::map<GroupKey, std::vector<Tracked*>> groups;
  for (auto& [cookie, t] : live_) {
    if (t.stall_start_ms != 0) CountStall(t, now);
    groups[{t.protocol, t.peer}].push_back(&t);
  }
  for (auto& t : finished_) groups[{t.protocol, t.peer}].push_back(&t);
  for (auto& [key, members] : groups) {
    std::vector<std::uint32_t> rtt, rttvar;
    std::uint64_t retrans = 0, segs = 0;
    std::int64_t stalled_ms = 0;
    for (Tracked* t : members) {
      rtt.insert(rtt.end(), t->rtt_us.begin(), t->rtt_us.end());
      rttvar.insert(rttvar.end(), t->rttvar_us.begin(), t->rttvar_us.end());
      retrans += t->retrans_now - t->retrans_at_start;
      segs += t->segs_now - t->segs_at_start;
      stalled_ms = std::max(stalled_ms, t->stalled_ms);  // parallel streams: the same freeze
      t->rtt_us.clear();
      t->rttvar_us.clear();
      t->retrans_at_start = t->retrans_now;
      t->segs_at_start = t->segs_now;
      t->stalled_ms = 0;
    }
    v1::LatencySource source = v1::LATENCY_SOURCE_PASSIVE_TCP_INFO;
    if (connect_rtt_) {
      PeerRtt& g = peer_rtt_[key];
      if (!g.rtt_us.empty()) {
        rtt = std::move(g.rtt_us);
        rttvar = std::move(g.rttvar_us);
        source = v1::LATENCY_SOURCE_PEER_CONNECT;
      } else if (!rtt.empty()) {
        AddUnavailable(
            report, "session.rtt_probe",
            key.second + ": " +
                (g.last_error.empty() ? std::string("no handshake answered") : g.last_error) +
                "; this window's RTT is the connection's own, which includes the "
                "server's ACK delay");
      }
      g.rtt_us.clear();
      g.rttvar_us.clear();
      g.primed = false;  // jitter is this window's
    }
    stalled_ms = std::min<std::int64_t>(stalled_ms, std::int64_t(ctx.window_s) * 1000);
    if (rtt.empty() && stalled_ms == 0) continue;
    auto* w = report.add_sessions();
    w->set_protocol(static_cast<v1::DisplayProtocol>(key.first));
    w->set_peer(key.second);
    w->set_window_start_unix_ms(window_start);
    w->set_window_s(ctx.window_s);
    w->set_rtt_samples(static_cast<std::uint32_t>(rtt.size()));
    if (!rtt.empty()) {
      w->set_rtt_max_us(*std::max_element(rtt.begin(), rtt.end()));
      w->set_rtt_p95_us(Percentile(rtt, 0.95));
      w->set_rtt_p50_us(Percentile(rtt, 0.50));
      w->set_jitter_us(Percentile(rttvar, 0.50));
    }
    if (segs > 0) {
      w->set_retransmit_ppm(static_cast<std::uint32_t>(
          std::min<std::uint64_t>(1'000'000, retrans * 1'000'000 / segs)));
    }
    if (stalled_ms > 0) w->set_stalled_ms(static_cast<std::uint32_t>(stalled_ms));
    w->set_source(source);
  }
  finished_.clear();
  // Peers with nothing live and no handshake in flight are forgotten.
  for (auto it = peer_rtt_.begin(); it != peer_rtt_.end();) {
    const bool used = std::any_of(live_.begin(), live_.end(), [&](const auto& kv) {
      return kv.second.protocol == it->first.first && kv.second.peer == it->first.second;
    });
    it = used || it->second.in_flight ? std::next(it) : peer_rtt_.erase(it);
  }

  if (up_since_ms_ >= 0) {
    connected_ms_ += std::max<std::int64_t>(0, now - std::max(up_since_ms_, window_start_ms_));
    up_since_ms_ = now;
  }
  if (!events_.empty() || !stalls_.empty() || connected_ms_ > 0 || !live_.empty()) {
    v1::StabilityReport* st = report.mutable_stability();
    for (auto& e : events_) *st->add_session_events() = std::move(e);
    for (auto& s : stalls_) *st->add_stalls() = std::move(s);
    // One pass (--once) sees a moment: a live connection covers the window.
    const std::int64_t connected_s =
        passes_ > 1 ? (connected_ms_ + 500) / 1000 : (live_.empty() ? 0 : ctx.window_s);
    st->set_session_s(static_cast<std::uint32_t>(
        std::min<std::int64_t>(connected_s, std::int64_t(ctx.window_s))));
  }
  events_.clear();
  stalls_.clear();
  connected_ms_ = 0;
  window_start_ms_ = now;
  if (live_.empty()) ActiveProbe(ctx, report);
}

}  // namespace deskpulse::agent
