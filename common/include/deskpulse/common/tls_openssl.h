#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <memory>
#include <string>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/status.h"

namespace deskpulse {

/// The collector's TLS 1.2+ server context; errors name the file that could not be used.
Result<std::shared_ptr<asio::ssl::context>> MakeServerTlsContext(const TlsOptions& options);
/// One accepted connection, served over TLS with `context`.
std::unique_ptr<ByteStream> MakeServerTlsStream(TcpSocket socket,
                                                std::shared_ptr<asio::ssl::context> context);

/// A TLS client on OpenSSL that trusts `options.ca_file`.
Result<std::shared_ptr<TlsClient>> MakeOpenSslClient(const TlsOptions& options);

}  // namespace deskpulse
