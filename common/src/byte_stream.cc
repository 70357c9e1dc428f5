#include "deskpulse/common/byte_stream.h"

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>
#include <cstring>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);
// One TLS record's worth of plaintext at most.
constexpr std::size_t kReadAheadBytes = std::size_t{16} << 10;

class PlainStream final : public ByteStream {
 public:
  explicit PlainStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    co_return co_await socket_.async_read_some(b, kTuple);
  }
  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    co_return co_await asio::async_write(socket_, b, kTuple);
  }
  void WaitReadable(std::function<void(const asio::error_code&)> done) override {
    socket_.async_wait(asio::ip::tcp::socket::wait_read, std::move(done));
  }
  IoResult ReadAvailable(asio::mutable_buffer b) override {
    asio::error_code ec;
    if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
    const std::size_t n = ec ? 0 : socket_.read_some(b, ec);
    return {ec, n};
  }
  asio::awaitable<asio::error_code> Handshake() override { co_return asio::error_code{}; }
  bool tls() const override { return false; }
  asio::ip::tcp::socket& tcp() override { return socket_; }

 private:
  asio::ip::tcp::socket socket_;
};
}  // namespace

void ByteStream::WaitReadable(std::function<void(const asio::error_code&)> done) {
  if (ahead_pos_ < ahead_end_) {
    asio::post(tcp().get_executor(), [done = std::move(done)] { done(asio::error_code{}); });
    return;
  }
  asio::co_spawn(tcp().get_executor(), ReadAhead(std::move(done)), asio::detached);
}

asio::awaitable<void> ByteStream::ReadAhead(std::function<void(const asio::error_code&)> done) {
  if (ahead_.empty()) ahead_.resize(kReadAheadBytes);
  auto [ec, n] = co_await ReadSome(asio::buffer(ahead_));
  ahead_pos_ = 0;
  ahead_end_ = ec ? 0 : n;
  done(ec);
}

ByteStream::IoResult ByteStream::ReadAvailable(asio::mutable_buffer b) {
  if (ahead_pos_ == ahead_end_) return {asio::error::would_block, 0};
  const std::size_t n = std::min(b.size(), ahead_end_ - ahead_pos_);
  std::memcpy(b.data(), ahead_.data() + ahead_pos_, n);
  ahead_pos_ += n;
  return {asio::error_code{}, n};
}

void ByteStream::ShutdownReceive() {
  asio::error_code ec;
  tcp().shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
}

void ByteStream::Close() {
  asio::error_code ec;
  tcp().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  tcp().close(ec);
}

std::unique_ptr<ByteStream> MakePlainStream(asio::ip::tcp::socket socket) {
  return std::make_unique<PlainStream>(std::move(socket));
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  asio::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

}  // namespace deskpulse
