#include "agent/probes/session/session_kernel.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>

namespace deskpulse::agent {
namespace {

// One handshake in flight. Shared by the connect and timeout handlers; the
// first to run decides.
struct Handshake {
  explicit Handshake(const asio::any_io_executor& ex) : socket(ex), timer(ex) {}
  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  std::function<void(const PeerAnswer&)> done;
  std::chrono::steady_clock::time_point start;
  std::uint16_t local_port = 0;
  bool finished = false;

  void Finish(PeerAnswer a) {
    if (finished) return;
    finished = true;
    timer.cancel();
    std::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);  // reset: no TIME_WAIT
    socket.close(ignored);
    a.local_port = local_port;
    auto cb = std::move(done);
    cb(a);
  }
};

class LinuxSessionKernel : public SessionKernel {
 public:
  explicit LinuxSessionKernel(std::string proc_root) : proc_root_(std::move(proc_root)) {}

  void Attach(const asio::any_io_executor& executor) override { executor_ = executor; }
  TcpFamilies Families() override { return TcpFamiliesInUse(proc_root_); }
  Result<std::vector<TcpConn>> Dump(const std::vector<std::uint16_t>& ports,
                                    TcpFamilies families) override {
    return DumpTcp(ports, families);
  }
  Result<std::optional<TcpConn>> Lookup(const TcpConn& known) override { return LookupTcp(known); }

  std::uint16_t ProbePeer(const std::string& addr, std::uint16_t port, int timeout_ms,
                          std::function<void(const PeerAnswer&)> done) override {
    if (!executor_) {
      // Not attached (a one-off pass): run this one handshake to completion.
      asio::io_context io;
      std::uint16_t local = Begin(io.get_executor(), addr, port, timeout_ms, std::move(done));
      io.run();
      return local;
    }
    return Begin(*executor_, addr, port, timeout_ms, std::move(done));
  }

 private:
  static std::uint16_t Begin(const asio::any_io_executor& ex, const std::string& addr,
                             std::uint16_t port, int timeout_ms,
                             std::function<void(const PeerAnswer&)> done) {
    std::error_code ec;
    const auto ip = asio::ip::make_address(addr, ec);
    if (ec) {
      done(PeerAnswer{.error = addr + ": not an address"});
      return 0;
    }
    auto hs = std::make_shared<Handshake>(ex);
    hs->done = std::move(done);
    hs->socket.open(ip.is_v4() ? asio::ip::tcp::v4() : asio::ip::tcp::v6(), ec);
    if (ec) {
      hs->Finish(PeerAnswer{.error = "socket: " + ec.message()});
      return 0;
    }
    const asio::ip::tcp::endpoint target(ip, port);
    const std::string name = target.address().is_v6() ? "[" + addr + "]:" + std::to_string(port)
                                                      : addr + ":" + std::to_string(port);
    hs->start = std::chrono::steady_clock::now();
    hs->socket.async_connect(target, [hs, name](std::error_code result) {
      PeerAnswer a;
      if (!result) {
        tcp_info ti{};
        socklen_t len = sizeof ti;
        if (::getsockopt(hs->socket.native_handle(), IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
          a.answered = true;
          a.rtt_us = ti.tcpi_rtt;  // the first sample: the SYN → SYN/ACK round trip
          a.retransmitted = ti.tcpi_total_retrans > 0;
        } else {
          a.error = name + ": TCP_INFO unreadable";
        }
      } else if (result == asio::error::connection_refused) {
        a.answered = true;
        a.refused = true;
        a.rtt_us = static_cast<std::uint32_t>(
            std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::steady_clock::now() - hs->start)
                                          .count()));
      } else if (result != asio::error::operation_aborted) {
        a.error = name + ": " + result.message();
      } else {
        return;  // the timeout closed it and has answered
      }
      hs->Finish(std::move(a));
    });
    // The connect is issued by now: its local port is bound.
    hs->local_port = hs->socket.local_endpoint(ec).port();
    const std::uint16_t local = hs->local_port;
    hs->timer.expires_after(std::chrono::milliseconds(timeout_ms));
    hs->timer.async_wait([hs, name, timeout_ms](std::error_code result) {
      if (result) return;
      hs->Finish(
          PeerAnswer{.error = name + ": no answer within " + std::to_string(timeout_ms) + " ms"});
    });
    return hs->finished ? 0 : local;
  }

  std::string proc_root_;
  std::optional<asio::any_io_executor> executor_;
};

}  // namespace

std::unique_ptr<SessionKernel> MakeLinuxSessionKernel(std::string proc_root) {
  return std::make_unique<LinuxSessionKernel>(std::move(proc_root));
}

}  // namespace deskpulse::agent
