#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// One interface of a USB device, `<dev>:<cfg>.<if>` in sysfs.
struct UsbInterface {
  std::string name;  // "1-2:1.0"
  std::uint8_t cls = 0, subclass = 0, protocol = 0;
  std::string driver;  // basename of the `driver` link; empty = none bound
  bool authorized = true;
};

/// One USB device as sysfs shows it (`/sys/bus/usb/devices/<bus>-<port path>`).
struct UsbDevice {
  std::string port;     // "1-2.3"
  std::string devpath;  // under the sysfs root, as uevents name it: "/devices/pci0000:00/…/1-2.3"
  std::uint16_t vendor_id = 0, product_id = 0;
  std::uint8_t device_class = 0;
  unsigned busnum = 0, devnum = 0;
  std::string manufacturer, product, serial;
  bool authorized = true;
  /// A `vhci_hcd` ancestor: inside a VDI guest, the device came from a client.
  bool behind_vhci = false;
  /// usbip-host export status (1 available, 2 used by a remote attach); 0 = not exported.
  int usbip_status = 0;
  std::vector<UsbInterface> interfaces;
};

struct UsbScan {
  std::vector<UsbDevice> devices;     // sorted by port
  std::vector<std::string> problems;  // entries that could not be read, each naming the entry
};

/// One device, `<sysfs>/bus/usb/devices/<port>`; an error names the port.
Result<UsbDevice> ReadUsbDevice(const std::string& sysfs_root, const std::string& port);

/// Every USB device under `<sysfs>/bus/usb/devices`, root hubs excluded.
/// An unreadable `<sysfs>/bus/usb/devices` is one problem, not an exception.
UsbScan ScanUsb(const std::string& sysfs_root);

/// The processes holding `/dev/bus/usb/BBB/DDD` open, by (busnum, devnum), read
/// from `<proc>/<pid>/fd` links; the value is the holder's `comm`.
std::map<std::pair<unsigned, unsigned>, std::string> UsbNodeHolders(const std::string& proc_root);

/// True if udev's database (`<udev_data>/c189:<minor>`) says SANE's hwdb
/// matched the device (`E:libsane_matched=yes`): a scanner SANE drives from
/// user space, so no kernel driver is expected.
bool SaneMatched(const std::string& udev_data, unsigned busnum, unsigned devnum);

}  // namespace deskpulse::agent
