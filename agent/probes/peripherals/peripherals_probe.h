#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/peripherals/cups_ipp.h"
#include "agent/probes/peripherals/pcsc.h"
#include "agent/probes/peripherals/uevent.h"
#include "agent/probes/peripherals/usb_sysfs.h"
#include "agent/probes/probe.h"

namespace deskpulse::agent {

/// What the probe knows about a USB device beyond sysfs.
struct UsbContext {
  const std::map<std::pair<unsigned, unsigned>, std::string>* holders = nullptr;
  const std::vector<std::string>* redirectors = nullptr;
  bool sane_matched = false;
  const CupsPrinter* queue = nullptr;  // the CUPS queue printing to it, if any
  bool previously_redirected = false;  // seen redirected earlier in this agent's life
};

struct UsbVerdict {
  deskpulse::v1::DeviceState state = deskpulse::v1::DEVICE_STATE_UNSPECIFIED;
  std::string reason;
  bool redirected = false;
  std::vector<std::string> drivers;  // "usblp", "usbfs(pcscd)"
};

/// Whether a USB device works here (pure; README "States" spells out the rules).
UsbVerdict ClassifyUsb(const UsbDevice& d, const UsbContext& c);

/// The state of a CUPS queue (pure).
UsbVerdict ClassifyQueue(const CupsPrinter& p);

/// True if `queue`'s device URI names `d` (usb://Make/Model?serial=…).
bool QueueMatches(const CupsPrinter& queue, const UsbDevice& d);

/// A stable, non-reversible 16-hex-digit tag for a device's serial number.
std::string SerialHash(std::string_view kind, std::uint16_t vid, std::uint16_t pid,
                       std::string_view serial);

/// The tag a USB device is known by: its serial number's hash, or, for a
/// device without one, its port's.
std::string UsbTag(std::uint16_t vid, std::uint16_t pid, const std::string& serial,
                   const std::string& port);

/// Peripherals (report.proto): USB inventory from sysfs with the driver each
/// interface has, hot-plug from the kernel uevent socket, redirection signs,
/// CUPS queues and PC/SC readers; each device gets a state.
class PeripheralsProbe : public Probe {
 public:
  /// `once`: a single snapshot (no settling, no hot-plug).
  PeripheralsProbe(PeripheralsConfig config, bool once = false);
  ~PeripheralsProbe() override;
  std::string_view name() const override { return "peripherals"; }
  void Start(const asio::any_io_executor& executor) override;
  void Collect(const CycleContext& ctx, deskpulse::v1::Report& report) override;

  /// Feed one uevent (the socket reader calls it; tests may too).
  void OnUevent(const Uevent& e, std::int64_t now_ms);
  /// Tests inject kernel-format messages from their own socket.
  void set_uevent_kernel_only(bool v) { uevent_kernel_only_ = v; }

 private:
  struct Known {
    std::uint16_t vid = 0, pid = 0;
    std::string serial_hash;
  };
  struct Settling {
    deskpulse::v1::DeviceState state{};
    std::int64_t since_ms = 0;
  };

  void Rescan(std::int64_t now_ms, bool usb_due, deskpulse::v1::Report& report);
  void AddEvent(deskpulse::v1::PeripheralEventKind kind, const Known& k, std::int64_t at_ms,
                std::string driver);
  /// Applies the settle time: a failure state counts once it has held settle_s.
  bool Settle(const std::string& key, deskpulse::v1::PeripheralState& s, std::int64_t now_ms);
  void ReadUevents();
  /// Attaches the catalog's verdict to each device, when the catalog is installed.
  void AttachVerdicts(std::vector<deskpulse::v1::PeripheralState>& inventory,
                      deskpulse::v1::Report& report);

  PeripheralsConfig config_;
  bool once_;
  bool uevent_kernel_only_ = true;
  std::unique_ptr<PcscClient> pcsc_;
  std::string pcsc_error_;
  bool pcsc_tried_ = false;

  bool dirty_ = true;
  bool reclassify_ = false;
  std::int64_t last_scan_ms_ = 0;
  std::int64_t last_usb_scan_ms_ = 0;
  UsbScan usb_;  // the last sysfs scan, with its usbfs holders and SANE matches
  std::map<std::pair<unsigned, unsigned>, std::string> holders_;
  std::map<std::string, bool> sane_;  // by devpath
  std::int64_t last_sent_ms_ = 0;
  std::string last_sent_;             // serialised inventory last put in a report
  std::string inventory_serialized_;  // the current one, serialised at each rescan
  std::vector<deskpulse::v1::PeripheralState> inventory_;
  std::map<std::string, Known> known_;  // by sysfs devpath
  std::map<std::string, Settling> settling_;
  std::map<std::string, deskpulse::v1::PeripheralState> settled_;  // by device key
  std::map<std::string, bool> redirected_once_;                    // by device key
  std::vector<std::pair<std::string, std::int64_t>> detached_;     // identity, when
  std::vector<deskpulse::v1::PeripheralEvent> events_;
  std::uint32_t events_dropped_ = 0;
  bool events_overflowed_ = false;

  // Verdicts by what was observed; the catalog is opened only on a miss and
  // closed again, and the cache is dropped when the file changes.
  std::map<std::string, deskpulse::v1::CatalogVerdict> verdicts_;
  std::string catalog_stamp_;  // size and mtime of the file the verdicts came from
  std::string catalog_error_;

  std::string hotplug_error_;
  std::unique_ptr<asio::posix::stream_descriptor> uevents_;
  std::unique_ptr<UeventSocket> socket_;
};

}  // namespace deskpulse::agent
