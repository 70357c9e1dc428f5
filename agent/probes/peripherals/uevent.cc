#include "agent/probes/peripherals/uevent.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace deskpulse::agent {
namespace {

bool ParseProduct(std::string_view v, Uevent* e) {
  // "46d/825/10": vendor, product and bcdDevice in hex without leading zeros.
  unsigned vid = 0, pid = 0;
  char tail = 0;
  const std::string s(v.substr(0, 32));
  if (std::sscanf(s.c_str(), "%x/%x/%*x%c", &vid, &pid, &tail) < 2) return false;
  if (vid > 0xFFFF || pid > 0xFFFF) return false;
  e->vendor_id = static_cast<std::uint16_t>(vid);
  e->product_id = static_cast<std::uint16_t>(pid);
  e->has_product = true;
  return true;
}

unsigned SmallNumber(std::string_view v) {
  unsigned n = 0;
  for (char c : v.substr(0, 6)) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n;
}

}  // namespace

std::optional<Uevent> ParseUevent(const char* data, std::size_t len) {
  if (data == nullptr || len == 0 || len > 8192) return std::nullopt;
  std::string_view all(data, len);
  // The header "action@devpath" is the first NUL-terminated string.
  const std::size_t header_end = all.find('\0');
  if (header_end == std::string_view::npos) return std::nullopt;
  const std::string_view header = all.substr(0, header_end);
  const std::size_t at = header.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= header.size()) return std::nullopt;

  Uevent e;
  for (std::size_t pos = header_end + 1; pos < all.size();) {
    std::size_t end = all.find('\0', pos);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view kv = all.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "ACTION")
      e.action = std::string(v);
    else if (k == "DEVPATH")
      e.devpath = std::string(v);
    else if (k == "SUBSYSTEM")
      e.subsystem = std::string(v);
    else if (k == "DEVTYPE")
      e.devtype = std::string(v);
    else if (k == "DRIVER")
      e.driver = std::string(v);
    else if (k == "PRODUCT")
      ParseProduct(v, &e);
    else if (k == "BUSNUM")
      e.busnum = SmallNumber(v);
    else if (k == "DEVNUM")
      e.devnum = SmallNumber(v);
    else if (k == "SEQNUM")
      e.seqnum = std::strtoull(std::string(v.substr(0, 20)).c_str(), nullptr, 10);
  }
  // The header and the keys must agree, or it is not a kernel message.
  if (e.action.empty() || e.devpath.empty() || header.substr(0, at) != e.action ||
      header.substr(at + 1) != e.devpath || e.devpath[0] != '/') {
    return std::nullopt;
  }
  return e;
}

Result<UeventSocket> UeventSocket::Open(bool kernel_only) {
  const int fd =
      ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) {
    return Unavailable(std::string("uevent netlink socket: ") + std::strerror(errno));
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1;  // the kernel's own events, not udevd's re-broadcast (group 2)
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return Unavailable(std::string("uevent netlink bind: ") + std::strerror(err));
  }
  int size = 256 << 10;  // hot-plug storms (a dock with a dozen devices) burst
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return UeventSocket(fd, kernel_only);
}

UeventSocket::~UeventSocket() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<Uevent> UeventSocket::Receive(int* error) {
  *error = 0;
  char buf[8192];
  sockaddr_nl from{};
  socklen_t from_len = sizeof from;
  const ssize_t n =
      ::recvfrom(fd_, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
  if (n < 0) {
    *error = errno == EWOULDBLOCK ? EAGAIN : errno;
    return std::nullopt;
  }
  if (!Acceptable(from.nl_pid, kernel_only_)) return std::nullopt;
  return ParseUevent(buf, static_cast<std::size_t>(n));
}

}  // namespace deskpulse::agent
