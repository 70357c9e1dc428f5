#include "agent/probes/peripherals/cups_ipp.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace deskpulse::agent {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint8_t kTagOperation = 0x01, kTagEnd = 0x03, kTagPrinter = 0x04;
constexpr std::uint8_t kTagBoolean = 0x22, kTagEnum = 0x23, kTagKeyword = 0x44;
constexpr std::uint8_t kTagCharset = 0x47, kTagLanguage = 0x48;
constexpr std::size_t kMaxResponse = 4u << 20;  // a site with thousands of queues is still < 4 MB

void Put16(std::string& out, std::size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
  out.push_back(static_cast<char>(v & 0xFF));
}

void PutAttr(std::string& out, std::uint8_t tag, std::string_view name, std::string_view value) {
  out.push_back(static_cast<char>(tag));
  Put16(out, name.size());
  out.append(name);
  Put16(out, value.size());
  out.append(value);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on `fd` until `deadline`; false on timeout or error.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

Result<int> Connect(const std::string& server, Clock::time_point deadline) {
  int fd = -1;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (!server.empty() && server[0] == '/') {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (server.size() >= sizeof un.sun_path) {
      return InvalidArgument("CUPS socket path too long: " + server);
    }
    std::memcpy(un.sun_path, server.data(), server.size());
    std::memcpy(&addr, &un, sizeof un);
    addr_len = sizeof un;
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  } else {
    const std::size_t colon = server.rfind(':');
    const std::string host = colon == std::string::npos ? server : server.substr(0, colon);
    const std::string port = colon == std::string::npos ? "631" : server.substr(colon + 1);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
      return Unavailable("CUPS server " + server + ": " + ::gai_strerror(rc));
    }
    std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addr_len = res->ai_addrlen;
    fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ::freeaddrinfo(res);
  }
  if (fd < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      const int err = errno;
      ::close(fd);
      return Unavailable("no cupsd at " + server + " (" + std::strerror(err) + ")");
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (!WaitFor(fd, POLLOUT, deadline) ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      ::close(fd);
      return Unavailable("no cupsd at " + server + " (" +
                         (err != 0 ? std::strerror(err) : "connect timed out") + ")");
    }
  }
  return fd;
}

std::uint32_t Get32(std::string_view b, std::size_t at) {
  return (std::uint32_t(std::uint8_t(b[at])) << 24) |
         (std::uint32_t(std::uint8_t(b[at + 1])) << 16) |
         (std::uint32_t(std::uint8_t(b[at + 2])) << 8) | std::uint32_t(std::uint8_t(b[at + 3]));
}
std::size_t Get16(std::string_view b, std::size_t at) {
  return (std::size_t(std::uint8_t(b[at])) << 8) | std::size_t(std::uint8_t(b[at + 1]));
}

}  // namespace

std::string EncodeGetPrinters(std::uint32_t request_id) {
  std::string out;
  out += '\x02';
  out += '\x00';  // IPP 2.0
  out += '\x40';
  out += '\x02';  // CUPS-Get-Printers
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((request_id >> shift) & 0xFF));
  out.push_back(static_cast<char>(kTagOperation));
  PutAttr(out, kTagCharset, "attributes-charset", "utf-8");
  PutAttr(out, kTagLanguage, "attributes-natural-language", "en");
  static constexpr std::string_view kWanted[] = {"printer-name",
                                                 "printer-state",
                                                 "printer-state-reasons",
                                                 "printer-is-accepting-jobs",
                                                 "device-uri",
                                                 "printer-make-and-model",
                                                 "printer-device-id"};
  bool first = true;
  for (std::string_view w : kWanted) {
    PutAttr(out, kTagKeyword, first ? "requested-attributes" : "", w);
    first = false;
  }
  out.push_back(static_cast<char>(kTagEnd));
  return out;
}

