#include "agent/core/config.h"

#include <fstream>
#include <sstream>

#include "deskpulse/common/config.h"

namespace deskpulse::agent {
namespace {

Status GetPorts(ConfigReader& r, std::string_view key, std::vector<std::uint16_t>* out) {
  std::vector<std::int64_t> values;
  for (auto p : *out) values.push_back(p);
  DP_RETURN_IF_ERROR(r.GetIntList(key, 1, 65535, &values));
  out->assign(values.begin(), values.end());
  return Status::Ok();
}

Status GetSeconds(ConfigReader& r, std::string_view key, int min, int max, int* out) {
  std::int64_t v = *out;
  DP_RETURN_IF_ERROR(r.GetInt(key, min, max, &v));
  *out = static_cast<int>(v);
  return Status::Ok();
}

}  // namespace

Result<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& source) {
  auto reader = ConfigReader::FromString(text, source);
  if (!reader.ok()) return reader.status();
  ConfigReader& r = *reader;
  AgentConfig c;
  c.source = source;

  DP_RETURN_IF_ERROR(r.GetString("agent.state_dir", &c.state_dir));
  DP_RETURN_IF_ERROR(GetSeconds(r, "agent.interval_s", 1, 3600, &c.interval_s));
  std::string role = "thin_client";
  DP_RETURN_IF_ERROR(r.GetString("agent.role", &role));
  if (role == "thin_client") {
    c.role = v1::ENDPOINT_ROLE_THIN_CLIENT;
  } else if (role == "vdi_guest") {
    c.role = v1::ENDPOINT_ROLE_VDI_GUEST;
  } else if (role == "vdi_host") {
    c.role = v1::ENDPOINT_ROLE_VDI_HOST;
  } else {
    return InvalidArgument(source + ": key 'agent.role': '" + role +
                           "' is not one of thin_client, vdi_guest, vdi_host");
  }
  DP_RETURN_IF_ERROR(r.GetString("agent.site", &c.site));
  DP_RETURN_IF_ERROR(r.GetString("agent.pool", &c.pool));
  DP_RETURN_IF_ERROR(r.GetString("agent.log_level", &c.log_level));
  if (c.log_level != "trace" && c.log_level != "debug" && c.log_level != "info" &&
      c.log_level != "warn" && c.log_level != "error" && c.log_level != "off") {
    return InvalidArgument(source + ": key 'agent.log_level': '" + c.log_level +
                           "' is not one of trace, debug, info, warn, error, off");
  }
  DP_RETURN_IF_ERROR(r.GetString("agent.machine_id_file", &c.machine_id_file));

  std::string address;
  DP_RETURN_IF_ERROR(r.GetString("collector.address", &address));
  if (!address.empty()) {
    auto hp = ParseHostPortList(address, source + ": key 'collector.address'");
    if (!hp.ok()) return hp.status();
    c.collectors = *hp;
    c.has_collector = true;
  }
  DP_RETURN_IF_ERROR(r.GetString("collector.token", &c.token));
  std::string token_file;
  DP_RETURN_IF_ERROR(r.GetString("collector.token_file", &token_file));
  if (!token_file.empty()) {
    if (!c.token.empty()) {
      return InvalidArgument(source + ": keys 'collector.token' and 'collector.token_file' " +
                             "are both set; give one");
    }
    std::ifstream in(token_file);
    if (!in) {
      return InvalidArgument(source + ": key 'collector.token_file': cannot read " + token_file);
    }
    std::getline(in, c.token);
    while (!c.token.empty() && (c.token.back() == '\r' || c.token.back() == ' '))
      c.token.pop_back();
    if (c.token.empty()) {
      return InvalidArgument(source + ": key 'collector.token_file': " + token_file + " is empty");
    }
  }
  DP_RETURN_IF_ERROR(r.GetString("collector.ca_file", &c.ca_file));
  DP_RETURN_IF_ERROR(r.GetBool("collector.plaintext", &c.plaintext));
  DP_RETURN_IF_ERROR(GetSeconds(r, "collector.batch_reports", 1, 1000, &c.batch_reports));
  DP_RETURN_IF_ERROR(GetSeconds(r, "collector.backoff_max_s", 1, 3600, &c.backoff_max_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "collector.refused_retry_min_s", 1, 86400, &c.refused_retry_min_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "collector.refused_retry_max_s", 1, 86400, &c.refused_retry_max_s));
  if (c.refused_retry_max_s < c.refused_retry_min_s) {
    return InvalidArgument(source + ": key 'collector.refused_retry_max_s' (" +
                           std::to_string(c.refused_retry_max_s) +
                           ") is below 'collector.refused_retry_min_s' (" +
                           std::to_string(c.refused_retry_min_s) + ")");
  }
  if (c.has_collector) {
    if (c.token.empty()) {
      return InvalidArgument(source + ": key 'collector.token': required with collector.address");
    }
    if (!c.ca_file.empty() && c.plaintext) {
      return InvalidArgument(source + ": keys 'collector.ca_file' and 'collector.plaintext' " +
                             "contradict each other");
    }
  }

  std::int64_t spool_max = static_cast<std::int64_t>(c.spool_max_bytes);
  DP_RETURN_IF_ERROR(r.GetInt("spool.max_bytes", 128 << 10, std::int64_t{16} << 30, &spool_max));
  c.spool_max_bytes = static_cast<std::uint64_t>(spool_max);
  DP_RETURN_IF_ERROR(r.GetBool("spool.fsync", &c.spool_fsync));

  DP_RETURN_IF_ERROR(r.GetBool("probes.boot.enabled", &c.boot.enabled));
  DP_RETURN_IF_ERROR(r.GetString("probes.boot.system_bus", &c.boot.system_bus));
  DP_RETURN_IF_ERROR(r.GetString("probes.boot.mark_dir", &c.boot.mark_dir));
  DP_RETURN_IF_ERROR(r.GetString("probes.boot.kmsg", &c.boot.kmsg));
  DP_RETURN_IF_ERROR(r.GetString("probes.boot.fpdt_dir", &c.boot.fpdt_dir));
  DP_RETURN_IF_ERROR(r.GetString("probes.boot.libvirt_uri", &c.boot.libvirt_uri));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.boot.vm_ready_timeout_s", 10, 86400, &c.boot.vm_ready_timeout_s));

  SessionConfig& s = c.session;
  DP_RETURN_IF_ERROR(r.GetBool("probes.session.enabled", &s.enabled));
  DP_RETURN_IF_ERROR(GetPorts(r, "probes.session.ica_ports", &s.ica_ports));
  DP_RETURN_IF_ERROR(GetPorts(r, "probes.session.blast_ports", &s.blast_ports));
  DP_RETURN_IF_ERROR(GetPorts(r, "probes.session.pcoip_ports", &s.pcoip_ports));
  DP_RETURN_IF_ERROR(GetPorts(r, "probes.session.rdp_ports", &s.rdp_ports));
  DP_RETURN_IF_ERROR(GetPorts(r, "probes.session.gateway_ports", &s.gateway_ports));
  DP_RETURN_IF_ERROR(r.GetStringList("probes.session.gateways", &s.gateways));
  for (std::size_t i = 0; i < s.gateways.size(); ++i) {
    if (s.gateways[i].empty() || s.gateways[i].size() > 253) {
      return InvalidArgument(source + ": key 'probes.session.gateways' element " +
                             std::to_string(i) + ": not a host name or address");
    }
  }
  DP_RETURN_IF_ERROR(r.GetBool("probes.session.gateway_port_any_peer", &s.gateway_port_any_peer));
  DP_RETURN_IF_ERROR(r.GetString("probes.session.rtt_method", &s.rtt_method));
  if (s.rtt_method != "auto" && s.rtt_method != "passive" && s.rtt_method != "connect") {
    return InvalidArgument(source + ": key 'probes.session.rtt_method': '" + s.rtt_method +
                           "' is not one of auto, passive, connect");
  }
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.rtt_probe_interval_s", 1, 3600, &s.rtt_probe_interval_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.stall_threshold_ms", 500, 60000, &s.stall_threshold_ms));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.sample_interval_s", 1, 600, &s.sample_interval_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.discovery_interval_s", 5, 3600, &s.discovery_interval_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.reconnect_window_s", 1, 600, &s.reconnect_window_s));
  std::vector<std::string> targets;
  DP_RETURN_IF_ERROR(r.GetStringList("probes.session.probe_targets", &targets));
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto hp = ParseHostPort(
        targets[i], source + ": key 'probes.session.probe_targets' element " + std::to_string(i));
    if (!hp.ok()) return hp.status();
    s.probe_targets.push_back(*hp);
  }
  // At least a minute apart: gateways log every connect-and-reset.
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.probe_interval_s", 60, 86400, &s.probe_interval_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.session.probe_timeout_ms", 100, 30000, &s.probe_timeout_ms));

  PeripheralsConfig& p = c.peripherals;
  DP_RETURN_IF_ERROR(r.GetBool("probes.peripherals.enabled", &p.enabled));
  DP_RETURN_IF_ERROR(r.GetString("probes.peripherals.sysfs", &p.sysfs));
  DP_RETURN_IF_ERROR(r.GetString("probes.peripherals.proc", &p.proc));
  DP_RETURN_IF_ERROR(r.GetString("probes.peripherals.udev_data", &p.udev_data));
  DP_RETURN_IF_ERROR(r.GetBool("probes.peripherals.cups", &p.cups));
  DP_RETURN_IF_ERROR(r.GetString("probes.peripherals.cups_server", &p.cups_server));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.peripherals.cups_timeout_ms", 100, 30000, &p.cups_timeout_ms));
  DP_RETURN_IF_ERROR(r.GetBool("probes.peripherals.pcsc", &p.pcsc));
  DP_RETURN_IF_ERROR(r.GetStringList("probes.peripherals.redirectors", &p.redirectors));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.peripherals.reconnect_window_s", 1, 600, &p.reconnect_window_s));
  DP_RETURN_IF_ERROR(GetSeconds(r, "probes.peripherals.poll_every_s", 10, 3600, &p.poll_every_s));
  DP_RETURN_IF_ERROR(GetSeconds(r, "probes.peripherals.settle_s", 0, 3600, &p.settle_s));
  DP_RETURN_IF_ERROR(
      GetSeconds(r, "probes.peripherals.inventory_every_s", 60, 86400, &p.inventory_every_s));
  DP_RETURN_IF_ERROR(r.GetString("probes.peripherals.catalog", &p.catalog));

  StabilityConfig& st = c.stability;
  DP_RETURN_IF_ERROR(r.GetBool("probes.stability.enabled", &st.enabled));
  DP_RETURN_IF_ERROR(r.GetString("probes.stability.proc", &st.proc));
  DP_RETURN_IF_ERROR(r.GetBool("probes.stability.journal", &st.journal));
  DP_RETURN_IF_ERROR(r.GetString("probes.stability.journal_dir", &st.journal_dir));
  DP_RETURN_IF_ERROR(r.GetStringList("probes.stability.vdi_clients", &st.vdi_clients));

  DP_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return c;
}

Result<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseAgentConfig(ss.str(), path);
}

}  // namespace deskpulse::agent
