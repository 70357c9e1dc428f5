#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// The TCP socket every stream runs on. It is typed on the io_context's own
/// executor, not asio's type-erased any_io_executor: that is 48 bytes less in
/// each socket and in each operation pending on it, which a collector holding
/// tens of thousands of idle connections pays per connection (docs/quality.md).
using TcpSocket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
using TcpAcceptor = asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type>;

/// Opens `acceptor` on HOST:PORT (an IP address; port 0 picks a free one),
/// with SO_REUSEADDR, and listens. The error says why, not where: the caller
/// names the listener.
Status Listen(TcpAcceptor& acceptor, const std::string& host, std::uint16_t port);

/// Closes a connection a server refuses with a reset rather than a close: no
/// TIME_WAIT is kept for a peer the server wants gone.
void ResetAndClose(TcpSocket& socket);

/// A deadline for the log: "10 s", "0.5 s".
std::string SecondsText(std::chrono::milliseconds d);

/// Told by WaitReadable() when its stream can be read.
class ReadableHandler {
 public:
  virtual void OnReadable(const asio::error_code& ec) = 0;

 protected:
  ~ReadableHandler() = default;
};

/// A connected byte stream, plain TCP or TLS over TCP, for one connection's
/// single reader and single writer on one io_context thread.
class ByteStream {
 public:
  using IoResult = std::tuple<asio::error_code, std::size_t>;
  virtual ~ByteStream() = default;

  virtual asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) = 0;
  /// Reading without a buffer of one's own while nothing has arrived (a
  /// server with many idle connections): `handler` is told once a read would
  /// find data, the end of the stream or an error; ReadAvailable() then takes
  /// what is there, asio::error::would_block when nothing is (a wake-up can
  /// find only part of a TLS record). The handler is not owned and must
  /// outlive the wait, which Close() ends early (with
  /// asio::error::operation_aborted). Every stream waits on the socket itself.
  virtual void WaitReadable(ReadableHandler& handler) = 0;
  virtual IoResult ReadAvailable(asio::mutable_buffer buffer) = 0;
  virtual asio::awaitable<IoResult> WriteAll(asio::const_buffer buffer) = 0;
  /// TLS handshake (no-op for plain TCP).
  virtual asio::awaitable<asio::error_code> Handshake() = 0;
  virtual bool tls() const = 0;

  /// The TCP socket underneath: for options, addresses, shutdown and close.
  virtual TcpSocket& tcp() = 0;
  void ShutdownReceive();
  void Close();

 protected:
  /// Tells `handler` when `socket` is ready for `what`, in an operation that
  /// holds exactly what it needs (one can stay pending for hours).
  static void WaitReady(TcpSocket& socket, TcpSocket::wait_type what, ReadableHandler& handler);
};

/// TLS settings of one side.
struct TlsOptions {
  std::string cert_file{};  // server: PEM certificate chain
  std::string key_file{};   // server: PEM private key
  std::string ca_file{};  // client: PEM CA bundle that must have signed the collector's certificate
};

/// A TLS 1.2+ client: wraps a connected socket in a stream whose handshake
/// verifies the peer's chain against the CA bundle and that the certificate
/// names `server_name` (a DNS name, also sent as SNI, or an IP address).
/// Two implementations: OpenSSL (tls_openssl.h: the simulator, tests) and
/// Mbed TLS (tls_mbedtls.h: the agent, a fraction of OpenSSL's footprint).
class TlsClient {
 public:
  virtual ~TlsClient() = default;
  virtual std::unique_ptr<ByteStream> Wrap(TcpSocket socket, const std::string& server_name) = 0;
};

std::unique_ptr<ByteStream> MakePlainStream(TcpSocket socket);

/// True for 127.0.0.0/8, ::1 and "localhost": traffic that never leaves the host.
bool IsLoopbackHost(const std::string& host);

/// The key per-peer limits count by: the IPv4 address, or the IPv6 /64
/// (one subscriber's whole prefix).
std::string PeerKey(const asio::ip::address& address);

}  // namespace deskpulse