Result<std::vector<CupsPrinter>> DecodeGetPrinters(const std::string& body) {
  std::string_view b(body);
  if (b.size() < 9)
    return InvalidArgument("IPP response too short (" + std::to_string(b.size()) + " bytes)");
  const std::size_t status = Get16(b, 2);
  // 0x0406 client-error-not-found: cupsd has no queues at all.
  if (status == 0x0406) return std::vector<CupsPrinter>{};
  if (status >= 0x0100) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%04zx", status);
    return Unavailable(std::string("cupsd answered IPP status ") + hex);
  }
  std::vector<CupsPrinter> printers;
  std::uint8_t group = 0;
  std::string name;
  std::size_t at = 8;
  while (at < b.size()) {
    const std::uint8_t tag = static_cast<std::uint8_t>(b[at++]);
    if (tag == kTagEnd) return printers;
    if (tag < 0x10) {
      group = tag;
      if (group == kTagPrinter) printers.emplace_back();
      continue;
    }
    if (at + 2 > b.size()) break;
    const std::size_t name_len = Get16(b, at);
    at += 2;
    if (at + name_len + 2 > b.size()) break;
    if (name_len > 0) name = std::string(b.substr(at, name_len));
    at += name_len;
    const std::size_t value_len = Get16(b, at);
    at += 2;
    if (at + value_len > b.size()) break;
    const std::string_view value = b.substr(at, value_len);
    at += value_len;
    if (group != kTagPrinter || printers.empty()) continue;
    CupsPrinter& p = printers.back();
    if (name == "printer-name")
      p.name = std::string(value);
    else if (name == "printer-state" && tag == kTagEnum && value_len == 4)
      p.state = int(Get32(value, 0));
    else if (name == "printer-state-reasons")
      p.reasons.emplace_back(value);
    else if (name == "printer-is-accepting-jobs" && tag == kTagBoolean && value_len == 1)
      p.accepting = value[0] != 0;
    else if (name == "device-uri")
      p.device_uri = std::string(value);
    else if (name == "printer-make-and-model")
      p.make_and_model = std::string(value);
    else if (name == "printer-device-id")
      p.device_id = std::string(value);
  }
  return InvalidArgument("IPP response truncated at byte " + std::to_string(at) + " of " +
                         std::to_string(b.size()));
}

Result<std::string> HttpBody(const std::string& response) {
  const std::size_t line_end = response.find("\r\n");
  const std::size_t head_end = response.find("\r\n\r\n");
  if (line_end == std::string::npos || head_end == std::string::npos) {
    return InvalidArgument("malformed HTTP response from cupsd");
  }
  const std::string status_line = response.substr(0, std::min<std::size_t>(line_end, 80));
  int code = 0;
  if (std::sscanf(status_line.c_str(), "HTTP/1.%*d %d", &code) != 1) {
    return InvalidArgument("malformed HTTP status line from cupsd: " + status_line);
  }
  if (code != 200) return Unavailable("cupsd answered " + status_line);
  std::string headers = response.substr(0, head_end + 2);
  for (char& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string body = response.substr(head_end + 4);
  if (headers.find("\r\ntransfer-encoding: chunked\r\n") != std::string::npos) {
    std::string out;
    std::size_t at = 0;
    for (;;) {
      const std::size_t eol = body.find("\r\n", at);
      if (eol == std::string::npos) return InvalidArgument("truncated chunked body from cupsd");
      const unsigned long n = std::strtoul(body.substr(at, eol - at).c_str(), nullptr, 16);
      at = eol + 2;
      if (n == 0) return out;
      if (n > body.size() - at) return InvalidArgument("truncated chunk from cupsd");
      out.append(body, at, n);
      at += n + 2;
    }
  }
  if (const std::size_t cl = headers.find("\r\ncontent-length:"); cl != std::string::npos) {
    const unsigned long n = std::strtoul(headers.c_str() + cl + 17, nullptr, 10);
    if (n > body.size()) return InvalidArgument("truncated body from cupsd");
    body.resize(n);
  }
  return body;
}

Result<std::vector<CupsPrinter>> CupsGetPrinters(const std::string& server, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  DP_ASSIGN_OR_RETURN(int raw, Connect(server, deadline));
  Fd fd(raw);
  const std::string ipp = EncodeGetPrinters(1);
  std::string request =
      "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ipp\r\n"
      "Content-Length: " +
      std::to_string(ipp.size()) + "\r\nConnection: close\r\n\r\n" + ipp;
  for (std::size_t sent = 0; sent < request.size();) {
    if (!WaitFor(fd.get(), POLLOUT, deadline))
      return Unavailable("cupsd at " + server + " did not take the request within " +
                         std::to_string(timeout_ms) + " ms");
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Unavailable("cupsd at " + server + ": " + std::strerror(errno));
    }
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buf[16 << 10];
  for (;;) {
    if (!WaitFor(fd.get(), POLLIN, deadline)) {
      return Unavailable("cupsd at " + server + " did not answer within " +
                         std::to_string(timeout_ms) + " ms");
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Unavailable("cupsd at " + server + ": " + std::strerror(errno));
    }
    response.append(buf, static_cast<std::size_t>(n));
    if (response.size() > kMaxResponse) return InvalidArgument("cupsd answer larger than 4 MiB");
  }
  DP_ASSIGN_OR_RETURN(std::string body, HttpBody(response));
  return DecodeGetPrinters(body);
}

}  // namespace deskpulse::agent
