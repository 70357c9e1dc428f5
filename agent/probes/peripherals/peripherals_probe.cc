#include "agent/probes/peripherals/peripherals_probe.h"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "agent/platform/libsqlite.h"
#include "agent/platform/proc.h"
#include "agent/platform/sha256.h"
#include "deskpulse/common/catalog.h"

namespace deskpulse::agent {

namespace v1 = deskpulse::v1;

namespace {

constexpr std::size_t kMaxEventsPerReport = 64;

// Classes a kernel driver serves; a device whose interfaces are all of other
// classes (vendor-specific, still image, smart card, printer) is often driven
// from user space through usbfs (SANE, pcscd/libccid, the CUPS usb backend).
bool UserSpaceClass(std::uint8_t cls) {
  return cls == 0x06 || cls == 0x07 || cls == 0x0b || cls == 0xff || cls == 0xfe;
}

std::string Hex2(unsigned v) {
  char b[4];
  std::snprintf(b, sizeof b, "%02x", v & 0xFFu);
  return b;
}

std::string Ids(std::uint16_t vid, std::uint16_t pid) {
  char b[16];
  std::snprintf(b, sizeof b, "%04x:%04x", vid, pid);
  return b;
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const std::string hex(s.substr(i + 1, 2));
      char* end = nullptr;
      const long v = std::strtol(hex.c_str(), &end, 16);
      if (end != nullptr && *end == '\0' && hex.size() == 2) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

std::string DeviceName(const UsbDevice& d) {
  std::string name = d.manufacturer;
  if (!d.product.empty()) {
    // "HP" + "HP LaserJet 1020" reads better as the product alone.
    if (name.empty() || d.product.find(name) != std::string::npos)
      name = d.product;
    else
      name += " " + d.product;
  }
  return name;
}

std::string DeviceKey(const v1::PeripheralState& s) {
  return std::to_string(int(s.bus())) + ":" +
         Ids(std::uint16_t(s.vendor_id()), std::uint16_t(s.product_id())) + ":" +
         (s.serial_hash().empty() ? s.name() : s.serial_hash());
}

}  // namespace

std::string SerialHash(std::string_view kind, std::uint16_t vid, std::uint16_t pid,
                       std::string_view serial) {
  const std::string input =
      "deskpulse:" + std::string(kind) + ":" + Ids(vid, pid) + ":" + std::string(serial);
  const auto md = Sha256(input);
  std::string out;
  for (unsigned i = 0; i < 8; ++i) out += Hex2(md[i]);
  return out;
}

std::string UsbTag(std::uint16_t vid, std::uint16_t pid, const std::string& serial,
                   const std::string& port) {
  return serial.empty() ? SerialHash("usb-port", vid, pid, port)
                        : SerialHash("usb", vid, pid, serial);
}

bool QueueMatches(const CupsPrinter& queue, const UsbDevice& d) {
  if (queue.device_uri.compare(0, 6, "usb://") != 0) return false;
  const std::string_view uri(queue.device_uri);
  const std::size_t q = uri.find('?');
  if (q != std::string_view::npos) {
    const std::string_view params = uri.substr(q + 1);
    for (std::size_t at = 0; at <= params.size();) {
      std::size_t amp = params.find('&', at);
      if (amp == std::string_view::npos) amp = params.size();
      const std::string_view kv = params.substr(at, amp - at);
      if (kv.compare(0, 7, "serial=") == 0 && !d.serial.empty()) {
        return UrlDecode(kv.substr(7)) == d.serial;
      }
      at = amp + 1;
    }
  }
  // No serial in the URI: the model part must name the product.
  const std::string_view path = uri.substr(6, q == std::string_view::npos ? uri.npos : q - 6);
  const std::size_t slash = path.find('/');
  const std::string model = Lower(UrlDecode(slash == path.npos ? path : path.substr(slash + 1)));
  return !d.product.empty() && !model.empty() && Lower(d.product).find(model) != std::string::npos;
}

UsbVerdict ClassifyQueue(const CupsPrinter& p) {
  UsbVerdict v;
  const std::size_t scheme_end = p.device_uri.find(':');
  if (scheme_end != std::string::npos && scheme_end > 0) {
    v.drivers.push_back("cups:" + p.device_uri.substr(0, scheme_end));
  }
  std::string problems;
  for (const std::string& r : p.reasons) {
    if (r == "none") continue;
    if (EndsWith(r, "-error") || r == "paused" || r == "offline-report" ||
        r.find("-error") != std::string::npos) {
      problems += (problems.empty() ? "" : ", ") + r;
    }
  }
  if (p.state == 5) {
    v.state = v1::DEVICE_STATE_ERROR;
    v.reason = "queue " + p.name + " stopped" + (problems.empty() ? "" : ": " + problems);
  } else if (!p.accepting) {
    v.state = v1::DEVICE_STATE_ERROR;
    v.reason = "queue " + p.name + " is not accepting jobs";
  } else if (!problems.empty()) {
    v.state = v1::DEVICE_STATE_ERROR;
    v.reason = "queue " + p.name + ": " + problems;
  } else {
    v.state = v1::DEVICE_STATE_WORKING;
  }
  return v;
}

UsbVerdict ClassifyUsb(const UsbDevice& d, const UsbContext& c) {
  UsbVerdict v;
  v.redirected = d.behind_vhci;
  std::string holder;
  if (c.holders != nullptr) {
    if (auto it = c.holders->find({d.busnum, d.devnum}); it != c.holders->end())
      holder = it->second;
  }
  const bool holder_redirects =
      !holder.empty() && c.redirectors != nullptr &&
      std::find(c.redirectors->begin(), c.redirectors->end(), holder) != c.redirectors->end();
  bool any_driver = false, usbip = false;
  std::string unbound;
  for (const UsbInterface& i : d.interfaces) {
    if (i.driver.empty()) {
      unbound += (unbound.empty() ? "" : ", ") + i.name + " (class " + Hex2(i.cls) + ")";
      continue;
    }
    any_driver = true;
    std::string shown = i.driver;
    if (i.driver == "usbfs") {
      shown = holder.empty() ? "usbfs" : "usbfs(" + holder + ")";
      if (holder_redirects) v.redirected = true;
    } else if (i.driver == "usbip-host") {
      usbip = true;
      v.redirected = true;
    }
    if (std::find(v.drivers.begin(), v.drivers.end(), shown) == v.drivers.end()) {
      v.drivers.push_back(shown);
    }
  }

  if (!d.authorized) {
    v.state = v1::DEVICE_STATE_BLOCKED_BY_POLICY;
    v.reason = "authorized=0: blocked by the USB device policy (USBGuard or an udev rule)";
    return v;
  }
  for (const UsbInterface& i : d.interfaces) {
    if (!i.authorized) {
      v.state = v1::DEVICE_STATE_BLOCKED_BY_POLICY;
      v.reason = "interface " + i.name + " (class " + Hex2(i.cls) + ") is not authorized";
      return v;
    }
  }
  if (usbip && d.usbip_status != 2) {
    v.state = v1::DEVICE_STATE_REDIRECT_FAILED;
    v.reason = "exported over USB/IP (usbip-host) but no remote session has attached it";
    return v;
  }
  if (c.queue != nullptr && !v.redirected) {
    UsbVerdict q = ClassifyQueue(*c.queue);
    v.state = q.state;
    v.reason = q.reason;
    if (v.drivers.empty()) v.drivers = q.drivers;
    return v;
  }
  if (any_driver) {
    v.state = v1::DEVICE_STATE_WORKING;
    return v;
  }
  // Nothing bound on any interface.
  if (c.previously_redirected && !d.behind_vhci) {
    v.state = v1::DEVICE_STATE_REDIRECT_FAILED;
    v.reason = "was redirected into a session and is now left with no driver bound";
    return v;
  }
  const bool user_space = !d.interfaces.empty() &&
                          std::all_of(d.interfaces.begin(), d.interfaces.end(),
                                      [](const UsbInterface& i) { return UserSpaceClass(i.cls); });
  if (user_space && c.sane_matched) {
    v.state = v1::DEVICE_STATE_WORKING;  // SANE drives it from user space when a scan starts
    v.drivers.push_back("sane");
    return v;
  }
  v.state = v1::DEVICE_STATE_NO_DRIVER;
  if (d.interfaces.empty()) {
    v.reason = "not configured: the device exposes no interfaces";
  } else if (std::any_of(d.interfaces.begin(), d.interfaces.end(),
                         [](const UsbInterface& i) { return i.cls == 0x0b; })) {
    v.reason =
        "smart-card reader not claimed by pcscd (no CCID support for it, or pcscd is "
        "not running); unbound: " +
        unbound;
  } else if (std::any_of(d.interfaces.begin(), d.interfaces.end(),
                         [](const UsbInterface& i) { return i.cls == 0x07; })) {
    v.reason = "printer with no kernel driver and no CUPS queue; unbound: " + unbound;
  } else {
    v.reason = "no driver bound to " + unbound;
  }
  return v;
}

PeripheralsProbe::PeripheralsProbe(PeripheralsConfig config, bool once)
    : config_(std::move(config)), once_(once) {}

PeripheralsProbe::~PeripheralsProbe() {
  if (uevents_) uevents_->release();  // socket_ owns the descriptor
}

void PeripheralsProbe::Start(const asio::any_io_executor& executor) {
  auto sock = UeventSocket::Open(uevent_kernel_only_);
  if (!sock.ok()) {
    hotplug_error_ = sock.status().message();
    return;
  }
  socket_ = std::make_unique<UeventSocket>(std::move(*sock));
  uevents_ = std::make_unique<asio::posix::stream_descriptor>(executor, socket_->fd());
  ReadUevents();
}

void PeripheralsProbe::ReadUevents() {
  uevents_->async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec) {
      if (ec != asio::error::operation_aborted) hotplug_error_ = "uevent socket: " + ec.message();
      return;
    }
    for (int i = 0; i < 256; ++i) {
      int err = 0;
      auto e = socket_->Receive(&err);
      if (e) {
        OnUevent(*e, NowUnixMs());
      } else if (err == EAGAIN) {
        break;
      } else if (err == ENOBUFS) {
        events_overflowed_ = true;  // the kernel dropped some: the next scan is the truth
        dirty_ = true;
      }
    }
    ReadUevents();
  });
}

