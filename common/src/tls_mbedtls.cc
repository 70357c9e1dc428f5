#include "deskpulse/common/tls_mbedtls.h"

#include <fcntl.h>
#include <mbedtls/asn1.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

namespace deskpulse {

namespace {
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

// Forward secrecy and AEAD only, in the collector's (OpenSSL's) preference order.
constexpr int kCiphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
constexpr mbedtls_ecp_group_id kCurves[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                            MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
// GeneralName ::= ... iPAddress [7] OCTET STRING (RFC 5280 §4.2.1.6).
constexpr int kSanIpAddressTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;

/// Mbed TLS's own error codes (negative), by its description.
class MbedTlsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mbedtls"; }
  std::string message(int code) const override {
    char text[200];
    mbedtls_strerror(code, text, sizeof text);
    return text;
  }
};

/// A failed certificate verification: the value is Mbed TLS's verify flags.
class VerifyCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "x509"; }
  std::string message(int value) const override {
    auto flags = static_cast<std::uint32_t>(value);
    std::string out = "certificate verification failed";
    const char* sep = ": ";
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
      // Mbed TLS words this as a CN mismatch; it covers the subjectAltNames too.
      out.append(sep).append("the certificate names another host, not the one dialled");
      sep = "; ";
      flags &= ~static_cast<std::uint32_t>(MBEDTLS_X509_BADCERT_CN_MISMATCH);
    }
    char info[512];
    const int n = flags != 0 ? mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) : 0;
    std::string_view rest(info, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!rest.empty()) {
      const auto eol = rest.find('\n');
      out.append(sep).append(rest.substr(0, eol));
      sep = "; ";
      rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 1);
    }
    return out;
  }
};

const std::error_category& MbedTlsErrors() {
  static const MbedTlsCategory category;
  return category;
}

const std::error_category& VerifyErrors() {
  static const VerifyCategory category;
  return category;
}

/// Random bytes for the handshake straight from the kernel's CSPRNG.
int Random(void*, unsigned char* out, std::size_t len) {
  while (len > 0) {
    const ssize_t n = ::getrandom(out, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
    }
    out += n;
    len -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// Whether the certificate lists `address` (4 or 16 bytes) among its
/// iPAddress subjectAltNames. This Mbed TLS parses only DNS names out of the
/// extension, so the extension is read here from the raw v3 extensions:
/// Extensions ::= SEQUENCE OF SEQUENCE { extnID OID, critical BOOLEAN OPTIONAL,
/// extnValue OCTET STRING { SEQUENCE OF GeneralName } } (RFC 5280 §4.1, §4.2.1.6).
bool CertificateNamesAddress(const mbedtls_x509_crt& crt,
                             const std::vector<unsigned char>& address) {
  unsigned char* p = crt.v3_ext.p;
  if (p == nullptr) return false;
  const unsigned char* const end = p + crt.v3_ext.len;
  std::size_t len = 0;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
    return false;
  }
  while (p < end) {
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) !=
        0) {
      return false;
    }
    unsigned char* const ext_end = p + len;
    mbedtls_x509_buf oid{};
    if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0) return false;
    oid.p = p;
    p += oid.len;
    int critical = 0;
    (void)mbedtls_asn1_get_bool(&p, ext_end, &critical);  // optional
    if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) return false;
    if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) == 0) {
      const unsigned char* const names_end = p + len;
      if (mbedtls_asn1_get_tag(&p, names_end, &len,
                               MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
        return false;
      }
      while (p < names_end) {
        const int tag = *p++;
        if (mbedtls_asn1_get_len(&p, names_end, &len) != 0) return false;
        if (tag == kSanIpAddressTag && len == address.size() &&
            std::memcmp(p, address.data(), len) == 0) {
          return true;
        }
        p += len;
      }
      return false;
    }
    p = ext_end;
  }
  return false;
}

/// One configuration shared by every connection: trust anchors, suites, curves.
struct ClientConfig {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca;
  ClientConfig() {
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca);
  }
  ~ClientConfig() {
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca);
  }
  ClientConfig(const ClientConfig&) = delete;
  ClientConfig& operator=(const ClientConfig&) = delete;
};

