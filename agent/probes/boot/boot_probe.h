#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/core/config.h"
#include "agent/probes/boot/vm_boots.h"
#include "agent/probes/probe.h"

namespace deskpulse::agent {

/// systemd's Manager `*TimestampMonotonic` properties, µs; 0 = not measured.
struct ManagerTimestamps {
  std::uint64_t firmware_us = 0;  // counts backwards from kernel start
  std::uint64_t loader_us = 0;    // counts backwards from kernel start
  std::uint64_t initrd_us = 0;
  std::uint64_t userspace_us = 0;
  std::uint64_t finish_us = 0;
  /// systemd runs in a container (its KernelTimestamp is 0): there is no
  /// kernel or initrd phase of its own, and its boot starts at Userspace.
  bool in_container = false;
};

/// Boot phases as systemd-analyze computes and prints them (analyze-time-data.c,
/// whole milliseconds, truncated as format_timespan does); unknown phases stay
/// unset, never 0.
void ComputePhases(const ManagerTimestamps& t, deskpulse::v1::BootReport* out);

/// The kernel → init hand-off ("Run /sbin/init as init process") in
/// /dev/kmsg records ("6,339,5140900,-;message"), µs since kernel start.
std::optional<std::uint64_t> FindInitHandOffUs(std::string_view kmsg_records);

/// Firmware and boot-loader time from ACPI FPDT files, as systemd reads them.
void ReadFpdt(const std::string& dir, deskpulse::v1::BootReport* out);

/// The earliest desktop-ready mark of `boot_id` in `mark_dir`, µs CLOCK_MONOTONIC.
std::optional<std::uint64_t> ReadDesktopMark(const std::string& mark_dir,
                                             const std::string& boot_id);

/// Records "the desktop is ready" for the current boot (run from XDG autostart).
Status WriteDesktopMark(const std::string& mark_dir, const std::string& proc_root);

/// Boot time and its phases, once per boot (keyed by boot_id), then again when
/// the desktop-ready mark arrives. systemd over sd-bus when there is a bus,
/// else the kernel hand-off from /dev/kmsg.
class BootProbe : public Probe {
 public:
  BootProbe(BootConfig config, const std::string& state_dir, std::string proc_root,
            deskpulse::v1::EndpointRole role = deskpulse::v1::ENDPOINT_ROLE_THIN_CLIENT);
  ~BootProbe() override;
  std::string_view name() const override { return "boot"; }
  /// On a hypervisor host: starts watching libvirt for VM boots.
  void Start(const asio::any_io_executor& executor) override;
  void Collect(const CycleContext& ctx, deskpulse::v1::Report& report) override;
  /// The libvirt URI in effect ("" = VM boots are not watched).
  std::string LibvirtUri() const;

 private:
  struct Reported {
    std::string boot_id;
    bool desktop = false;
  };
  /// Fills phases from systemd; returns false (with `why`) when it cannot, and
  /// sets `pending` when boot has not finished yet.
  bool FromSystemd(deskpulse::v1::BootReport* boot, bool* pending, std::string* why);
  bool FromKmsg(deskpulse::v1::BootReport* boot, std::string* why);
  void SaveReported();

  BootConfig config_;
  std::string state_file_;
  std::string proc_root_;
  Reported reported_;
  deskpulse::v1::EndpointRole role_;
  std::unique_ptr<LibvirtVmWatcher> vms_;
  std::string vms_error_;
  std::uint64_t container_start_us_ = 0;  // in a container: its manager's start, µs monotonic
};

}  // namespace deskpulse::agent