void PeripheralsProbe::AddEvent(v1::PeripheralEventKind kind, const Known& k, std::int64_t at_ms,
                                std::string driver) {
  if (events_.size() >= kMaxEventsPerReport) {
    ++events_dropped_;
    return;
  }
  v1::PeripheralEvent e;
  e.set_kind(kind);
  e.set_vendor_id(k.vid);
  e.set_product_id(k.pid);
  e.set_serial_hash(k.serial_hash);
  e.set_at_unix_ms(at_ms);
  if (!driver.empty()) e.set_driver(std::move(driver));
  events_.push_back(std::move(e));
}

void PeripheralsProbe::OnUevent(const Uevent& e, std::int64_t now_ms) {
  if (e.subsystem != "usb") return;
  dirty_ = true;
  const std::int64_t window_ms = std::int64_t(config_.reconnect_window_s) * 1000;
  detached_.erase(std::remove_if(detached_.begin(), detached_.end(),
                                 [&](const auto& d) { return now_ms - d.second > window_ms; }),
                  detached_.end());
  if (e.devtype == "usb_device") {
    const std::size_t slash = e.devpath.rfind('/');
    const std::string port = e.devpath.substr(slash + 1);
    // What the uevent alone says, when sysfs has nothing (left) to read.
    std::optional<Known> from_event;
    if (e.has_product) {
      from_event = Known{e.vendor_id, e.product_id, UsbTag(e.vendor_id, e.product_id, "", port)};
    }
    if (e.action == "add") {
      Known k;
      if (auto d = ReadUsbDevice(config_.sysfs, port); d.ok()) {
        k = Known{d->vendor_id, d->product_id,
                  UsbTag(d->vendor_id, d->product_id, d->serial, port)};
      } else if (from_event) {
        k = *from_event;
      } else {
        return;
      }
      known_[e.devpath] = k;
      const std::string id = Ids(k.vid, k.pid) + ":" + k.serial_hash;
      auto it = std::find_if(detached_.begin(), detached_.end(),
                             [&](const auto& d) { return d.first == id; });
      if (it != detached_.end()) {
        detached_.erase(it);
        AddEvent(v1::PERIPHERAL_EVENT_KIND_RECONNECT, k, now_ms, {});
      } else {
        AddEvent(v1::PERIPHERAL_EVENT_KIND_ATTACH, k, now_ms, {});
      }
    } else if (e.action == "remove") {
      Known k;
      if (auto it = known_.find(e.devpath); it != known_.end()) {
        k = it->second;
        known_.erase(it);
      } else if (from_event) {
        k = *from_event;
      } else {
        return;
      }
      detached_.emplace_back(Ids(k.vid, k.pid) + ":" + k.serial_hash, now_ms);
      AddEvent(v1::PERIPHERAL_EVENT_KIND_DETACH, k, now_ms, {});
    }
    return;
  }
  if (e.devtype == "usb_interface" && (e.action == "bind" || e.action == "unbind")) {
    const std::string parent = e.devpath.substr(0, e.devpath.rfind('/'));
    Known k;
    if (auto it = known_.find(parent); it != known_.end()) {
      k = it->second;
    } else if (e.has_product) {
      k.vid = e.vendor_id;
      k.pid = e.product_id;
    } else {
      return;
    }
    AddEvent(e.action == "bind" ? v1::PERIPHERAL_EVENT_KIND_BIND : v1::PERIPHERAL_EVENT_KIND_UNBIND,
             k, now_ms, e.driver);
  }
}

