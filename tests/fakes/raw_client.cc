#include "tests/fakes/raw_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace deskpulse::testing {

RawClient::RawClient(std::uint16_t port, const char* source) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (source != nullptr) {
    // Another loopback address (127.0.0.0/8): another peer, as far as the
    // collector's per-peer limits go.
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawClient::SendBytes(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

bool RawClient::Send(const deskpulse::v1::Envelope& env) {
  std::string out;
  if (!AppendFrame(env, &out).ok()) return false;
  return SendBytes(out);
}

std::optional<deskpulse::v1::Envelope> RawClient::Read(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    while (!pending_.empty()) {
      const std::size_t used =
          decoder_.Feed({reinterpret_cast<const std::uint8_t*>(pending_.data()), pending_.size()});
      pending_.erase(0, used);
      if (!decoder_.status().ok()) return std::nullopt;
      if (auto frame = decoder_.TakeFrame()) {
        deskpulse::v1::Envelope env;
        if (!env.ParseFromString(*frame)) return std::nullopt;
        return env;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

bool RawClient::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;
  }
}

deskpulse::v1::Envelope HelloEnvelope(const std::string& token, const std::string& agent_id,
                                      std::uint64_t epoch) {
  deskpulse::v1::Envelope env;
  auto* h = env.mutable_hello();
  h->set_protocol_version(deskpulse::v1::PROTOCOL_VERSION_1);
  h->set_agent_id(agent_id);
  h->set_epoch(epoch);
  h->set_credential(token);
  h->mutable_host()->set_hostname(agent_id);
  return env;
}

deskpulse::v1::Envelope BatchEnvelope(std::uint64_t first, std::uint64_t last,
                                      std::int64_t observed_at_ms) {
  deskpulse::v1::Envelope env;
  auto* b = env.mutable_batch();
  for (std::uint64_t s = first; s <= last; ++s) {
    deskpulse::v1::Report r;
    r.set_seq(s);
    r.set_observed_at_unix_ms(observed_at_ms);
    r.mutable_stability()->set_session_s(60);
    b->add_reports(r.SerializeAsString());
  }
  return env;
}

}  // namespace deskpulse::testing
