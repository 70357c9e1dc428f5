#include "deskpulse/common/tls_openssl.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <tuple>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

/// The socket as OpenSSL's transport. OpenSSL's own socket BIO writes with
/// write(2), which raises SIGPIPE once the peer has gone and would end the
/// process; this one sends with MSG_NOSIGNAL, so a vanished peer is EPIPE on
/// that connection alone. It reads the descriptor the socket holds at each
/// call: -1 (EBADF) once the socket is closed, never a reused number.
class SocketBio {
 public:
  /// A BIO over `socket`, which must outlive it; nullptr if out of memory.
  static BIO* New(TcpSocket& socket) {
    static BIO_METHOD* const method = MakeMethod();
    if (method == nullptr) return nullptr;
    BIO* bio = BIO_new(method);
    if (bio == nullptr) return nullptr;
    BIO_set_data(bio, &socket);
    BIO_set_init(bio, 1);
    return bio;
  }

 private:
  static BIO_METHOD* MakeMethod() {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "deskpulse socket");
    if (m == nullptr) return nullptr;
    BIO_meth_set_write_ex(m, &Write);
    BIO_meth_set_read_ex(m, &Read);
    BIO_meth_set_ctrl(m, &Ctrl);
    return m;
  }

  static int Fd(BIO* b) { return static_cast<TcpSocket*>(BIO_get_data(b))->native_handle(); }

  static bool ShouldRetry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

  static int Write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
    BIO_clear_retry_flags(b);
    const ssize_t n = ::send(Fd(b), data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (ShouldRetry(errno)) BIO_set_retry_write(b);
      return 0;
    }
    *written = static_cast<std::size_t>(n);
    return 1;
  }

  static int Read(BIO* b, char* data, std::size_t len, std::size_t* read) {
    BIO_clear_retry_flags(b);
    const ssize_t n = ::recv(Fd(b), data, len, 0);
    if (n < 0) {
      if (ShouldRetry(errno)) BIO_set_retry_read(b);
      return 0;
    }
    if (n == 0) {
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);  // BIO_eof() below: the peer closed
      return 0;
    }
    *read = static_cast<std::size_t>(n);
    return 1;
  }

  static long Ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:  // nothing is buffered here
        return 1;
      case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
      default:
        return 0;
    }
  }
};