bool PeripheralsProbe::Settle(const std::string& key, v1::PeripheralState& s, std::int64_t now_ms) {
  const bool failing =
      s.state() != v1::DEVICE_STATE_WORKING && s.state() != v1::DEVICE_STATE_BLOCKED_BY_POLICY;
  if (once_ || !failing) {
    settling_.erase(key);
    settled_[key] = s;
    return true;
  }
  auto [it, fresh] = settling_.try_emplace(key, Settling{s.state(), now_ms});
  if (!fresh && it->second.state != s.state()) it->second = Settling{s.state(), now_ms};
  if (now_ms - it->second.since_ms >= std::int64_t(config_.settle_s) * 1000) {
    settled_[key] = s;
    return true;
  }
  reclassify_ = true;  // look again next cycle (no need to re-read sysfs)
  if (auto prev = settled_.find(key); prev != settled_.end()) {
    s = prev->second;  // keep reporting what held before until the new state settles
    return true;
  }
  return false;  // a new device still settling: not in the inventory yet
}

void PeripheralsProbe::Rescan(std::int64_t now_ms, bool usb_due, v1::Report& report) {
  last_scan_ms_ = now_ms;
  if (usb_due) {
    // sysfs and the usbfs holders change only with a uevent (add, remove,
    // bind, unbind: a usbfs claim binds too), so they are read on events, at
    // start and hourly; CUPS and PC/SC below change silently and are polled.
    dirty_ = false;
    last_usb_scan_ms_ = now_ms;
    usb_ = ScanUsb(config_.sysfs);
    const bool claimed =
        std::any_of(usb_.devices.begin(), usb_.devices.end(), [](const UsbDevice& d) {
          return std::any_of(d.interfaces.begin(), d.interfaces.end(),
                             [](const UsbInterface& i) { return i.driver == "usbfs"; });
        });
    holders_.clear();
    if (claimed) holders_ = UsbNodeHolders(config_.proc);  // only then: it walks every fd
    sane_.clear();
    for (const UsbDevice& d : usb_.devices) {
      const bool unbound = std::none_of(d.interfaces.begin(), d.interfaces.end(),
                                        [](const UsbInterface& i) { return !i.driver.empty(); });
      if (unbound && SaneMatched(config_.udev_data, d.busnum, d.devnum)) sane_[d.devpath] = true;
    }
  }
  const UsbScan& scan = usb_;
  for (const std::string& p : scan.problems) AddUnavailable(report, "peripherals.usb", p);

  std::vector<CupsPrinter> queues;
  if (config_.cups) {
    std::string server = config_.cups_server;
    if (server.empty()) {
      const char* env = std::getenv("CUPS_SERVER");
      server = env != nullptr && *env != '\0' ? env : "/run/cups/cups.sock";
    }
    auto got = CupsGetPrinters(server, config_.cups_timeout_ms);
    if (got.ok()) {
      queues = std::move(*got);
    } else {
      AddUnavailable(report, "peripherals.printers", got.status().message());
    }
  }

  std::vector<v1::PeripheralState> inventory;
  std::map<std::string, Known> known;
  std::vector<bool> queue_used(queues.size(), false);
  for (const UsbDevice& d : scan.devices) {
    v1::PeripheralState s;
    s.set_bus(v1::PERIPHERAL_BUS_USB);
    s.set_vendor_id(d.vendor_id);
    s.set_product_id(d.product_id);
    s.set_device_class(d.device_class);
    for (const UsbInterface& i : d.interfaces) {
      if (std::find(s.interface_classes().begin(), s.interface_classes().end(), i.cls) ==
          s.interface_classes().end()) {
        s.add_interface_classes(i.cls);
      }
    }
    s.set_serial_hash(UsbTag(d.vendor_id, d.product_id, d.serial, d.port));
    s.set_name(DeviceName(d));
    known[d.devpath] = Known{d.vendor_id, d.product_id, s.serial_hash()};
    const std::string key = DeviceKey(s);

    UsbContext c;
    c.holders = &holders_;
    c.redirectors = &config_.redirectors;
    c.previously_redirected = redirected_once_.count(key) > 0;
    c.sane_matched = sane_.count(d.devpath) > 0;
    for (std::size_t q = 0; q < queues.size(); ++q) {
      if (QueueMatches(queues[q], d)) {
        c.queue = &queues[q];
        queue_used[q] = true;
        break;
      }
    }
    UsbVerdict v = ClassifyUsb(d, c);
    if (v.redirected && v.state == v1::DEVICE_STATE_WORKING && !d.behind_vhci) {
      redirected_once_[key] = true;
    } else if (!v.redirected && v.state == v1::DEVICE_STATE_WORKING) {
      redirected_once_.erase(key);  // back home with a local driver
    }
    for (std::string& drv : v.drivers) s.add_drivers(std::move(drv));
    s.set_redirected(v.redirected);
    s.set_state(v.state);
    if (!v.reason.empty()) s.set_reason(v.reason);
    if (c.queue != nullptr && !c.queue->device_id.empty()) s.set_ieee1284_id(c.queue->device_id);
    if (Settle(key, s, now_ms)) inventory.push_back(std::move(s));
  }
  known_ = std::move(known);

  for (std::size_t q = 0; q < queues.size(); ++q) {
    const CupsPrinter& p = queues[q];
    v1::PeripheralState s;
    s.set_bus(v1::PERIPHERAL_BUS_CUPS);
    for (const UsbDevice& d : scan.devices) {
      if (QueueMatches(p, d)) {
        s.set_vendor_id(d.vendor_id);
        s.set_product_id(d.product_id);
        break;
      }
    }
    s.set_serial_hash(SerialHash("cups-queue", 0, 0, p.name));
    s.set_name(p.make_and_model.empty() ? p.name : p.make_and_model);
    UsbVerdict v = ClassifyQueue(p);
    for (std::string& drv : v.drivers) s.add_drivers(std::move(drv));
    s.set_state(v.state);
    if (!v.reason.empty()) s.set_reason(v.reason);
    if (!p.device_id.empty()) s.set_ieee1284_id(p.device_id);
    const std::string key = DeviceKey(s);
    if (Settle(key, s, now_ms)) inventory.push_back(std::move(s));
  }

  if (config_.pcsc) {
    if (!pcsc_tried_) {
      pcsc_tried_ = true;
      auto loaded = PcscClient::Load();
      if (loaded.ok()) {
        pcsc_ = std::move(*loaded);
      } else {
        pcsc_error_ = loaded.status().message();
      }
    }
    if (!pcsc_) {
      AddUnavailable(report, "peripherals.smartcards", pcsc_error_);
    } else if (auto readers = pcsc_->Readers(); !readers.ok()) {
      AddUnavailable(report, "peripherals.smartcards", readers.status().message());
    } else {
      for (const SmartCardReader& r : *readers) {
        v1::PeripheralState s;
        s.set_bus(v1::PERIPHERAL_BUS_PCSC);
        s.set_serial_hash(SerialHash("pcsc-reader", 0, 0, r.name));
        s.set_name(r.name);
        s.add_drivers("pcscd");
        if (r.event_state & 0x0008u) {  // SCARD_STATE_UNAVAILABLE
          s.set_state(v1::DEVICE_STATE_ERROR);
          s.set_reason("pcscd reports the reader unavailable");
        } else if (r.event_state & 0x0200u) {  // SCARD_STATE_MUTE
          s.set_state(v1::DEVICE_STATE_ERROR);
          s.set_reason("the card in the reader does not answer (mute)");
        } else {
          s.set_state(v1::DEVICE_STATE_WORKING);
        }
        const std::string key = DeviceKey(s);
        if (Settle(key, s, now_ms)) inventory.push_back(std::move(s));
      }
    }
  }
  AttachVerdicts(inventory, report);
  inventory_ = std::move(inventory);
  inventory_serialized_.clear();
  for (const auto& s : inventory_) inventory_serialized_ += s.SerializeAsString();
}

