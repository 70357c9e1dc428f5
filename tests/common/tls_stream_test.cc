// The TLS byte streams on a real loopback connection: the collector's OpenSSL
// server stream against both clients (OpenSSL, the simulator's; Mbed TLS, the
// agent's), read the way the collector reads (readiness, then what is there).
#include <gtest/gtest.h>

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/tls_mbedtls.h"
#include "deskpulse/common/tls_openssl.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/test_certs.h"

namespace deskpulse {
namespace {

using namespace std::chrono_literals;

using ClientFactory = Result<std::shared_ptr<TlsClient>> (*)(const TlsOptions&);
struct ClientCase {
  const char* name;
  ClientFactory make;
};
std::string CaseName(const ::testing::TestParamInfo<ClientCase>& c) { return c.param.name; }

std::vector<std::uint8_t> Pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 31 + i / 251);
  return v;
}

/// Reads through WaitReadable()/ReadAvailable() into `out` until it holds
/// `want` bytes or the stream ends: `chunk` bytes at most per read and, like
/// the collector under backpressure, at most `reads_per_wake` reads before
/// waiting again.
class ReadinessReader final : public ReadableHandler {
 public:
  ReadinessReader(ByteStream& stream, std::size_t want, std::size_t chunk,
                  std::function<void()> done, int reads_per_wake = 1 << 30)
      : stream_(stream),
        want_(want),
        buf_(chunk),
        done_(std::move(done)),
        reads_per_wake_(reads_per_wake) {}
  void Start() { stream_.WaitReadable(*this); }
  void OnReadable(const asio::error_code& ec) override {
    if (ec) return Finish(ec);
    for (int i = 0; i < reads_per_wake_; ++i) {
      auto [rec, n] = stream_.ReadAvailable(asio::buffer(buf_));
      if (rec == asio::error::would_block) break;
      if (rec) return Finish(rec);
      out.insert(out.end(), buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
      if (out.size() >= want_) return Finish({});
    }
    stream_.WaitReadable(*this);
  }
  std::vector<std::uint8_t> out;
  std::optional<asio::error_code> end;

 private:
  void Finish(const asio::error_code& ec) {
    end = ec;
    done_();
  }
  ByteStream& stream_;
  std::size_t want_;
  std::vector<std::uint8_t> buf_;
  std::function<void()> done_;
  int reads_per_wake_;
};

class TlsStreamTest : public ::testing::TestWithParam<ClientCase> {
 protected:
  void SetUp() override {
    cert_ = testing::WriteSelfSignedCert(dir_.File(""), "collector");
    auto ctx = MakeServerTlsContext({.cert_file = cert_.cert_file, .key_file = cert_.key_file});
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    auto client = GetParam().make({.ca_file = cert_.cert_file});
    ASSERT_TRUE(client.ok()) << client.status().ToString();

    asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type> acceptor(
        io_, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    TcpSocket client_socket(io_);
    client_socket.connect(acceptor.local_endpoint());
    TcpSocket server_socket = acceptor.accept();
    server_ = MakeServerTlsStream(std::move(server_socket), *ctx);
    client_ = (*client)->Wrap(std::move(client_socket), "127.0.0.1");

    int handshakes = 0;
    for (ByteStream* s : {server_.get(), client_.get()}) {
      asio::co_spawn(
          io_,
          [s, &handshakes]() -> asio::awaitable<void> {
            const asio::error_code ec = co_await s->Handshake();
            EXPECT_FALSE(ec) << ec.message();
            ++handshakes;
          },
          asio::detached);
    }
    io_.run_for(10s);
    io_.restart();
    ASSERT_EQ(handshakes, 2);
  }

  /// Writes `data` on `from` while `to` reads it by readiness.
  static asio::awaitable<void> Write(ByteStream& from, const std::vector<std::uint8_t>& data) {
    auto [ec, n] = co_await from.WriteAll(asio::buffer(data));
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(n, data.size());
  }

  testing::TempDir dir_;
  testing::TestCert cert_;
  asio::io_context io_;
  std::unique_ptr<ByteStream> server_;
  std::unique_ptr<ByteStream> client_;
};

TEST_P(TlsStreamTest, ReadsByReadinessTakeRecordsLargerThanTheBufferWhole) {
  // 16 KB records taken 1,000 bytes a wake-up: the rest of a record is
  // already in the stream when the socket has nothing more, and must still
  // wake the reader.
  const auto data = Pattern(200'000, 7);
  int finished = 0;
  ReadinessReader at_server(
      *server_, data.size(), 1000, [&] { ++finished; }, 1);
  at_server.Start();
  asio::co_spawn(io_, Write(*client_, data), asio::detached);
  io_.run_for(20s);
  ASSERT_EQ(finished, 1);
  EXPECT_FALSE(*at_server.end) << at_server.end->message();
  EXPECT_EQ(at_server.out, data);
}

TEST_P(TlsStreamTest, BothDirectionsAtOnceNeitherStallsNorCorrupts) {
  // Each side writes 4 MB while reading the other's: writes block on a full
  // socket buffer and must let the reads in between.
  const auto up = Pattern(4 << 20, 1);
  const auto down = Pattern(4 << 20, 2);
  int finished = 0;
  ReadinessReader at_server(*server_, up.size(), 64 << 10, [&] { ++finished; });
  ReadinessReader at_client(
      *client_, down.size(), 3000, [&] { ++finished; }, 1);
  at_server.Start();
  at_client.Start();
  asio::co_spawn(io_, Write(*client_, up), asio::detached);
  asio::co_spawn(io_, Write(*server_, down), asio::detached);
  io_.run_for(60s);
  ASSERT_EQ(finished, 2);
  EXPECT_EQ(at_server.out, up);
  EXPECT_EQ(at_client.out, down);
}

TEST_P(TlsStreamTest, APeerThatClosesIsTheEndOfTheStream) {
  // An agent that loses power sends no close_notify: the collector sees the
  // end of the stream, not an error.
  const auto data = Pattern(5000, 3);
  int finished = 0;
  ReadinessReader at_server(*server_, data.size() + 1, 4096, [&] { ++finished; });
  at_server.Start();
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await Write(*client_, data);
        client_->Close();
      },
      asio::detached);
  io_.run_for(10s);
  ASSERT_EQ(finished, 1);
  EXPECT_EQ(*at_server.end, asio::error::eof) << at_server.end->message();
  EXPECT_EQ(at_server.out, data);
}

TEST_P(TlsStreamTest, WritingToAPeerThatHasGoneIsAnErrorNotASignal) {
  // A peer that has gone answers with a reset, and a write after it is
  // EPIPE. Sent with write(2) that raises SIGPIPE, which ends the process:
  // the collector (server side) and the simulator (OpenSSL client) with it.
  auto write_to_gone = [this](ByteStream& writer, ByteStream& gone) {
    std::optional<asio::error_code> failed;
    gone.Close();
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          const auto chunk = Pattern(64 << 10, 4);
          asio::steady_timer pause(io_);
          for (int i = 0; i < 200; ++i) {
            auto [ec, n] = co_await writer.WriteAll(asio::buffer(chunk));
            if (ec) {
              failed = ec;
              co_return;
            }
            pause.expires_after(5ms);
            co_await pause.async_wait(asio::use_awaitable);
          }
        },
        asio::detached);
    io_.run_for(10s);
    io_.restart();
    ASSERT_TRUE(failed.has_value()) << "200 writes to a closed peer all succeeded";
    EXPECT_NE(*failed, asio::error::would_block);
  };
  write_to_gone(*server_, *client_);
  SetUp();  // a fresh pair for the other direction
  write_to_gone(*client_, *server_);
}

TEST_P(TlsStreamTest, AClosedStreamTouchesNoDescriptor) {
  // The descriptor number of a closed stream is free for the next socket.
  server_->Close();
  asio::ip::tcp::socket reuse(io_, asio::ip::tcp::v4());  // likely the same number
  std::uint8_t byte = 0;
  auto [ec, n] = server_->ReadAvailable(asio::buffer(&byte, 1));
  EXPECT_TRUE(ec);
  EXPECT_NE(ec, asio::error::would_block);
  EXPECT_EQ(n, 0u);
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        auto [wec, wn] = co_await server_->WriteAll(asio::buffer(&byte, 1));
        EXPECT_TRUE(wec);
        EXPECT_EQ(wn, 0u);
      },
      asio::detached);
  io_.run_for(5s);
}

INSTANTIATE_TEST_SUITE_P(Clients, TlsStreamTest,
                         ::testing::Values(ClientCase{"OpenSsl", &MakeOpenSslClient},
                                           ClientCase{"MbedTls", &MakeMbedTlsClient}),
                         CaseName);

}  // namespace
}  // namespace deskpulse