/// TLS over a non-blocking socket: Mbed TLS reads and writes the socket
/// directly (no second buffer) and says when it would block; the coroutine
/// then waits for readiness on the io_context.
class MbedTlsStream final : public ByteStream {
 public:
  MbedTlsStream(TcpSocket socket, std::shared_ptr<const ClientConfig> config,
                std::string server_name)
      : socket_(std::move(socket)),
        config_(std::move(config)),
        server_name_(std::move(server_name)) {
    mbedtls_ssl_init(&ssl_);
  }
  ~MbedTlsStream() override { mbedtls_ssl_free(&ssl_); }
  MbedTlsStream(const MbedTlsStream&) = delete;
  MbedTlsStream& operator=(const MbedTlsStream&) = delete;

  asio::awaitable<asio::error_code> Handshake() override {
    if (const int r = mbedtls_ssl_setup(&ssl_, &config_->conf); r != 0) co_return Error(r);
    asio::error_code not_ip;
    const auto address = asio::ip::make_address(server_name_, not_ip);
    if (not_ip) {
      // A DNS name: sent as SNI and matched against the certificate's names.
      if (const int r = mbedtls_ssl_set_hostname(&ssl_, server_name_.c_str()); r != 0) {
        co_return Error(r);
      }
    } else {
      // An address: no SNI (RFC 6066 §3); the certificate must list it as an
      // iPAddress subjectAltName, which this Mbed TLS does not check itself.
      if (address.is_v4()) {
        const auto bytes = address.to_v4().to_bytes();
        address_.assign(bytes.begin(), bytes.end());
      } else {
        const auto bytes = address.to_v6().to_bytes();
        address_.assign(bytes.begin(), bytes.end());
      }
      mbedtls_ssl_set_verify(&ssl_, &MbedTlsStream::VerifyAddress, this);
    }
    asio::error_code ec;
    socket_.non_blocking(true, ec);
    if (ec) co_return ec;
    mbedtls_ssl_set_bio(&ssl_, this, &MbedTlsStream::Send, &MbedTlsStream::Recv, nullptr);
    for (;;) {
      const int r = mbedtls_ssl_handshake(&ssl_);
      if (r == 0) co_return asio::error_code{};
      if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        co_return asio::error_code(static_cast<int>(mbedtls_ssl_get_verify_result(&ssl_)),
                                   VerifyErrors());
      }
      if (asio::error_code wec = co_await Wait(r); wec) co_return wec;
    }
  }

  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer b) override {
    for (;;) {
      const int r = mbedtls_ssl_read(&ssl_, static_cast<unsigned char*>(b.data()), b.size());
      if (r >= 0 || !WouldBlock(r)) co_return ReadResult(r);
      if (asio::error_code ec = co_await Wait(r); ec) co_return IoResult{ec, 0};
    }
  }

  void WaitReadable(ReadableHandler& handler) override {
    if (mbedtls_ssl_check_pending(&ssl_) != 0) {  // decrypted or read, not yet taken
      asio::post(socket_.get_executor(), [h = &handler] { h->OnReadable(asio::error_code{}); });
      return;
    }
    WaitReady(socket_, TcpSocket::wait_read, handler);
  }

  IoResult ReadAvailable(asio::mutable_buffer b) override {
    const int r = mbedtls_ssl_read(&ssl_, static_cast<unsigned char*>(b.data()), b.size());
    return WouldBlock(r) ? IoResult{asio::error::would_block, 0} : ReadResult(r);
  }

  asio::awaitable<IoResult> WriteAll(asio::const_buffer b) override {
    const auto* data = static_cast<const unsigned char*>(b.data());
    std::size_t done = 0;
    while (done < b.size()) {
      // After "would block" Mbed TLS wants the same call again: same data, same length.
      const int r = mbedtls_ssl_write(&ssl_, data + done, b.size() - done);
      if (r >= 0) {
        done += static_cast<std::size_t>(r);
        continue;
      }
      if (asio::error_code ec = co_await Wait(r); ec) co_return IoResult{ec, done};
    }
    co_return IoResult{asio::error_code{}, done};
  }

  bool tls() const override { return true; }
  TcpSocket& tcp() override { return socket_; }

 private:
  static bool WouldBlock(int r) {
    return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE;
  }

  /// What mbedtls_ssl_read() returned, other than "would block".
  IoResult ReadResult(int r) const {
    if (r > 0) return {asio::error_code{}, static_cast<std::size_t>(r)};
    if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == MBEDTLS_ERR_SSL_CONN_EOF) {
      return {asio::error::eof, 0};
    }
    return {Error(r), 0};
  }

  /// For "would block": wait until the socket is ready. Anything else is the error.
  asio::awaitable<asio::error_code> Wait(int r) {
    if (WouldBlock(r)) {
      auto [ec] = co_await socket_.async_wait(
          r == MBEDTLS_ERR_SSL_WANT_READ ? TcpSocket::wait_read : TcpSocket::wait_write, kTuple);
      co_return ec;
    }
    co_return Error(r);
  }

  asio::error_code Error(int r) const {
    if ((r == MBEDTLS_ERR_NET_SEND_FAILED || r == MBEDTLS_ERR_NET_RECV_FAILED) && errno_ != 0) {
      return asio::error_code(errno_, asio::system_category());
    }
    if (r == MBEDTLS_ERR_SSL_CONN_EOF) return asio::error::eof;
    return asio::error_code(r, MbedTlsErrors());
  }

  static int Send(void* self, const unsigned char* data, std::size_t len) {
    auto* s = static_cast<MbedTlsStream*>(self);
    const ssize_t n = ::send(s->socket_.native_handle(), data, len, MSG_NOSIGNAL);
    return n >= 0 ? static_cast<int>(n)
                  : s->Blocked(MBEDTLS_ERR_SSL_WANT_WRITE, MBEDTLS_ERR_NET_SEND_FAILED);
  }

  static int Recv(void* self, unsigned char* data, std::size_t len) {
    auto* s = static_cast<MbedTlsStream*>(self);
    const ssize_t n = ::recv(s->socket_.native_handle(), data, len, 0);
    // 0 is the peer's end of stream, which Mbed TLS reports as CONN_EOF.
    return n >= 0 ? static_cast<int>(n)
                  : s->Blocked(MBEDTLS_ERR_SSL_WANT_READ, MBEDTLS_ERR_NET_RECV_FAILED);
  }

  int Blocked(int would_block, int failed) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return would_block;
    errno_ = errno;
    return failed;
  }

  static int VerifyAddress(void* self, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags) {
    if (depth == 0 && !CertificateNamesAddress(*crt, static_cast<MbedTlsStream*>(self)->address_)) {
      *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
  }

  TcpSocket socket_;
  std::shared_ptr<const ClientConfig> config_;
  std::string server_name_;
  std::vector<unsigned char> address_;
  mbedtls_ssl_context ssl_;
  int errno_ = 0;
};

