#pragma once

#include <asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/probes/session/sock_diag.h"
#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// One TCP handshake to a session's peer, as the kernel saw it.
struct PeerAnswer {
  bool answered = false;       // a SYN/ACK or a reset came back
  bool refused = false;        // a reset (a client's port with no listener answers so)
  bool retransmitted = false;  // the SYN went out more than once: not an RTT sample
  std::uint32_t rtt_us = 0;    // the kernel's SYN → SYN/ACK RTT; for a reset, elapsed
  std::uint16_t local_port = 0;
  std::string error;  // why not answered
};

/// What the session probe reads from the kernel. The Linux one is
/// NETLINK_SOCK_DIAG and real TCP handshakes; tests replay recorded ones.
class SessionKernel {
 public:
  virtual ~SessionKernel() = default;
  /// Answers to ProbePeer arrive on `executor` from now on (before this,
  /// ProbePeer completes before it returns).
  virtual void Attach(const asio::any_io_executor& executor) = 0;
  virtual TcpFamilies Families() = 0;
  virtual Result<std::vector<TcpConn>> Dump(const std::vector<std::uint16_t>& ports,
                                            TcpFamilies families) = 0;
  virtual Result<std::optional<TcpConn>> Lookup(const TcpConn& known) = 0;
  /// Starts a TCP handshake to addr:port, reset as soon as it answers (no
  /// TIME_WAIT). `done` runs exactly once. Returns the local port it uses (0
  /// when it could not start), so the prober's own connection is not taken
  /// for a session.
  virtual std::uint16_t ProbePeer(const std::string& addr, std::uint16_t port, int timeout_ms,
                                  std::function<void(const PeerAnswer&)> done) = 0;
};

std::unique_ptr<SessionKernel> MakeLinuxSessionKernel(std::string proc_root);

}  // namespace deskpulse::agent
