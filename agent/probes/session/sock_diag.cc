#include "agent/probes/session/sock_diag.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

std::string AddrText(int family, const __be32* words) {
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, words, text, sizeof text);
  return text;
}

// Owns a netlink socket fd.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Status ParseSockDiag(std::string_view buffer, std::vector<TcpConn>* out, bool* done) {
  const char* p = buffer.data();
  std::size_t left = buffer.size();
  while (left >= sizeof(nlmsghdr)) {
    nlmsghdr h;
    std::memcpy(&h, p, sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > left) {
      return DataLoss("sock_diag: message length " + std::to_string(h.nlmsg_len) +
                      " does not fit the " + std::to_string(left) + " bytes left");
    }
    if (h.nlmsg_type == NLMSG_DONE) {
      *done = true;
      return Status::Ok();
    }
    if (h.nlmsg_type == NLMSG_ERROR) {
      int err = 0;
      if (h.nlmsg_len >= sizeof(nlmsghdr) + sizeof(int)) {
        std::memcpy(&err, p + sizeof(nlmsghdr), sizeof err);
      }
      return Unavailable(std::string("sock_diag: the kernel refused the dump: ") +
                         std::strerror(-err));
    }
    if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      if (h.nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        return DataLoss("sock_diag: message too short for inet_diag_msg");
      }
      inet_diag_msg m;
      std::memcpy(&m, p + NLMSG_HDRLEN, sizeof m);
      TcpConn c;
      c.family = m.idiag_family;
      c.state = m.idiag_state;
      c.cookie = (static_cast<std::uint64_t>(m.id.idiag_cookie[1]) << 32) | m.id.idiag_cookie[0];
      std::memcpy(c.local_raw.data(), m.id.idiag_src, sizeof m.id.idiag_src);
      std::memcpy(c.remote_raw.data(), m.id.idiag_dst, sizeof m.id.idiag_dst);
      c.local_port = ntohs(m.id.idiag_sport);
      c.remote_port = ntohs(m.id.idiag_dport);
      if (c.family == AF_INET || c.family == AF_INET6) {
        c.local_addr = AddrText(c.family, m.id.idiag_src);
        c.remote_addr = AddrText(c.family, m.id.idiag_dst);
      }
      // Attributes follow the fixed part, each 4-byte aligned.
      std::size_t off = NLMSG_LENGTH(sizeof(inet_diag_msg));
      off = NLMSG_ALIGN(off);
      while (off + sizeof(rtattr) <= h.nlmsg_len) {
        rtattr a;
        std::memcpy(&a, p + off, sizeof a);
        if (a.rta_len < sizeof(rtattr) || off + a.rta_len > h.nlmsg_len) break;
        if (a.rta_type == INET_DIAG_INFO) {
          tcp_info ti{};
          const std::size_t n = std::min<std::size_t>(a.rta_len - RTA_LENGTH(0), sizeof ti);
          std::memcpy(&ti, p + off + RTA_LENGTH(0), n);
          c.has_info = true;
          c.rtt_us = ti.tcpi_rtt;
          c.rttvar_us = ti.tcpi_rttvar;
          c.min_rtt_us = ti.tcpi_min_rtt;
          c.total_retrans = ti.tcpi_total_retrans;
          c.data_segs_out = ti.tcpi_data_segs_out;
          c.segs_out = ti.tcpi_segs_out;
          c.segs_in = ti.tcpi_segs_in;
          c.last_ack_recv_ms = ti.tcpi_last_ack_recv;
          c.last_data_recv_ms = ti.tcpi_last_data_recv;
          c.unacked = ti.tcpi_unacked;
          c.rto_us = ti.tcpi_rto;
          c.backoff = ti.tcpi_backoff;
          c.data_segs_in = ti.tcpi_data_segs_in;
        }
        off += RTA_ALIGN(a.rta_len);
      }
      out->push_back(std::move(c));
    }
    const std::size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step >= left) break;
    p += step;
    left -= step;
  }
  return Status::Ok();
}

std::string BuildPortFilter(const std::vector<std::uint16_t>& ports) {
  // Conditions "dport = P", "sport = P" for every port, OR-ed as ss does it:
  // each condition (8 bytes) is followed by a JMP (4 bytes) to the end, which
  // accepts. A false condition falls through to the next one; the last one
  // jumps past the end, which rejects. The kernel's verifier walks the `yes`
  // offsets, so every `no` target lies on that path.
  std::vector<std::pair<std::uint8_t, std::uint16_t>> conds;
  for (auto port : ports) {
    conds.emplace_back(INET_DIAG_BC_D_EQ, port);
    conds.emplace_back(INET_DIAG_BC_S_EQ, port);
  }
  if (conds.empty()) return {};
  const std::size_t total = conds.size() * 12 - 4;
  std::string bc;
  for (std::size_t i = 0; i < conds.size(); ++i) {
    const std::size_t at = i * 12;
    const bool last = i + 1 == conds.size();
    inet_diag_bc_op op{conds[i].first, 8, static_cast<std::uint16_t>(last ? total - at + 4 : 12)};
    inet_diag_bc_op arg{0, 0, conds[i].second};
    bc.append(reinterpret_cast<const char*>(&op), sizeof op);
    bc.append(reinterpret_cast<const char*>(&arg), sizeof arg);
    if (!last) {
      inet_diag_bc_op jmp{INET_DIAG_BC_JMP, 4, static_cast<std::uint16_t>(total - (at + 8))};
      bc.append(reinterpret_cast<const char*>(&jmp), sizeof jmp);
    }
  }
  return bc;
}