/// TLS over the non-blocking socket itself: OpenSSL reads and writes the
/// descriptor and says when it would block; the coroutine then waits for
/// readiness on the io_context. Nothing sits between them: asio's
/// ssl::stream would keep two 17 KB buffers and a BIO pair of as much again on
/// every connection, and here, with SSL_MODE_RELEASE_BUFFERS, an idle
/// connection holds no record buffer at all (docs/quality.md).
class TlsStream final : public ByteStream {
 public:
  TlsStream(TcpSocket socket, std::shared_ptr<asio::ssl::context> context, bool server,
            const std::string& server_name)
      : socket_(std::move(socket)),
        context_(std::move(context)),
        ssl_(SSL_new(context_->native_handle())) {
    if (ssl_ == nullptr) return;  // Handshake() reports it
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (server) {
      SSL_set_accept_state(ssl_);
      return;
    }
    SSL_set_connect_state(ssl_);
    // The certificate must name the host dialled: an address as an iPAddress
    // subjectAltName, a DNS name (also sent as SNI) as a DNS name.
    SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    asio::error_code not_ip;
    (void)asio::ip::make_address(server_name, not_ip);
    if (not_ip) {
      SSL_set_tlsext_host_name(ssl_, server_name.c_str());
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
    }
  }
  ~TlsStream() override { SSL_free(ssl_); }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  asio::awaitable<asio::error_code> Handshake() override {
    if (ssl_ == nullptr) co_return LastError();
    asio::error_code ec;
    socket_.non_blocking(true, ec);
    if (ec) co_return ec;
    BIO* bio = SocketBio::New(socket_);
    if (bio == nullptr) co_return asio::error::no_memory;
    SSL_set_bio(ssl_, bio, bio);  // one reference, for both directions
    for (;;) {
      ClearErrors();
      const int r = SSL_do_handshake(ssl_);
      if (r == 1) co_return asio::error_code{};
      TcpSocket::wait_type want{};
      if (ec = Failure(r, want); ec != asio::error::would_block) co_return ec;
      if (auto [wec] = co_await socket_.async_wait(want, kTuple); wec) co_return wec;
    }
  }

  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    for (;;) {
      auto result = ReadAvailable(b);
      if (std::get<0>(result) != asio::error::would_block) co_return result;
      if (auto [ec] = co_await socket_.async_wait(read_want_, kTuple); ec) {
        co_return IoResult{ec, 0};
      }
    }
  }

  void WaitReadable(ReadableHandler& handler) override {
    if (ssl_ != nullptr && SSL_has_pending(ssl_) == 1) {  // read, not yet taken
      asio::post(socket_.get_executor(), [h = &handler] { h->OnReadable(asio::error_code{}); });
      return;
    }
    WaitReady(socket_, read_want_, handler);
  }

  IoResult ReadAvailable(asio::mutable_buffer b) override {
    // Once the socket is closed its descriptor number may already be another
    // connection's: OpenSSL must not touch it.
    if (!socket_.is_open()) return {asio::error::bad_descriptor, 0};
    ClearErrors();
    std::size_t n = 0;
    if (SSL_read_ex(ssl_, b.data(), b.size(), &n) == 1) {
      read_want_ = TcpSocket::wait_read;
      return {asio::error_code{}, n};
    }
    return {Failure(0, read_want_), 0};
  }

  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    const auto* data = static_cast<const std::uint8_t*>(b.data());
    std::size_t done = 0;
    while (done < b.size()) {
      if (!socket_.is_open()) co_return IoResult{asio::error::bad_descriptor, done};
      ClearErrors();
      std::size_t n = 0;
      if (SSL_write_ex(ssl_, data + done, b.size() - done, &n) == 1) {
        done += n;
        continue;
      }
      // After "would block" OpenSSL wants the rest offered again (the same bytes).
      TcpSocket::wait_type want{};
      if (asio::error_code ec = Failure(0, want); ec != asio::error::would_block) {
        co_return IoResult{ec, done};
      }
      if (auto [ec] = co_await socket_.async_wait(want, kTuple); ec) co_return IoResult{ec, done};
    }
    co_return IoResult{asio::error_code{}, done};
  }

  bool tls() const override { return true; }
  TcpSocket& tcp() override { return socket_; }

 private:
  /// Before each call on ssl_, so that Failure() sees only what it did.
  static void ClearErrors() {
    ERR_clear_error();
    errno = 0;
  }

  /// Why the last call on ssl_ (which returned `r`) did not succeed:
  /// asio::error::would_block with `want` set to what to wait for, the end
  /// of the stream, or the error.
  asio::error_code Failure(int r, TcpSocket::wait_type& want) {
    const int saved_errno = errno;
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        want = TcpSocket::wait_read;
        return asio::error::would_block;
      case SSL_ERROR_WANT_WRITE:
        want = TcpSocket::wait_write;
        return asio::error::would_block;
      case SSL_ERROR_ZERO_RETURN:  // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare close
        return asio::error::eof;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
          return saved_errno != 0 ? asio::error_code(saved_errno, asio::system_category())
                                  : asio::error::eof;
        }
        return LastError();
      default:
        return LastError();
    }
  }

  /// OpenSSL's first queued error, as asio's SSL category names it.
  static asio::error_code LastError() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return asio::error::no_memory;
    return asio::error_code(static_cast<int>(e), asio::error::get_ssl_category());
  }

  TcpSocket socket_;
  std::shared_ptr<asio::ssl::context> context_;
  SSL* ssl_;
  // What the reader waits for: readable, unless the last read had to send
  // first (a TLS 1.3 key update). Writes wait on their own.
  TcpSocket::wait_type read_want_ = TcpSocket::wait_read;
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
  // The protocol's frames delimit themselves, so a peer that closes without
  // close_notify truncates nothing unnoticed: that is the end of the stream.
  // Renegotiation is refused: neither side needs it.
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  // TLS 1.2: forward secrecy (ECDHE) and AEAD only, no static-RSA key
  // exchange and no CBC, as the agent offers (tls_mbedtls.cc). TLS 1.3's
  // suites are all of that kind already.
  SSL_CTX_set_cipher_list(ctx->native_handle(),
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
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
  // No agent resumes a session by its id, so the server keeps no session
  // cache: it would hold one session per handshake, up to 20,480 of them.
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_OFF);
  return ctx;
}

std::unique_ptr<ByteStream> MakeServerTlsStream(TcpSocket socket,
                                                std::shared_ptr<asio::ssl::context> context) {
  return std::make_unique<TlsStream>(std::move(socket), std::move(context), true, std::string());
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