void PeripheralsProbe::AttachVerdicts(std::vector<v1::PeripheralState>& inventory,
                                      v1::Report& report) {
  if (config_.catalog.empty()) return;
  struct stat st {};
  if (::stat(config_.catalog.c_str(), &st) != 0) {
    verdicts_.clear();  // not installed (or removed): the collector classifies
    return;
  }
  const std::string stamp = std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) +
                            "." + std::to_string(st.st_mtim.tv_nsec);
  if (stamp != catalog_stamp_ || verdicts_.size() > 512) {
    verdicts_.clear();
    catalog_stamp_ = stamp;
    catalog_error_.clear();
  }
  // Declared before the reader so that it is unloaded after the reader closes.
  std::optional<SqliteLibrary> sqlite;
  std::optional<catalog::Reader> reader;
  for (v1::PeripheralState& s : inventory) {
    if (s.bus() == v1::PERIPHERAL_BUS_PCSC) continue;  // a reader name, no ids
    std::string key = std::to_string(s.vendor_id()) + ":" + std::to_string(s.product_id()) + ":" +
                      std::to_string(s.device_class()) + ":" + s.ieee1284_id() + ":" +
                      (s.redirected() ? "r" : "l");
    for (auto c : s.interface_classes()) key += ":" + std::to_string(c);
    for (const auto& d : s.drivers()) key += "|" + d;
    auto it = verdicts_.find(key);
    if (it == verdicts_.end()) {
      if (!catalog_error_.empty()) break;
      if (!reader) {
        auto lib = SqliteLibrary::Load();
        if (!lib.ok()) {
          catalog_error_ = lib.status().message();
          break;
        }
        sqlite.emplace(std::move(*lib));
        auto opened = catalog::Reader::Open(config_.catalog, sqlite->api());
        if (!opened.ok()) {
          catalog_error_ = opened.status().message();
          break;
        }
        reader.emplace(std::move(*opened));
      }
      auto c = reader->Classify(catalog::ObservationOf(s));
      if (!c.ok()) {
        catalog_error_ = config_.catalog + ": " + c.status().message();
        break;
      }
      v1::CatalogVerdict v;
      catalog::VerdictToProto(*c, reader->version(), &v);
      it = verdicts_.emplace(std::move(key), std::move(v)).first;
    }
    *s.mutable_catalog() = it->second;
  }
  if (!catalog_error_.empty()) AddUnavailable(report, "peripherals.catalog", catalog_error_);
  if (sqlite) {
    // Close and unload SQLite now, then hand its freed heap back: an endpoint
    // keeps only the verdicts.
    reader.reset();
    sqlite.reset();
    ::malloc_trim(0);
  }
}

