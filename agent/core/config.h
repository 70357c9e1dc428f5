#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deskpulse/common/catalog.h"
#include "deskpulse/common/host_port.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::agent {

struct BootConfig {
  bool enabled = true;
  /// D-Bus address of the system bus; empty = the default (DBUS_SYSTEM_BUS_ADDRESS or
  /// /run/dbus/system_bus_socket).
  std::string system_bus;
  /// Where `deskpulse-agent mark-desktop-ready` leaves its marks.
  std::string mark_dir = "/run/deskpulse";
  std::string kmsg = "/dev/kmsg";
  std::string fpdt_dir = "/sys/firmware/acpi/fpdt/boot";
  /// libvirt URI whose VMs' power-on → guest-ready is timed; empty = "qemu:///system"
  /// on a VDI host, off elsewhere; "none" = off.
  std::string libvirt_uri;
  /// A VM whose guest agent has not connected by then is reported with its power-on only.
  int vm_ready_timeout_s = 600;
};

struct SessionConfig {
  bool enabled = true;
  std::vector<std::uint16_t> ica_ports{1494, 2598};
  std::vector<std::uint16_t> blast_ports{22443, 8443};
  std::vector<std::uint16_t> pcoip_ports{4172};
  std::vector<std::uint16_t> rdp_ports{3389};
  std::vector<std::uint16_t> gateway_ports{443};
  /// A gateway-port connection is a display session only when its peer is one
  /// of these (host names or addresses), so a browser's HTTPS is not one ...
  std::vector<std::string> gateways;
  /// ... unless every connection on a gateway port is one (an endpoint that
  /// carries nothing else on them).
  bool gateway_port_any_peer = false;
  /// How session RTT is measured: "passive" reads the connection's own
  /// tcp_info; "connect" times TCP handshakes to the session's peer; "auto"
  /// is "connect" on a thin client (where the connection's own RTT carries the
  /// server's ACK delay) and "passive" elsewhere.
  std::string rtt_method = "auto";
  int rtt_probe_interval_s = 5;
  /// Data outstanding and no ACK for this long: the connection is stalled.
  int stall_threshold_ms = 2000;
  int sample_interval_s = 1;
  /// Full sock_diag dumps (which walk the kernel's whole TCP table) to find new
  /// display connections this often; known ones are looked up in between.
  int discovery_interval_s = 60;
  /// A new connection to the same peer within this is a reconnect, not a new session.
  int reconnect_window_s = 10;
  /// host:port of brokers or gateways to time with a TCP connect when no
  /// display connection is live.
  std::vector<HostPort> probe_targets;
  int probe_interval_s = 300;
  int probe_timeout_ms = 2000;
};

struct PeripheralsConfig {
  bool enabled = true;
  std::string sysfs = "/sys";
  std::string proc = "/proc";
  /// udev's database, for SANE's scanner match (`E:libsane_matched=yes`).
  std::string udev_data = "/run/udev/data";
  bool cups = true;
  /// cupsd's socket path or host:port; empty = $CUPS_SERVER, else /run/cups/cups.sock.
  std::string cups_server;
  int cups_timeout_ms = 2000;
  bool pcsc = true;
  /// Processes whose usbfs claim means "redirected into a remote session".
  std::vector<std::string> redirectors{"ctxusbd",     "vmware-usbarbitra", "vmware-view-usbd",
                                       "usbredirect", "usbredirserver",    "remote-viewer",
                                       "spicy",       "xfreerdp",          "xfreerdp3"};
  int reconnect_window_s = 10;
  /// USB, CUPS and PC/SC are read again at least this often (and at once on hot-plug).
  int poll_every_s = 60;
  /// A failure state is reported once it has held this long (plug-in settles).
  int settle_s = 30;
  /// Re-send the whole inventory at least this often even when nothing changed.
  int inventory_every_s = 3600;
  /// The peripheral catalog (`deskpulse-catalog build`): when the file exists,
  /// each device carries the catalog's verdict. Empty: never look.
  std::string catalog = catalog::kDefaultPath;
};

struct StabilityConfig {
  bool enabled = true;
  std::string proc = "/proc";
  bool journal = true;
  /// A directory of journal files to read instead of the system journal.
  std::string journal_dir;
  std::vector<std::string> vdi_clients{"wfica",       "wfica.sh",     "vmware-remotemks",
                                       "vmware-view", "xfreerdp",     "xfreerdp3",
                                       "remmina",     "pcoip-client", "vmware-view-usbd"};
};

struct AgentConfig {
  std::string source;  // the file it came from
  // [agent]
  std::string state_dir = "/var/lib/deskpulse";
  int interval_s = 60;
  v1::EndpointRole role = v1::ENDPOINT_ROLE_THIN_CLIENT;
  std::string site;
  std::string pool;
  std::string log_level = "info";
  std::string machine_id_file = "/etc/machine-id";
  // [collector]
  /// collector.address: one HOST:PORT, or several sharing one store,
  /// comma-separated (the agent starts at a random one and fails over).
  std::vector<HostPort> collectors;
  bool has_collector = false;
  std::string token;
  std::string ca_file;
  bool plaintext = false;
  int batch_reports = 100;
  int backoff_max_s = 60;
  /// After a refused credential: retry this far apart, doubling up to the max.
  int refused_retry_min_s = 60;
  int refused_retry_max_s = 900;
  // [spool]
  std::uint64_t spool_max_bytes = 64ull << 20;
  bool spool_fsync = true;

  BootConfig boot;
  SessionConfig session;
  PeripheralsConfig peripherals;
  StabilityConfig stability;
};

/// Reads and validates an agent configuration file. Unknown keys and bad
/// values are errors naming the key; the token may come from `token_file`.
Result<AgentConfig> LoadAgentConfig(const std::string& path);
Result<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& source);

}  // namespace deskpulse::agent
