#include "agent/probes/session/session_probe.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

std::string JoinHostPort(const std::string& addr, std::uint16_t port) {
  if (addr.find(':') != std::string::npos) return "[" + addr + "]:" + std::to_string(port);
  return addr + ":" + std::to_string(port);
}

// Elapsed µs of one non-blocking TCP connect (≈ one RTT: SYN → SYN/ACK). A
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

SessionProbe::SessionProbe(SessionConfig config, v1::EndpointRole role)
    : config_(std::move(config)), role_(role) {
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

SessionProbe::~SessionProbe() = default;

bool SessionProbe::Classify(const TcpConn& c, v1::DisplayProtocol* protocol,
                            std::string* peer) const {
  // A thin client connects out to the display port; a VDI guest or host
  // serves it (and may also connect out through a gateway).
  if (auto it = protocol_of_.find(c.remote_port); it != protocol_of_.end()) {
    *protocol = it->second;
    *peer = JoinHostPort(c.remote_addr, c.remote_port);
    return true;
  }
  if (role_ != v1::ENDPOINT_ROLE_THIN_CLIENT) {
    if (auto it = protocol_of_.find(c.local_port); it != protocol_of_.end()) {
      *protocol = it->second;
      *peer = JoinHostPort(c.remote_addr, c.remote_port);
      return true;
    }
  }
  return false;
}

void SessionProbe::AddSample(Tracked& t, const TcpConn& c) {
  if (!c.has_info) return;
  // tcpi_rtt only moves on ACKs; an idle socket repeats its last value, which
  // is still the latest estimate the kernel has.
  if (c.rtt_us > 0) {
    t.rtt_us.push_back(c.rtt_us);
    t.rttvar_us.push_back(c.rttvar_us);
  }
  t.retrans_now = c.total_retrans;
  t.segs_now = c.data_segs_out;
}

void SessionProbe::Sample(std::int64_t now_ms) {
  // A dump walks the kernel's whole TCP hash table; looking up a known
  // connection is one hash probe. So dump to discover (at start, every
  // discovery_interval_s, and often for a while after a display connection
  // closed, to catch the reconnect) and look up known ones in between.
  // Past a few dozen live connections (a VDI host) one dump is cheaper than
  // a lookup each.
  constexpr std::size_t kMaxLookups = 32;
  const bool discover = !sampled_once_ || now_ms >= next_discovery_ms_ ||
                        now_ms < rediscover_until_ms_ || live_.size() > kMaxLookups;
  if (!discover) {
    SampleKnown(now_ms);
    return;
  }
  next_discovery_ms_ = now_ms + std::int64_t(config_.discovery_interval_s) * 1000;
  ++dumps_;
  auto conns = DumpTcp(ports_, TcpFamiliesInUse(proc_root_));
  if (!conns.ok()) {
    dump_error_ = conns.status().message();
    return;
  }
  dump_error_.clear();
  std::map<std::uint64_t, bool> seen;
  bool any = false;
  for (const TcpConn& c : *conns) {
    v1::DisplayProtocol protocol{};
    std::string peer;
    if (!Classify(c, &protocol, &peer)) continue;
    any = true;
    seen[c.cookie] = true;
    auto [it, inserted] = live_.try_emplace(c.cookie);
    Tracked& t = it->second;
    if (inserted) {
      t.protocol = protocol;
      t.peer = peer;
      t.peer_addr = c.remote_addr;
      t.retrans_at_start = c.total_retrans;
      t.segs_at_start = c.data_segs_out;
      // A new connection to a peer that just dropped is a reconnect.
      auto back = std::find_if(closing_.begin(), closing_.end(), [&](const Closed& x) {
        return x.protocol == protocol && x.peer_addr == c.remote_addr;
      });
      v1::SessionEvent e;
      e.set_at_unix_ms(now_ms);
      if (back != closing_.end()) {
        e.set_kind(v1::SESSION_EVENT_KIND_RECONNECT);
        e.set_reason("reconnected to " + peer);
        e.set_downtime_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ms - back->at_ms)));
        closing_.erase(back);
      } else {
        e.set_kind(v1::SESSION_EVENT_KIND_CONNECT);
        e.set_reason("connected to " + peer);
      }
      // Connections already up at the first look are not new sessions.
      if (sampled_once_) events_.push_back(std::move(e));
    }
    t.last_seen_ms = now_ms;
    t.conn = c;
    AddSample(t, c);
  }
  if (any) ++live_samples_;
  sampled_once_ = true;
  // Connections gone without a destroy event (the group is best-effort).
  for (auto it = live_.begin(); it != live_.end();) {
    if (seen.count(it->first) == 0) {
      const std::uint64_t cookie = it->first;
      ++it;
      Closing(cookie, now_ms);
    } else {
      ++it;
    }
  }
}

void SessionProbe::SampleKnown(std::int64_t now_ms) {
  std::vector<std::uint64_t> gone;
  bool any = false;
  for (auto& [cookie, t] : live_) {
    auto c = LookupTcp(t.conn);
    if (!c.ok()) {
      dump_error_ = c.status().message();
      return;
    }
    if (!c->has_value()) {
      gone.push_back(cookie);
      continue;
    }
    any = true;
    t.last_seen_ms = now_ms;
    AddSample(t, **c);
  }
  dump_error_.clear();
  if (any) ++live_samples_;
  for (std::uint64_t cookie : gone) Closing(cookie, now_ms);
}

