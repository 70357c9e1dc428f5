#include "deskpulse/common/report_json.h"

namespace deskpulse {
namespace {

using nlohmann::json;

#define DP_OPT(msg, obj, field) \
  if ((msg).has_##field()) (obj)[#field] = (msg).field()

json Boot(const v1::BootReport& b) {
  json j{{"boot_id", b.boot_id()},
         {"source", v1::BootSource_Name(b.source())},
         {"booted_at_unix_ms", b.booted_at_unix_ms()}};
  DP_OPT(b, j, firmware_ms);
  DP_OPT(b, j, loader_ms);
  DP_OPT(b, j, kernel_ms);
  DP_OPT(b, j, initrd_ms);
  DP_OPT(b, j, userspace_ms);
  DP_OPT(b, j, login_ready_ms);
  DP_OPT(b, j, desktop_ready_ms);
  DP_OPT(b, j, total_ms);
  return j;
}

json Session(const v1::SessionWindow& w) {
  json j{{"protocol", v1::DisplayProtocol_Name(w.protocol())},
         {"peer", w.peer()},
         {"window_start_unix_ms", w.window_start_unix_ms()},
         {"window_s", w.window_s()},
         {"source", v1::LatencySource_Name(w.source())}};
  DP_OPT(w, j, rtt_p50_us);
  DP_OPT(w, j, rtt_p95_us);
  DP_OPT(w, j, rtt_max_us);
  DP_OPT(w, j, jitter_us);
  DP_OPT(w, j, retransmit_ppm);
  DP_OPT(w, j, stalled_ms);
  j["rtt_samples"] = w.rtt_samples();
  return j;
}

json Peripheral(const v1::PeripheralState& p) {
  char id[16];
  std::snprintf(id, sizeof id, "%04x:%04x", p.vendor_id(), p.product_id());
  json j{{"bus", v1::PeripheralBus_Name(p.bus())},
         {"id", id},
         {"device_class", p.device_class()},
         {"interface_classes", json(std::vector<std::uint32_t>(p.interface_classes().begin(),
                                                               p.interface_classes().end()))},
         {"serial_hash", p.serial_hash()},
         {"name", p.name()},
         {"drivers", json(std::vector<std::string>(p.drivers().begin(), p.drivers().end()))},
         {"redirected", p.redirected()},
         {"state", v1::DeviceState_Name(p.state())},
         {"reason", p.reason()}};
  DP_OPT(p, j, ieee1284_id);
  return j;
}

json PeripheralEvent(const v1::PeripheralEvent& e) {
  char id[16];
  std::snprintf(id, sizeof id, "%04x:%04x", e.vendor_id(), e.product_id());
  return {{"kind", v1::PeripheralEventKind_Name(e.kind())},
          {"id", id},
          {"serial_hash", e.serial_hash()},
          {"at_unix_ms", e.at_unix_ms()},
          {"driver", e.driver()}};
}

json Stability(const v1::StabilityReport& s) {
  json j{
      {"session_s", s.session_s()}, {"session_events", json::array()}, {"crashes", json::array()}};
  DP_OPT(s, j, uptime_s);
  for (const auto& e : s.session_events()) {
    json x{{"kind", v1::SessionEventKind_Name(e.kind())},
           {"at_unix_ms", e.at_unix_ms()},
           {"reason", e.reason()},
           {"planned", e.planned()}};
    DP_OPT(e, x, downtime_ms);
    j["session_events"].push_back(std::move(x));
  }
  for (const auto& c : s.crashes()) {
    json x{{"component", v1::CrashComponent_Name(c.component())},
           {"at_unix_ms", c.at_unix_ms()},
           {"reason", c.reason()}};
    DP_OPT(c, x, downtime_ms);
    j["crashes"].push_back(std::move(x));
  }
  if (s.stalls_size() > 0) j["stalls"] = json::array();
  for (const auto& st : s.stalls()) {
    json x{{"protocol", v1::DisplayProtocol_Name(st.protocol())},
           {"peer", st.peer()},
           {"start_unix_ms", st.start_unix_ms()},
           {"duration_ms", st.duration_ms()}};
    DP_OPT(st, x, frozen_ms);
    j["stalls"].push_back(std::move(x));
  }
  return j;
}

json Health(const v1::AgentHealth& h) {
  json j{{"spool_depth_reports", h.spool_depth_reports()},
         {"spool_bytes", h.spool_bytes()},
         {"dropped_reports", h.dropped_reports()},
         {"corrupt_records", h.corrupt_records()},
         {"restarts", h.restarts()}};
  DP_OPT(h, j, rss_bytes);
  DP_OPT(h, j, cpu_us);
  return j;
}

#undef DP_OPT

}  // namespace

json PeripheralStateToJson(const v1::PeripheralState& state) { return Peripheral(state); }

json ReportToJson(const v1::Report& r) {
  json j{{"seq", r.seq()}, {"observed_at_unix_ms", r.observed_at_unix_ms()}};
  if (r.has_boot()) j["boot"] = Boot(r.boot());
  if (r.vm_boots_size() > 0) {
    j["vm_boots"] = json::array();
    for (const auto& v : r.vm_boots()) {
      json x{{"vm_name", v.vm_name()},
             {"vm_uuid", v.vm_uuid()},
             {"powered_on_at_unix_ms", v.powered_on_at_unix_ms()}};
      if (v.has_power_on_to_ready_ms()) x["power_on_to_ready_ms"] = v.power_on_to_ready_ms();
      j["vm_boots"].push_back(std::move(x));
    }
  }
  j["sessions"] = json::array();
  for (const auto& s : r.sessions()) j["sessions"].push_back(Session(s));
  j["peripherals"] = json::array();
  for (const auto& p : r.peripherals()) j["peripherals"].push_back(Peripheral(p));
  j["peripheral_events"] = json::array();
  for (const auto& e : r.peripheral_events()) j["peripheral_events"].push_back(PeripheralEvent(e));
  if (r.has_stability()) j["stability"] = Stability(r.stability());
  if (r.has_agent_health()) j["agent_health"] = Health(r.agent_health());
  j["unavailable"] = json::array();
  for (const auto& u : r.unavailable()) {
    j["unavailable"].push_back({{"measurement", u.measurement()}, {"reason", u.reason()}});
  }
  return j;
}

}  // namespace deskpulse
