#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// A connected byte stream, plain TCP or TLS over TCP, for one connection's
/// single reader and single writer on one io_context thread.
class ByteStream {
 public:
  using IoResult = std::tuple<asio::error_code, std::size_t>;
  virtual ~ByteStream() = default;

  virtual asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) = 0;
  virtual asio::awaitable<IoResult> WriteAll(asio::const_buffer buffer) = 0;
  /// TLS handshake (no-op for plain TCP).
  virtual asio::awaitable<asio::error_code> Handshake() = 0;
  virtual bool tls() const = 0;

  /// The TCP socket underneath: for options, addresses, shutdown and close.
  virtual asio::ip::tcp::socket& tcp() = 0;
  void ShutdownReceive();
  void Close();
};

/// TLS settings of one side.
struct TlsOptions {
  std::string cert_file{};  // server: PEM certificate chain
  std::string key_file{};   // server: PEM private key
  std::string ca_file{};    // client: PEM CA bundle that must have signed the collector's certificate
};

/// TLS 1.2+ contexts; errors name the file that could not be used.
Result<std::shared_ptr<asio::ssl::context>> MakeServerTlsContext(const TlsOptions& options);
Result<std::shared_ptr<asio::ssl::context>> MakeClientTlsContext(const TlsOptions& options);

std::unique_ptr<ByteStream> MakePlainStream(asio::ip::tcp::socket socket);
/// `server_name`: for a client, the host name or address the certificate must name
/// (also sent as SNI); empty for a server.
std::unique_ptr<ByteStream> MakeTlsStream(asio::ip::tcp::socket socket,
                                          std::shared_ptr<asio::ssl::context> context,
                                          bool server, const std::string& server_name);

/// True for 127.0.0.0/8, ::1 and "localhost": traffic that never leaves the host.
bool IsLoopbackHost(const std::string& host);

}  // namespace deskpulse