class MbedTlsClient final : public TlsClient {
 public:
  explicit MbedTlsClient(std::shared_ptr<const ClientConfig> config) : config_(std::move(config)) {}
  std::unique_ptr<ByteStream> Wrap(TcpSocket socket, const std::string& server_name) override {
    return std::make_unique<MbedTlsStream>(std::move(socket), config_, server_name);
  }

 private:
  std::shared_ptr<const ClientConfig> config_;
};

/// The whole file, NUL-terminated as Mbed TLS's PEM parser wants it.
Result<std::string> ReadCaFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return InvalidArgument("cannot use CA file " + path + ": " + std::strerror(errno));
  std::string text;
  std::array<char, 4096> chunk;
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return InvalidArgument("cannot use CA file " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(chunk.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}
}  // namespace

Result<std::shared_ptr<TlsClient>> MakeMbedTlsClient(const TlsOptions& o) {
  DP_ASSIGN_OR_RETURN(std::string pem, ReadCaFile(o.ca_file));
  auto config = std::make_shared<ClientConfig>();
  // Every certificate that parses is trusted; ones that do not are skipped,
  // as OpenSSL's loader does, and a file with none at all is refused.
  (void)mbedtls_x509_crt_parse(&config->ca, reinterpret_cast<const unsigned char*>(pem.c_str()),
                               pem.size() + 1);
  if (config->ca.version == 0) {
    return InvalidArgument("cannot use CA file " + o.ca_file + ": no PEM certificate in it");
  }
  mbedtls_ssl_config* conf = &config->conf;
  if (const int r = mbedtls_ssl_config_defaults(
          conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
      r != 0) {
    return Internal("TLS client configuration: " + MbedTlsErrors().message(r));
  }
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(conf, &config->ca, nullptr);
  mbedtls_ssl_conf_rng(conf, &Random, nullptr);
  mbedtls_ssl_conf_ciphersuites(conf, kCiphersuites);
  mbedtls_ssl_conf_curves(conf, kCurves);
  return std::shared_ptr<TlsClient>(std::make_shared<MbedTlsClient>(std::move(config)));
}

}  // namespace deskpulse
