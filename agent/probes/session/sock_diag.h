#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// One TCP connection as NETLINK_SOCK_DIAG reports it (what `ss -ti` shows).
struct TcpConn {
  std::uint64_t cookie = 0;                                // the kernel's identity for the socket
  std::array<std::uint32_t, 4> local_raw{}, remote_raw{};  // as the kernel gave them
  int family = 0;                                          // AF_INET or AF_INET6
  std::uint8_t state = 0;  // TCP_ESTABLISHED = 1, TCP_CLOSE = 7 in destroy events
  std::string local_addr;
  std::uint16_t local_port = 0;
  std::string remote_addr;
  std::uint16_t remote_port = 0;
  bool has_info = false;     // INET_DIAG_INFO was present
  std::uint32_t rtt_us = 0;  // smoothed
  std::uint32_t rttvar_us = 0;
  std::uint32_t min_rtt_us = 0;
  std::uint32_t total_retrans = 0;
  std::uint32_t data_segs_out = 0;
  std::uint32_t segs_out = 0;
  std::uint32_t segs_in = 0;
  std::uint32_t last_ack_recv_ms = 0;   // since the last ACK arrived
  std::uint32_t last_data_recv_ms = 0;  // since the last data arrived
  std::uint32_t unacked = 0;            // segments sent and not yet acknowledged
  std::uint32_t rto_us = 0;             // the retransmission timeout now (with backoff)
  std::uint8_t backoff = 0;             // RTO doublings since the last ACK
  std::uint32_t data_segs_in = 0;
};

/// Parses a buffer of netlink messages from a SOCK_DIAG_BY_FAMILY dump or the
/// destroy multicast group. Appends connections; sets `*done` on NLMSG_DONE.
/// Truncated or malformed messages are an error, never read past the buffer;
/// a short tcp_info (older kernels) is zero-filled.
Status ParseSockDiag(std::string_view buffer, std::vector<TcpConn>* out, bool* done);

/// The kernel-side filter "sport = P or dport = P" over `ports`, as ss builds
/// it (INET_DIAG_REQ_BYTECODE), so hosts with thousands of sockets only
/// return display-protocol ones.
std::string BuildPortFilter(const std::vector<std::uint16_t>& ports);

/// Which address families have any TCP socket in this network namespace,
/// from `<proc>/net/sockstat` and `sockstat6` ("TCP: inuse N"). A dump walks
/// the kernel's whole connection hash table, so a family with no sockets is
/// not worth one. Unreadable files count as "in use".
struct TcpFamilies {
  bool v4 = true, v6 = true;
};
TcpFamilies TcpFamiliesInUse(const std::string& proc_root);

/// Established TCP connections whose local or remote port is in `ports`, with
/// tcp_info, from the running kernel. A dump walks every hash bucket in the
/// kernel (milliseconds on a big host): discovery, not sampling.
Result<std::vector<TcpConn>> DumpTcp(const std::vector<std::uint16_t>& ports,
                                     TcpFamilies families = {});

/// One known connection looked up by its exact 4-tuple and cookie: a hash
/// lookup in the kernel, not a walk. nullopt when it is gone.
Result<std::optional<TcpConn>> LookupTcp(const TcpConn& known);

/// A netlink socket subscribed to the TCP destroy groups (IPv4 and IPv6):
/// each closed TCP socket arrives with its final tcp_info. Returns the fd.
Result<int> OpenDestroyListener();

}  // namespace deskpulse::agent
