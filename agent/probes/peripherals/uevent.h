#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// One kernel uevent (`ACTION@DEVPATH\0KEY=value\0…`) from NETLINK_KOBJECT_UEVENT.
struct Uevent {
  std::string action;  // add, remove, bind, unbind, change, …
  std::string devpath;
  std::string subsystem;
  std::string devtype;                          // usb_device, usb_interface
  std::string driver;                           // on bind/unbind
  std::uint16_t vendor_id = 0, product_id = 0;  // from PRODUCT=vid/pid/bcd (hex)
  bool has_product = false;
  unsigned busnum = 0, devnum = 0;
  std::uint64_t seqnum = 0;
};

/// Parses one datagram. Messages from udevd ("libudev" header) and anything
/// malformed give nullopt: the buffer is untrusted input.
std::optional<Uevent> ParseUevent(const char* data, std::size_t len);

/// A socket on the kernel's uevent group. With `kernel_only` (the default) a
/// message is accepted only from the kernel (sender port 0); tests that inject
/// kernel-format messages from a privileged process turn it off.
class UeventSocket {
 public:
  static Result<UeventSocket> Open(bool kernel_only = true);
  UeventSocket(UeventSocket&& o) noexcept : fd_(o.fd_), kernel_only_(o.kernel_only_) { o.fd_ = -1; }
  UeventSocket& operator=(UeventSocket&&) = delete;
  ~UeventSocket();
  int fd() const { return fd_; }
  /// Give the descriptor away (to an asio stream_descriptor).
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  /// Receives one datagram without blocking. nullopt with `*error` EAGAIN when
  /// none is waiting, ENOBUFS when the kernel dropped some (rescan), 0 when the
  /// datagram was not acceptable.
  std::optional<Uevent> Receive(int* error);

  /// The check `Receive` applies to a datagram's sender.
  static bool Acceptable(std::uint32_t sender_port, bool kernel_only) {
    return !kernel_only || sender_port == 0;
  }

 private:
  UeventSocket(int fd, bool kernel_only) : fd_(fd), kernel_only_(kernel_only) {}
  int fd_;
  bool kernel_only_;
};

}  // namespace deskpulse::agent