void SessionProbe::Closing(std::uint64_t cookie, std::int64_t now_ms) {
  auto it = live_.find(cookie);
  if (it == live_.end()) return;
  rediscover_until_ms_ = now_ms + std::int64_t(config_.reconnect_window_s) * 1000;
  closing_.push_back(Closed{it->second.protocol, it->second.peer_addr, now_ms});
  finished_.push_back(std::move(it->second));
  live_.erase(it);
}

void SessionProbe::OnDestroyed(const TcpConn& conn, std::int64_t now_ms) {
  auto it = live_.find(conn.cookie);
  if (it == live_.end()) return;
  AddSample(it->second, conn);  // the final tcp_info
  Closing(conn.cookie, now_ms);
}

void SessionProbe::Start(const asio::any_io_executor& executor) {
  started_ = true;
  timer_ = std::make_unique<asio::steady_timer>(executor);
  ArmTimer();
  auto fd = OpenDestroyListener();
  if (!fd.ok()) {
    destroy_error_ = fd.status().message();
    return;
  }
  destroy_ = std::make_unique<asio::posix::stream_descriptor>(executor, *fd);
  destroy_buf_.resize(16384);
  ReadDestroyed();
}

void SessionProbe::ArmTimer() {
  timer_armed_ = true;
  timer_->expires_after(std::chrono::seconds(config_.sample_interval_s));
  timer_->async_wait([this](std::error_code ec) {
    timer_armed_ = false;
    if (ec) return;
    const std::int64_t now = NowUnixMs();
    Sample(now);
    // Nothing live and no reconnect to watch for: sleep until the next
    // discovery, which a collection cycle triggers (no idle wake-ups).
    if (!live_.empty() || now < rediscover_until_ms_) ArmTimer();
  });
}

void SessionProbe::ReadDestroyed() {
  destroy_->async_read_some(
      asio::buffer(destroy_buf_), [this](std::error_code ec, std::size_t n) {
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
    w->set_source(v1::LATENCY_SOURCE_ACTIVE_CONNECT);
  }
}

void SessionProbe::Collect(const CycleContext& ctx, v1::Report& report) {
  if (!started_) {
    Sample(ctx.now_unix_ms);  // --once: one pass, now
  } else if (!timer_armed_ && ctx.now_unix_ms >= next_discovery_ms_) {
    Sample(ctx.now_unix_ms);  // idle: discovery rides on the cycle
    if (!live_.empty()) ArmTimer();
  }
  if (!dump_error_.empty()) AddUnavailable(report, "session.latency", dump_error_);
  if (started_ && !destroy_error_.empty() && ctx.first_cycle) {
    AddUnavailable(report, "session.disconnects", destroy_error_);
  }
  const std::int64_t window_start = ctx.now_unix_ms - ctx.window_s * 1000LL;

  // One window per (protocol, peer): parallel streams of one session merge.
  std::map<std::pair<int, std::string>, std::vector<Tracked*>> groups;
  for (auto& [cookie, t] : live_) groups[{t.protocol, t.peer}].push_back(&t);
  for (auto& t : finished_) groups[{t.protocol, t.peer}].push_back(&t);
  for (auto& [key, members] : groups) {
    std::vector<std::uint32_t> rtt, rttvar;
    std::uint64_t retrans = 0, segs = 0;
    for (Tracked* t : members) {
      rtt.insert(rtt.end(), t->rtt_us.begin(), t->rtt_us.end());
      rttvar.insert(rttvar.end(), t->rttvar_us.begin(), t->rttvar_us.end());
      retrans += t->retrans_now - t->retrans_at_start;
      segs += t->segs_now - t->segs_at_start;
      t->rtt_us.clear();
      t->rttvar_us.clear();
      t->retrans_at_start = t->retrans_now;
      t->segs_at_start = t->segs_now;
    }
    if (rtt.empty()) continue;
    auto* w = report.add_sessions();
    w->set_protocol(static_cast<v1::DisplayProtocol>(key.first));
    w->set_peer(key.second);
    w->set_window_start_unix_ms(window_start);
    w->set_window_s(ctx.window_s);
    w->set_rtt_max_us(*std::max_element(rtt.begin(), rtt.end()));
    w->set_rtt_p95_us(Percentile(rtt, 0.95));
    w->set_rtt_p50_us(Percentile(rtt, 0.50));
    w->set_jitter_us(Percentile(rttvar, 0.50));
    if (segs > 0) {
      w->set_retransmit_ppm(static_cast<std::uint32_t>(std::min<std::uint64_t>(
          1'000'000, retrans * 1'000'000 / segs)));
    }
    w->set_source(v1::LATENCY_SOURCE_PASSIVE_TCP_INFO);
  }
  finished_.clear();

  // Drops with no reconnect inside the window are disconnects.
  const std::int64_t horizon = ctx.now_unix_ms - config_.reconnect_window_s * 1000LL;
  for (auto it = closing_.begin(); it != closing_.end();) {
    if (it->at_ms <= horizon) {
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
  if (!events_.empty() || live_samples_ > 0 || !live_.empty()) {
    v1::StabilityReport* st = report.mutable_stability();
    for (auto& e : events_) *st->add_session_events() = std::move(e);
    const std::uint32_t covered =
        started_ ? live_samples_ * static_cast<std::uint32_t>(config_.sample_interval_s)
                 : (live_.empty() ? 0 : ctx.window_s);
    st->set_session_s(std::min(covered, ctx.window_s));
  }
  events_.clear();
  live_samples_ = 0;
  if (live_.empty()) ActiveProbe(ctx, report);
}

}  // namespace deskpulse::agent
