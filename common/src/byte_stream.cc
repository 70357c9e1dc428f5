#include "deskpulse/common/byte_stream.h"

#include <asio/bind_allocator.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <cstdio>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

// Allocates exactly what an operation needs. A readiness wait can stay pending
// for minutes on each of thousands of connections; with the default allocator
// asio would park it in whatever larger block another operation left in its
// per-thread cache.
template <typename T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <typename U>
  explicit ExactAllocator(const ExactAllocator<U>& /*other*/) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t /*n*/) noexcept { ::operator delete(p); }
  friend bool operator==(const ExactAllocator&, const ExactAllocator&) { return true; }
};

class PlainStream final : public ByteStream {
 public:
  explicit PlainStream(TcpSocket socket) : socket_(std::move(socket)) {}
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    co_return co_await socket_.async_read_some(b, kTuple);
  }
  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    co_return co_await asio::async_write(socket_, b, kTuple);
  }
  void WaitReadable(ReadableHandler& handler) override {
    WaitReady(socket_, TcpSocket::wait_read, handler);
  }
  IoResult ReadAvailable(asio::mutable_buffer b) override {
    asio::error_code ec;
    if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
    const std::size_t n = ec ? 0 : socket_.read_some(b, ec);
    return {ec, n};
  }
  asio::awaitable<asio::error_code> Handshake() override { co_return asio::error_code{}; }
  bool tls() const override { return false; }
  TcpSocket& tcp() override { return socket_; }

 private:
  TcpSocket socket_;
};
}  // namespace

void ByteStream::WaitReady(TcpSocket& socket, TcpSocket::wait_type what, ReadableHandler& handler) {
  socket.async_wait(what, asio::bind_allocator(
                              ExactAllocator<void>(),
                              [h = &handler](const asio::error_code& ec) { h->OnReadable(ec); }));
}

void ByteStream::ShutdownReceive() {
  asio::error_code ec;
  tcp().shutdown(TcpSocket::shutdown_receive, ec);
}

void ByteStream::Close() {
  asio::error_code ec;
  tcp().shutdown(TcpSocket::shutdown_both, ec);
  tcp().close(ec);
}

std::unique_ptr<ByteStream> MakePlainStream(TcpSocket socket) {
  return std::make_unique<PlainStream>(std::move(socket));
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  asio::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

std::string PeerKey(const asio::ip::address& address) {
  if (address.is_v4()) return address.to_v4().to_string();
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string();
  auto bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return asio::ip::address_v6(bytes).to_string() + "/64";
}

Status Listen(TcpAcceptor& acceptor, const std::string& host, std::uint16_t port) {
  asio::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) return InvalidArgument("listen address '" + host + "' is not an IP address");
  const asio::ip::tcp::endpoint ep(addr, port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status(Code::kUnavailable, ec.message());
  return Status::Ok();
}

void ResetAndClose(TcpSocket& socket) {
  asio::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

std::string SecondsText(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace deskpulse
