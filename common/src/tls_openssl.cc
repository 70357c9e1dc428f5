#include "deskpulse/common/tls_openssl.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

class TlsStream final : public ByteStream {
 public:
  TlsStream(TcpSocket socket, std::shared_ptr<asio::ssl::context> context, bool server,
            std::string server_name)
      : context_(std::move(context)),
        stream_(std::move(socket), *context_),
        server_(server),
        server_name_(std::move(server_name)) {}
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    co_return co_await stream_.async_read_some(b, kTuple);
  }
  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    co_return co_await asio::async_write(stream_, b, kTuple);
  }
  asio::awaitable<asio::error_code> Handshake() override {
    if (!server_) {
      // SNI, and the certificate must name the host we dialled.
      SSL_set_tlsext_host_name(stream_.native_handle(), server_name_.c_str());
      stream_.set_verify_mode(asio::ssl::verify_peer);
      stream_.set_verify_callback(asio::ssl::host_name_verification(server_name_));
    }
    auto [ec] = co_await stream_.async_handshake(
        server_ ? asio::ssl::stream_base::server : asio::ssl::stream_base::client, kTuple);
    co_return ec;
  }
  bool tls() const override { return true; }
  TcpSocket& tcp() override { return stream_.next_layer(); }

 private:
  std::shared_ptr<asio::ssl::context> context_;
  asio::ssl::stream<TcpSocket> stream_;
  bool server_;
  std::string server_name_;
};

class OpenSslClient final : public TlsClient {
 public:
  explicit OpenSslClient(std::shared_ptr<asio::ssl::context> context)
      : context_(std::move(context)) {}
  std::unique_ptr<ByteStream> Wrap(TcpSocket socket, const std::string& server_name) override {
    return std::make_unique<TlsStream>(std::move(socket), context_, false, server_name);
  }

 private:
  std::shared_ptr<asio::ssl::context> context_;
};

Status TlsError(const std::string& what, const std::string& file, const asio::error_code& ec) {
  return InvalidArgument("cannot use " + what + " " + file + ": " + ec.message());
}

std::shared_ptr<asio::ssl::context> BaseContext(asio::ssl::context::method method) {
  auto ctx = std::make_shared<asio::ssl::context>(method);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  return ctx;
}
}  // namespace

Result<std::shared_ptr<asio::ssl::context>> MakeServerTlsContext(const TlsOptions& o) {
  auto ctx = BaseContext(asio::ssl::context::tls_server);
  asio::error_code ec;
  ctx->use_certificate_chain_file(o.cert_file, ec);
  if (ec) return TlsError("TLS certificate", o.cert_file, ec);
  ctx->use_private_key_file(o.key_file, asio::ssl::context::pem, ec);
  if (ec) return TlsError("TLS private key", o.key_file, ec);
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return InvalidArgument("TLS private key " + o.key_file + " does not match certificate " +
                           o.cert_file);
  }
  // An idle connection gives back OpenSSL's record buffers (about 33 KB).
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

std::unique_ptr<ByteStream> MakeServerTlsStream(TcpSocket socket,
                                                std::shared_ptr<asio::ssl::context> context) {
  return std::make_unique<TlsStream>(std::move(socket), std::move(context), true, "");
}

Result<std::shared_ptr<TlsClient>> MakeOpenSslClient(const TlsOptions& o) {
  auto ctx = BaseContext(asio::ssl::context::tls_client);
  BIO* bio = BIO_new_file(o.ca_file.c_str(), "r");
  if (bio == nullptr) {
    return InvalidArgument("cannot use CA file " + o.ca_file + ": " + std::strerror(errno));
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx->native_handle());
  int loaded = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++loaded;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // the loop ends on "no start line"
  if (loaded == 0) {
    return InvalidArgument("cannot use CA file " + o.ca_file + ": no PEM certificate in it");
  }
  return std::shared_ptr<TlsClient>(std::make_shared<OpenSslClient>(std::move(ctx)));
}

}  // namespace deskpulse