TcpFamilies TcpFamiliesInUse(const std::string& proc_root) {
  TcpFamilies f;
  auto inuse = [](const std::string& path, const char* key) {
    auto text = ReadSmallFile(path, 4096);
    if (!text.ok()) return true;
    const std::size_t at = text->find(key);
    if (at == std::string::npos) return true;
    return std::strtoul(text->c_str() + at + std::strlen(key), nullptr, 10) > 0;
  };
  f.v4 = inuse(proc_root + "/net/sockstat", "\nTCP: inuse ");
  f.v6 = inuse(proc_root + "/net/sockstat6", "TCP6: inuse ");
  return f;
}

Result<std::optional<TcpConn>> LookupTcp(const TcpConn& known) {
  Fd s;
  s.fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (s.fd < 0) return Unavailable(std::string("NETLINK_SOCK_DIAG: ") + std::strerror(errno));
  struct {
    nlmsghdr h;
    inet_diag_req_v2 r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.r.sdiag_family = static_cast<std::uint8_t>(known.family);
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = 1u << 1;
  req.r.idiag_ext = 1u << (INET_DIAG_INFO - 1);
  req.r.id.idiag_sport = htons(known.local_port);
  req.r.id.idiag_dport = htons(known.remote_port);
  std::memcpy(req.r.id.idiag_src, known.local_raw.data(), sizeof req.r.id.idiag_src);
  std::memcpy(req.r.id.idiag_dst, known.remote_raw.data(), sizeof req.r.id.idiag_dst);
  req.r.id.idiag_cookie[0] = static_cast<std::uint32_t>(known.cookie);
  req.r.id.idiag_cookie[1] = static_cast<std::uint32_t>(known.cookie >> 32);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(s.fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) <
      0) {
    return Unavailable(std::string("NETLINK_SOCK_DIAG send: ") + std::strerror(errno));
  }
  alignas(nlmsghdr) char buf[4096];
  ssize_t n;
  do {
    n = ::recv(s.fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Unavailable(std::string("NETLINK_SOCK_DIAG recv: ") + std::strerror(errno));
  if (static_cast<std::size_t>(n) >= sizeof(nlmsghdr) + sizeof(int)) {
    nlmsghdr h;
    std::memcpy(&h, buf, sizeof h);
    int err = 0;
    std::memcpy(&err, buf + sizeof(nlmsghdr), sizeof err);
    // ENOENT: the connection is gone (closed, or the cookie no longer matches).
    if (h.nlmsg_type == NLMSG_ERROR && err == -ENOENT) return std::optional<TcpConn>{};
  }
  std::vector<TcpConn> found;
  bool done = false;
  DP_RETURN_IF_ERROR(ParseSockDiag({buf, static_cast<std::size_t>(n)}, &found, &done));
  // An exact lookup also finds the socket in TIME_WAIT or FIN_WAIT: closed for us.
  if (found.empty() || found[0].cookie != known.cookie || found[0].state != 1 /* ESTABLISHED */) {
    return std::optional<TcpConn>{};
  }
  return std::optional<TcpConn>(std::move(found[0]));
}

Result<std::vector<TcpConn>> DumpTcp(const std::vector<std::uint16_t>& ports,
                                     TcpFamilies families) {
  Fd s;
  s.fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (s.fd < 0) return Unavailable(std::string("NETLINK_SOCK_DIAG: ") + std::strerror(errno));
  const std::string filter = BuildPortFilter(ports);
  std::vector<TcpConn> conns;
  for (int family : {AF_INET, AF_INET6}) {
    if ((family == AF_INET && !families.v4) || (family == AF_INET6 && !families.v6)) continue;
    std::string req(NLMSG_LENGTH(sizeof(inet_diag_req_v2)), '\0');
    nlmsghdr h{};
    inet_diag_req_v2 r{};
    r.sdiag_family = static_cast<std::uint8_t>(family);
    r.sdiag_protocol = IPPROTO_TCP;
    r.idiag_states = 1u << 1;  // TCP_ESTABLISHED
    r.idiag_ext = 1u << (INET_DIAG_INFO - 1);
    std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof r);
    if (!filter.empty()) {
      rtattr a{};
      a.rta_type = INET_DIAG_REQ_BYTECODE;
      a.rta_len = static_cast<unsigned short>(RTA_LENGTH(filter.size()));
      req.append(reinterpret_cast<const char*>(&a), sizeof a);
      req.append(filter);
      req.resize(NLMSG_ALIGN(req.size()), '\0');
    }
    h.nlmsg_len = static_cast<std::uint32_t>(req.size());
    h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    std::memcpy(req.data(), &h, sizeof h);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(s.fd, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof kernel) < 0) {
      return Unavailable(std::string("NETLINK_SOCK_DIAG send: ") + std::strerror(errno));
    }
    bool done = false;
    alignas(nlmsghdr) static thread_local char buf[32768];
    while (!done) {
      const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Unavailable(std::string("NETLINK_SOCK_DIAG recv: ") + std::strerror(errno));
      }
      if (n == 0) break;
      if (Status st = ParseSockDiag({buf, static_cast<std::size_t>(n)}, &conns, &done); !st.ok()) {
        // IPv6 may be disabled in the kernel: that family has no sockets.
        if (family == AF_INET6 && st.code() == Code::kUnavailable) break;
        return st;
      }
    }
  }
  return conns;
}

Result<int> OpenDestroyListener() {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
  if (fd < 0) return Unavailable(std::string("NETLINK_SOCK_DIAG: ") + std::strerror(errno));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups =
      (1u << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1u << (SKNLGRP_INET6_TCP_DESTROY - 1));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    const int e = errno;
    ::close(fd);
    return Unavailable(std::string("TCP destroy group: ") + std::strerror(e));
  }
  return fd;
}

}  // namespace deskpulse::agent
