#include "agent/probes/peripherals/usb_sysfs.h"

#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string LinkBase(const std::string& link) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string target(buf, static_cast<std::size_t>(n));
  const std::size_t slash = target.rfind('/');
  return slash == std::string::npos ? target : target.substr(slash + 1);
}

// A sysfs attribute written as hex ("046d"), or nullopt.
std::optional<unsigned> Hex(const std::string& path, unsigned max) {
  auto line = ReadLine(path);
  if (!line || line->empty() || line->size() > 8) return std::nullopt;
  char* end = nullptr;
  const unsigned long v = std::strtoul(line->c_str(), &end, 16);
  if (*end != '\0' || v > max) return std::nullopt;
  return static_cast<unsigned>(v);
}

std::optional<unsigned> Decimal(const std::string& path, unsigned max) {
  auto line = ReadLine(path);
  if (!line || line->empty() || line->size() > 10) return std::nullopt;
  char* end = nullptr;
  const unsigned long v = std::strtoul(line->c_str(), &end, 10);
  if (*end != '\0' || v > max) return std::nullopt;
  return static_cast<unsigned>(v);
}

std::string Text(const std::string& path) {
  auto line = ReadLine(path);
  if (!line) return {};
  std::string s = std::move(*line);
  s.erase(std::remove_if(s.begin(), s.end(),
                         [](char c) { return static_cast<unsigned char>(c) < 0x20; }),
          s.end());
  // Descriptors often pad with spaces (" SanDisk").
  const std::size_t first = s.find_first_not_of(' ');
  const std::size_t last = s.find_last_not_of(' ');
  s = first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
  if (s.size() > 128) s.resize(128);
  return s;
}

bool IsDevicePort(const std::string& name) {
  // "1-2", "3-1.4.2"; not "usb1" (a root hub) nor "1-2:1.0" (an interface).
  if (name.find(':') != std::string::npos || name.empty() || !std::isdigit(name[0])) return false;
  return name.find('-') != std::string::npos;
}

}  // namespace

Result<UsbDevice> ReadUsbDevice(const std::string& sysfs_root, const std::string& port) {
  if (!IsDevicePort(port)) return InvalidArgument("'" + port + "' is not a USB device port");
  const std::string dir = sysfs_root + "/bus/usb/devices/" + port;
  UsbDevice d;
  d.port = port;
  auto vid = Hex(dir + "/idVendor", 0xFFFF);
  auto pid = Hex(dir + "/idProduct", 0xFFFF);
  if (!vid || !pid) return InvalidArgument(port + ": idVendor/idProduct missing or not hex");
  d.vendor_id = static_cast<std::uint16_t>(*vid);
  d.product_id = static_cast<std::uint16_t>(*pid);
  d.device_class = static_cast<std::uint8_t>(Hex(dir + "/bDeviceClass", 0xFF).value_or(0));
  d.busnum = Decimal(dir + "/busnum", 999).value_or(0);
  d.devnum = Decimal(dir + "/devnum", 999).value_or(0);
  d.manufacturer = Text(dir + "/manufacturer");
  d.product = Text(dir + "/product");
  d.serial = Text(dir + "/serial");
  d.authorized = Decimal(dir + "/authorized", 1).value_or(1) != 0;
  d.usbip_status = static_cast<int>(Decimal(dir + "/usbip_status", 9).value_or(0));

  char root_real[PATH_MAX], real[PATH_MAX];
  if (::realpath(sysfs_root.c_str(), root_real) != nullptr &&
      ::realpath(dir.c_str(), real) != nullptr) {
    const std::string full(real);
    const std::size_t root_len = std::strlen(root_real);
    d.devpath = full.compare(0, root_len, root_real) == 0 ? full.substr(root_len) : full;
    d.behind_vhci = d.devpath.find("/vhci_hcd") != std::string::npos;
  }
  const std::string prefix = port + ":";
  for (const std::string& child : ListDir(dir)) {
    if (child.compare(0, prefix.size(), prefix) != 0) continue;
    std::string idir = dir;
    idir.append("/").append(child);
    UsbInterface itf;
    itf.name = child;
    itf.cls = static_cast<std::uint8_t>(Hex(idir + "/bInterfaceClass", 0xFF).value_or(0));
    itf.subclass = static_cast<std::uint8_t>(Hex(idir + "/bInterfaceSubClass", 0xFF).value_or(0));
    itf.protocol = static_cast<std::uint8_t>(Hex(idir + "/bInterfaceProtocol", 0xFF).value_or(0));
    itf.driver = LinkBase(idir + "/driver");
    itf.authorized = Decimal(idir + "/authorized", 1).value_or(1) != 0;
    d.interfaces.push_back(std::move(itf));
  }
  return d;
}

UsbScan ScanUsb(const std::string& sysfs_root) {
  UsbScan scan;
  const std::string bus_dir = sysfs_root + "/bus/usb/devices";
  if (::access(bus_dir.c_str(), R_OK | X_OK) != 0) {
    scan.problems.push_back(bus_dir + ": " + std::strerror(errno));
    return scan;
  }
  for (const std::string& name : ListDir(bus_dir)) {
    if (!IsDevicePort(name)) continue;
    auto d = ReadUsbDevice(sysfs_root, name);
    if (d.ok()) {
      scan.devices.push_back(std::move(*d));
    } else {
      scan.problems.push_back(d.status().message());
    }
  }
  return scan;
}

std::map<std::pair<unsigned, unsigned>, std::string> UsbNodeHolders(const std::string& proc_root) {
  std::map<std::pair<unsigned, unsigned>, std::string> holders;
  static constexpr char kNode[] = "/dev/bus/usb/";
  for (const std::string& pid : ListDir(proc_root)) {
    if (!std::all_of(pid.begin(), pid.end(), [](char c) { return std::isdigit(c); })) continue;
    std::string fd_dir = proc_root;
    fd_dir.append("/").append(pid).append("/fd");
    for (const std::string& fd : ListDir(fd_dir)) {
      char buf[PATH_MAX];
      std::string link = fd_dir;
      link.append("/").append(fd);
      const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      buf[n] = '\0';
      if (std::strncmp(buf, kNode, sizeof kNode - 1) != 0) continue;
      unsigned bus = 0, dev = 0;
      if (std::sscanf(buf + sizeof kNode - 1, "%3u/%3u", &bus, &dev) != 2) continue;
      std::string comm = proc_root;
      comm.append("/").append(pid).append("/comm");
      holders[{bus, dev}] = Text(comm);
    }
  }
  return holders;
}

bool SaneMatched(const std::string& udev_data, unsigned busnum, unsigned devnum) {
  if (busnum == 0 || devnum == 0) return false;
  // usbdev char devices: major 189, minor (bus − 1) × 128 + (dev − 1).
  const unsigned minor = (busnum - 1) * 128 + (devnum - 1);
  auto db = ReadSmallFile(udev_data + "/c189:" + std::to_string(minor), 16 << 10);
  if (!db.ok()) return false;
  static constexpr std::string_view kLine = "E:libsane_matched=yes";
  for (std::size_t at = db->find(kLine); at != std::string::npos; at = db->find(kLine, at + 1)) {
    const std::size_t end = at + kLine.size();
    if ((at == 0 || (*db)[at - 1] == '\n') && (end == db->size() || (*db)[end] == '\n'))
      return true;
  }
  return false;
}

}  // namespace deskpulse::agent
