#include "collector/reports/scores.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>

#include "collector/reports/peripherals.h"
#include "deskpulse/common/text.h"
#include "deskpulse/v1/report.pb.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;

nlohmann::json ComponentToJson(const scoring::Component& c) {
  nlohmann::json j;
  j["score"] = c.score ? nlohmann::json(std::round(*c.score * 10) / 10) : nlohmann::json();
  j["band"] =
      c.score ? nlohmann::json(scoring::BandName(scoring::BandOf(*c.score))) : nlohmann::json();
  j["weight"] = c.weight;
  j["detail"] = c.detail;
  return j;
}

namespace {

double Round1(double v) { return std::round(v * 10) / 10; }

std::string Cell(const std::optional<double>& v) {
  return v ? fmt::format("{:.1f}", *v) : std::string("n/a");
}
}  // namespace

namespace {

// Scores one customer's window and names the model that pulls peripherals
// down most (docs/scoring.md "Drivers").
Result<CustomerScore> ScoreWindowOf(ReadStore& store, const Customer& c,
                                    const scoring::WindowRollup& w, const scoring::Policy& policy,
                                    std::int64_t now_ms) {
  CustomerScore cs{c, w, scoring::ScoreWindow(w, policy), {}};
  if (w.peripherals_failed == 0) return cs;
  DP_ASSIGN_OR_RETURN(auto pr, AnalyseCustomerPeripherals(store, c, policy, now_ms, nullptr, &w));
  if (pr.failing.empty()) return cs;
  const ModelCompatibility& m = pr.failing.front();
  std::string state;
  std::int64_t most = 0;
  for (const auto& [name, n] : m.failure_states) {
    if (n > most) {
      most = n;
      state = name;
    }
  }
  std::replace(state.begin(), state.end(), '_', ' ');
  cs.worst_peripheral = fmt::format("{}{}: {} on {} of {}", m.name.empty() ? m.key : m.name,
                                    m.usb_id.empty() ? "" : " (" + m.usb_id + ")", state,
                                    m.endpoints_failed, Counted(m.endpoints, "endpoint"));
  for (auto& d : cs.score.drivers) {
    if (d.starts_with("peripherals ")) d += "; worst: " + cs.worst_peripheral;
  }
  cs.score.peripherals.detail += "; worst: " + cs.worst_peripheral;
  return cs;
}

}  // namespace

Result<std::vector<CustomerScore>> ScoreAllCustomers(ReadStore& store,
                                                     const scoring::Policy& policy,
                                                     std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(policy.Validate());
  const std::int64_t to = FloorTo(now_ms, kDayMs) + kDayMs;
  const std::int64_t from = to - policy.window_days * kDayMs;
  DP_ASSIGN_OR_RETURN(auto customers, store.ListCustomers());
  DP_ASSIGN_OR_RETURN(auto windows, store.LoadWindows(from, to));
  std::vector<CustomerScore> out;
  out.reserve(customers.size());
  for (const auto& c : customers) {
    const auto found = windows.find(c.id);
    const scoring::WindowRollup w =
        found == windows.end() ? scoring::WindowRollup{} : found->second;
    DP_ASSIGN_OR_RETURN(CustomerScore cs, ScoreWindowOf(store, c, w, policy, now_ms));
    out.push_back(std::move(cs));
  }
  std::stable_sort(out.begin(), out.end(), [](const CustomerScore& a, const CustomerScore& b) {
    return a.score.tps.value_or(-1) > b.score.tps.value_or(-1);
  });
  return out;
}

Result<CustomerScore> ScoreCustomer(ReadStore& store, const Customer& customer,
                                    const scoring::Policy& policy, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(policy.Validate());
  const std::int64_t to = FloorTo(now_ms, kDayMs) + kDayMs;
  const std::int64_t from = to - policy.window_days * kDayMs;
  DP_ASSIGN_OR_RETURN(auto w, store.LoadWindow(customer.id, from, to));
  return ScoreWindowOf(store, customer, w, policy, now_ms);
}

std::string ProtocolName(int protocol) {
  std::string name = v1::DisplayProtocol_Name(static_cast<v1::DisplayProtocol>(protocol));
  constexpr std::string_view kPrefix = "DISPLAY_PROTOCOL_";
  if (name.starts_with(kPrefix)) name.erase(0, kPrefix.size());
  return name.empty() ? "protocol " + std::to_string(protocol) : name;
}

void MergeWindow(scoring::WindowRollup& into, const scoring::WindowRollup& w) {
  into.reports += w.reports;
  into.boot_ms.Merge(w.boot_ms);
  into.latency.Merge(w.latency);
  into.latency_windows += w.latency_windows;
  into.session_s += w.session_s;
  into.downtime_ms += w.downtime_ms;
  into.disconnects += w.disconnects;
  into.reconnects += w.reconnects;
  into.crashes += w.crashes;
  into.stalls += w.stalls;
  into.peripheral_reconnects += w.peripheral_reconnects;
  for (const auto& [protocol, hist] : w.latency_by_protocol) {
    into.latency_by_protocol[protocol].Merge(hist);
  }
  for (std::size_t i = 0; i < into.boot_phases.size(); ++i) {
    into.boot_phases[i].boots += w.boot_phases[i].boots;
    into.boot_phases[i].ms += w.boot_phases[i].ms;
  }
}