void PeripheralsProbe::Collect(const CycleContext& ctx, v1::Report& report) {
  const std::int64_t now = ctx.now_unix_ms;
  const bool poll_due = now - last_scan_ms_ >= std::int64_t(config_.poll_every_s) * 1000;
  // Without the uevent socket (or in --once) sysfs is read at every poll.
  const bool usb_due = dirty_ || ctx.first_cycle || once_ || (poll_due && !socket_) ||
                       now - last_usb_scan_ms_ >= std::int64_t(config_.inventory_every_s) * 1000;
  if (usb_due || poll_due || reclassify_) {
    reclassify_ = false;
    Rescan(now, usb_due, report);
  }
  if (once_ || ctx.first_cycle || inventory_serialized_ != last_sent_ ||
      now - last_sent_ms_ >= std::int64_t(config_.inventory_every_s) * 1000) {
    for (const auto& s : inventory_) *report.add_peripherals() = s;
    last_sent_ = inventory_serialized_;
    last_sent_ms_ = now;
  }
  for (auto& e : events_) *report.add_peripheral_events() = std::move(e);
  events_.clear();
  if (!hotplug_error_.empty()) AddUnavailable(report, "peripherals.hotplug", hotplug_error_);
  if (events_dropped_ > 0 || events_overflowed_) {
    AddUnavailable(report, "peripherals.hotplug",
                   events_overflowed_
                       ? "the kernel dropped hot-plug events (receive buffer full)"
                       : std::to_string(events_dropped_) +
                             " hot-plug events beyond 64 in one report were dropped");
    events_dropped_ = 0;
    events_overflowed_ = false;
  }
}

}  // namespace deskpulse::agent
