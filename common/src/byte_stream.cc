#include "deskpulse/common/byte_stream.h"

#include <asio/experimental/as_tuple.hpp>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

class PlainStream final : public ByteStream {
 public:
  explicit PlainStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    co_return co_await socket_.async_read_some(b, kTuple);
  }
  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    co_return co_await asio::async_write(socket_, b, kTuple);
  }
  asio::awaitable<asio::error_code> Handshake() override { co_return asio::error_code{}; }
  bool tls() const override { return false; }
  asio::ip::tcp::socket& tcp() override { return socket_; }

 private:
  asio::ip::tcp::socket socket_;
};
}  // namespace

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