Status AttachLossSources(ReadStore& store, CustomerScore& cs, const scoring::Policy& policy,
                         std::int64_t now_ms) {
  const scoring::TechScore& t = cs.score;
  auto losing = [](const scoring::Component& c) { return c.score && *c.score < 100; };
  if (!losing(t.boot) && !losing(t.latency) && !losing(t.stability)) return Status::Ok();
  const std::int64_t to = FloorTo(now_ms, kDayMs) + kDayMs;
  const std::int64_t from = to - policy.window_days * kDayMs;
  DP_ASSIGN_OR_RETURN(auto endpoints, store.ListEndpoints(cs.customer.id));
  DP_ASSIGN_OR_RETURN(auto windows, store.LoadEndpointWindows(cs.customer.id, from, to));
  std::map<std::pair<std::string, std::string>, scoring::EndpointGroup> groups;
  auto group = [&](const std::string& dim, const std::string& name) -> scoring::EndpointGroup& {
    auto& g = groups[{dim, name}];
    g.dimension = dim;
    g.name = name;
    return g;
  };
  for (const EndpointInfo& e : endpoints) {
    const auto w = windows.find(e.id);
    if (w == windows.end()) continue;
    for (const auto& [dim, name] : {std::pair<std::string, std::string>{"site", e.site},
                                    std::pair<std::string, std::string>{"pool", e.pool}}) {
      scoring::EndpointGroup& g = group(dim, name.empty() ? "(none)" : name);
      g.endpoints += 1;
      MergeWindow(g.window, w->second);
    }
    for (const auto& [protocol, hist] : w->second.latency_by_protocol) {
      scoring::EndpointGroup& g = group("protocol", ProtocolName(protocol));
      g.endpoints += 1;
      g.window.latency.Merge(hist);
    }
  }
  std::vector<scoring::EndpointGroup> list;
  list.reserve(groups.size());
  for (auto& [key, g] : groups) list.push_back(std::move(g));
  scoring::AttributeLosses(cs.score, list, policy);
  return Status::Ok();
}

std::string FormatScoreTable(const std::vector<CustomerScore>& scores) {
  std::string s = fmt::format("{:<24} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>6} {:<5} {:>8}\n",
                              "CUSTOMER", "ENDPOINTS", "REPORTS", "BOOT", "LATENCY", "PERIPH",
                              "STABIL", "TPS", "BAND", "COVERAGE");
  for (const auto& c : scores) {
    const auto& t = c.score;
    s += fmt::format("{:<24} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>6} {:<5} {:>7.0f}%\n",
                     c.customer.name.substr(0, 24), c.window.endpoints, c.window.reports,
                     Cell(t.boot.score), Cell(t.latency.score), Cell(t.peripherals.score),
                     Cell(t.stability.score), Cell(t.tps),
                     t.band ? scoring::BandName(*t.band) : "n/a", t.coverage * 100);
  }
  return s;
}

nlohmann::json ScoresToJson(const std::vector<CustomerScore>& scores, const scoring::Policy& policy,
                            std::int64_t from_ms, std::int64_t to_ms) {
  nlohmann::json out;
  out["score_version"] = "tps-v1";
  out["window"] = {{"from_unix_ms", from_ms}, {"to_unix_ms", to_ms}, {"days", policy.window_days}};
  out["customers"] = nlohmann::json::array();
  for (const auto& c : scores) {
    const auto& t = c.score;
    nlohmann::json j;
    j["customer"] = c.customer.name;
    j["endpoints"] = c.window.endpoints;
    j["reports"] = c.window.reports;
    j["components"] = {{"boot", ComponentToJson(t.boot)},
                       {"latency", ComponentToJson(t.latency)},
                       {"peripherals", ComponentToJson(t.peripherals)},
                       {"stability", ComponentToJson(t.stability)}};
    const auto& w = c.window;
    if (!w.boot_ms.empty()) {
      j["components"]["boot"]["boots"] = w.boot_ms.TotalWeight();
      j["components"]["boot"]["login_ready_s"] = {{"p50", Round1(w.boot_ms.Quantile(0.50) / 1000)},
                                                  {"p95", Round1(w.boot_ms.Quantile(0.95) / 1000)},
                                                  {"p99", Round1(w.boot_ms.Quantile(0.99) / 1000)}};
    }
    if (!w.latency.empty()) {
      j["components"]["latency"]["windows"] = w.latency_windows;
      j["components"]["latency"]["window_rtt_p95_ms"] = {
          {"p50", Round1(scoring::LatencyRttQuantileMs(w.latency, 0.50))},
          {"p95", Round1(scoring::LatencyRttQuantileMs(w.latency, 0.95))},
          {"p99", Round1(scoring::LatencyRttQuantileMs(w.latency, 0.99))}};
    }
    if (w.peripherals_working + w.peripherals_failed > 0) {
      j["components"]["peripherals"]["device_instances"] = {
          {"working", w.peripherals_working},
          {"failed", w.peripherals_failed},
          {"reconnects", w.peripheral_reconnects}};
      if (!c.worst_peripheral.empty()) {
        j["components"]["peripherals"]["worst_model"] = c.worst_peripheral;
      }
    }
    if (w.session_s > 0) {
      j["components"]["stability"]["session_hours"] = Round1(w.session_s / 3600);
      j["components"]["stability"]["unplanned_downtime_s"] = Round1(w.downtime_ms / 1000);
      j["components"]["stability"]["disconnects"] = w.disconnects;
      j["components"]["stability"]["reconnects"] = w.reconnects;
      j["components"]["stability"]["crashes"] = w.crashes;
      j["components"]["stability"]["stalls"] = w.stalls;
    }
    j["tps"] = t.tps ? nlohmann::json(std::round(*t.tps * 10) / 10) : nlohmann::json();
    j["band"] = t.band ? nlohmann::json(scoring::BandName(*t.band)) : nlohmann::json();
    j["coverage"] = std::round(t.coverage * 1000) / 1000;
    j["drivers"] = t.drivers;
    out["customers"].push_back(std::move(j));
  }
  return out;
}

}  // namespace deskpulse::collector
