#include "collector/reports/peripherals.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "deskpulse/common/report_json.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;

namespace {

const char* StateName(v1::DeviceState s) {
  switch (s) {
    case v1::DEVICE_STATE_WORKING:
      return "working";
    case v1::DEVICE_STATE_NO_DRIVER:
      return "no_driver";
    case v1::DEVICE_STATE_BLOCKED_BY_POLICY:
      return "blocked_by_policy";
    case v1::DEVICE_STATE_REDIRECT_FAILED:
      return "redirect_failed";
    case v1::DEVICE_STATE_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

std::string ModelKey(const v1::PeripheralState& s) {
  if (s.vendor_id() != 0 || s.product_id() != 0) {
    return fmt::format("{:04x}:{:04x}", s.vendor_id(), s.product_id());
  }
  if (auto k = catalog::PrinterKeyFromIeee1284(s.ieee1284_id())) {
    return "printer:" + k->make + "/" + k->model;
  }
  return (s.bus() == v1::PERIPHERAL_BUS_PCSC ? "pcsc:" : "device:") + s.name();
}

// The same device observed the same way classifies the same: cache by that.
std::string ObservationKey(const v1::PeripheralState& s) {
  std::string k = fmt::format("{}:{}:{}:{}:{}", s.vendor_id(), s.product_id(), s.device_class(),
                              s.ieee1284_id(), s.redirected() ? 'r' : 'l');
  for (auto c : s.interface_classes()) k += fmt::format(":{}", c);
  for (const auto& d : s.drivers()) k += "|" + d;
  return k;
}

double Round1(double v) { return std::round(v * 10) / 10; }

// The window ends with today (UTC): [from, to).
std::int64_t WindowEnd(std::int64_t now_ms) { return FloorTo(now_ms, kDayMs) + kDayMs; }
std::int64_t WindowStart(std::int64_t now_ms, const scoring::Policy& policy) {
  return WindowEnd(now_ms) - policy.window_days * kDayMs;
}

nlohmann::json OrNull(const std::string& s) {
  return s.empty() ? nlohmann::json() : nlohmann::json(s);
}

}  // namespace

const char* FailureKindName(FailureKind k) {
  switch (k) {
    case FailureKind::kSupportedButFailing:
      return "supported_but_failing";
    case FailureKind::kPartial:
      return "partial";
    case FailureKind::kUnsupported:
      return "unsupported";
    case FailureKind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

FailureKind ModelCompatibility::kind() const {
  switch (classification.verdict) {
    case catalog::Verdict::kSupported:
      return FailureKind::kSupportedButFailing;
    case catalog::Verdict::kPartial:
      return FailureKind::kPartial;
    case catalog::Verdict::kUnsupported:
      return FailureKind::kUnsupported;
    case catalog::Verdict::kUnknown:
      return FailureKind::kUnknown;
  }
  return FailureKind::kUnknown;
}

const char* DeviceClassifier::ByName(By by) {
  switch (by) {
    case By::kAgent:
      return "agent";
    case By::kCollector:
      return "collector";
    case By::kNone:
      break;
  }
  return "";
}

Result<DeviceClassifier::Verdict> DeviceClassifier::Classify(const v1::PeripheralState& s) {
  Verdict v;
  if (s.has_catalog() && s.catalog().verdict() != v1::COMPATIBILITY_VERDICT_UNSPECIFIED) {
    v.classification = catalog::VerdictFromProto(s.catalog());
    v.by = By::kAgent;
  } else if (catalog_ != nullptr) {
    const std::string okey = ObservationKey(s);
    auto it = cache_.find(okey);
    if (it == cache_.end()) {
      DP_ASSIGN_OR_RETURN(auto got, catalog_->Classify(catalog::ObservationOf(s)));
      it = cache_.emplace(okey, std::move(got)).first;
    }
    v.classification = it->second;
    v.by = By::kCollector;
  } else {
    v.classification.detail = "no verdict from the endpoint and no catalog at the collector";
  }
  return v;
}

Result<std::vector<EndpointDevice>> AnalyseEndpointDevices(
    ReadStore& store, std::int64_t customer_id, std::int64_t endpoint_id,
    const scoring::Policy& policy, std::int64_t now_ms, catalog::Reader* catalog) {
  const std::int64_t from_ms = WindowStart(now_ms, policy);
  DP_ASSIGN_OR_RETURN(auto instances,
                      store.LoadEndpointPeripheralInstances(customer_id, endpoint_id, from_ms));
  DeviceClassifier classifier(catalog);
  std::vector<EndpointDevice> out;
  out.reserve(instances.size());
  for (PeripheralInstance& inst : instances) {
    EndpointDevice d;
    DP_ASSIGN_OR_RETURN(d.verdict, classifier.Classify(inst.last));
    d.failed = inst.last_fail_ms >= from_ms;
    d.instance = std::move(inst);
    out.push_back(std::move(d));
  }
  std::stable_sort(out.begin(), out.end(), [](const EndpointDevice& a, const EndpointDevice& b) {
    if (a.failed != b.failed) return a.failed;
    return a.instance.last_seen_ms > b.instance.last_seen_ms;
  });
  return out;
}

nlohmann::json EndpointDevicesToJson(const std::vector<EndpointDevice>& devices) {
  nlohmann::json out = nlohmann::json::array();
  for (const EndpointDevice& d : devices) {
    const PeripheralInstance& i = d.instance;
    const catalog::Classification& c = d.verdict.classification;
    nlohmann::json x = PeripheralStateToJson(i.last);
    x["device_key"] = i.device_key;
    x["model"] = ModelKey(i.last);
    x["failed_in_window"] = d.failed;
    x["first_seen_unix_ms"] = i.first_seen_ms;
    x["last_seen_unix_ms"] = i.last_seen_ms;
    x["last_fail_unix_ms"] = i.last_fail_ms > 0 ? nlohmann::json(i.last_fail_ms) : nlohmann::json();
    x["observations"] = i.observations;
    x["fail_observations"] = i.fail_observations;
    x["reconnects_since_first_seen"] = i.reconnects;
    x["verdict"] = catalog::VerdictName(c.verdict);
    x["source"] = OrNull(c.source);
    x["classified_by"] = OrNull(DeviceClassifier::ByName(d.verdict.by));
    x["driver"] = c.driver;
    x["detail"] = c.detail;
    out.push_back(std::move(x));
  }
  return out;
}

Result<std::optional<catalog::Reader>> OpenCollectorCatalog(const std::string& path) {
  const bool given = !path.empty();
  const std::string at = given ? path : catalog::kDefaultPath;
  std::error_code ec;
  if (!given && !std::filesystem::exists(at, ec)) {
    spdlog::warn(
        "no catalog at {}: devices without an endpoint's verdict stay unclassified "
        "(build one with: deskpulse-catalog build --out {})",
        at, at);
    return std::optional<catalog::Reader>();
  }
  DP_ASSIGN_OR_RETURN(auto opened, catalog::Reader::Open(at, LinkedSqliteApi()));
  return std::optional<catalog::Reader>(std::move(opened));
}

Result<PeripheralsReport> AnalysePeripherals(ReadStore& store, const std::string& customer,
                                             const scoring::Policy& policy, std::int64_t now_ms,
                                             catalog::Reader* catalog) {
  DP_ASSIGN_OR_RETURN(const Customer c, FindCustomerNamed(store, customer));
  return AnalyseCustomerPeripherals(store, c, policy, now_ms, catalog);
}

Result<PeripheralsReport> AnalyseCustomerPeripherals(ReadStore& store, const Customer& customer,
                                                     const scoring::Policy& policy,
                                                     std::int64_t now_ms, catalog::Reader* catalog,
                                                     const scoring::WindowRollup* window) {
  DP_RETURN_IF_ERROR(policy.Validate());
  PeripheralsReport r;
  r.customer = customer;
  r.to_ms = WindowEnd(now_ms);
  r.from_ms = WindowStart(now_ms, policy);
  if (catalog != nullptr) r.catalog_version = catalog->version();

  DP_ASSIGN_OR_RETURN(auto instances, store.LoadPeripheralInstances(r.customer.id, r.from_ms));
  DeviceClassifier classifier(catalog);
  struct Acc {
    ModelCompatibility m;
    std::set<std::int64_t> endpoints, endpoints_failed;
    std::map<std::string, std::int64_t> reasons;
    std::int64_t verdict_seen_ms = -1;
    bool verdict_from_failure = false;
    std::set<std::string> classified_by;
    std::string observed_name;
  };
  std::map<std::string, Acc> models;
  std::set<std::int64_t> endpoints;
  std::map<FailureKind, std::set<std::int64_t>> split_endpoints;
  std::map<FailureKind, std::set<std::string>> split_models;
  for (const PeripheralInstance& inst : instances) {
    const v1::PeripheralState& s = inst.last;
    const bool failed = inst.last_fail_ms >= r.from_ms;
    Acc& a = models[ModelKey(s)];
    ModelCompatibility& m = a.m;
    if (m.key.empty()) {
      m.key = ModelKey(s);
      if (s.vendor_id() != 0 || s.product_id() != 0) {
        m.usb_id = fmt::format("{:04x}:{:04x}", s.vendor_id(), s.product_id());
      }
    }
    if (m.ieee1284.empty() && s.has_ieee1284_id()) m.ieee1284 = s.ieee1284_id();
    if (a.observed_name.empty()) a.observed_name = s.name();

    // The verdict: the agent's when it attached one, else this collector's catalog.
    DP_ASSIGN_OR_RETURN(auto v, classifier.Classify(s));
    const catalog::Classification& c = v.classification;
    switch (v.by) {
      case DeviceClassifier::By::kAgent:
        ++r.classified_by_agent;
        break;
      case DeviceClassifier::By::kCollector:
        ++r.classified_by_collector;
        break;
      case DeviceClassifier::By::kNone:
        ++r.unclassified;
        break;
    }
    // Keep the newest verdict, preferring one from a failing instance (its
    // detail says what is wrong there).
    if (a.verdict_seen_ms < 0 || (failed && !a.verdict_from_failure) ||
        (failed == a.verdict_from_failure && inst.last_seen_ms > a.verdict_seen_ms)) {
      m.classification = c;
      a.verdict_seen_ms = inst.last_seen_ms;
      a.verdict_from_failure = failed;
    }
    if (v.by != DeviceClassifier::By::kNone) {
      a.classified_by.insert(DeviceClassifier::ByName(v.by));
    }

    ++m.instances;
    m.reconnects += inst.reconnects;
    a.endpoints.insert(inst.endpoint_id);
    endpoints.insert(inst.endpoint_id);
    if (failed) {
      ++m.failed;
      a.endpoints_failed.insert(inst.endpoint_id);
      const bool now_working = s.state() == v1::DEVICE_STATE_WORKING;
      ++m.failure_states[now_working ? "recovered" : StateName(s.state())];
      if (!now_working && !s.reason().empty()) ++a.reasons[s.reason()];
    } else {
      ++m.working;
    }
  }

  for (auto& [key, a] : models) {
    ModelCompatibility& m = a.m;
    m.endpoints = static_cast<std::int64_t>(a.endpoints.size());
    m.endpoints_failed = static_cast<std::int64_t>(a.endpoints_failed.size());
    m.name = !m.classification.model.empty() ? m.classification.model : a.observed_name;
    for (const auto& by : a.classified_by) {
      m.classified_by += (m.classified_by.empty() ? "" : "+") + by;
    }
    std::int64_t best = 0;
    for (const auto& [reason, n] : a.reasons) {
      if (n > best) {
        best = n;
        m.example_reason = reason;
      }
    }
    r.working += m.working;
    r.failed += m.failed;
    if (m.failed > 0) {
      FailureSplit& sp = r.split[m.kind()];
      sp.instances += m.failed;
      sp.models += 1;
      split_endpoints[m.kind()].insert(a.endpoints_failed.begin(), a.endpoints_failed.end());
      r.failing.push_back(std::move(m));
    } else {
      r.working_models.push_back(std::move(m));
    }
  }
  for (auto& [kind, sp] : r.split) {
    sp.endpoints = static_cast<std::int64_t>(split_endpoints[kind].size());
  }
  std::sort(r.failing.begin(), r.failing.end(),
            [](const ModelCompatibility& a, const ModelCompatibility& b) {
              return std::tie(b.endpoints_failed, b.failed, b.reconnects, a.key) <
                     std::tie(a.endpoints_failed, a.failed, a.reconnects, b.key);
            });
  std::sort(r.working_models.begin(), r.working_models.end(),
            [](const ModelCompatibility& a, const ModelCompatibility& b) {
              return std::tie(b.instances, a.key) < std::tie(a.instances, b.key);
            });
  r.endpoints = static_cast<std::int64_t>(endpoints.size());

  // The component exactly as `scores` computes it: the same counts through the
  // same scoring function, with the window's reconnects from the rollups.
  if (window != nullptr) {
    r.reconnects = window->peripheral_reconnects;
  } else {
    DP_ASSIGN_OR_RETURN(scoring::WindowRollup w,
                        store.LoadWindow(r.customer.id, r.from_ms, r.to_ms));
    r.reconnects = w.peripheral_reconnects;
  }
  scoring::WindowRollup mine;
  mine.peripherals_working = r.working;
  mine.peripherals_failed = r.failed;
  mine.peripheral_reconnects = r.reconnects;
  r.component = scoring::ScoreWindow(mine, policy).peripherals;
  return r;
}

nlohmann::json PeripheralsToJson(const PeripheralsReport& r) {
  nlohmann::json j;
  j["customer"] = r.customer.name;
  j["window"] = {{"from_unix_ms", r.from_ms},
                 {"to_unix_ms", r.to_ms},
                 {"days", (r.to_ms - r.from_ms) / kDayMs}};
  j["compatibility"] = {
      {"score", r.component.score ? nlohmann::json(Round1(*r.component.score)) : nlohmann::json()},
      {"band", r.component.score
                   ? nlohmann::json(scoring::BandName(scoring::BandOf(*r.component.score)))
                   : nlohmann::json()},
      {"detail", r.component.detail},
      {"device_instances", {{"working", r.working}, {"failed", r.failed}}},
      {"reconnects", r.reconnects},
      {"endpoints", r.endpoints}};
  nlohmann::json split = nlohmann::json::object();
  for (FailureKind k : {FailureKind::kSupportedButFailing, FailureKind::kPartial,
                        FailureKind::kUnsupported, FailureKind::kUnknown}) {
    auto it = r.split.find(k);
    const FailureSplit sp = it == r.split.end() ? FailureSplit{} : it->second;
    split[FailureKindName(k)] = {
        {"instances", sp.instances}, {"endpoints", sp.endpoints}, {"models", sp.models}};
  }
  j["failures"] = std::move(split);
  j["catalog"] = {
      {"version", r.catalog_version.empty() ? nlohmann::json() : nlohmann::json(r.catalog_version)},
      {"classified_by_agent", r.classified_by_agent},
      {"classified_by_collector", r.classified_by_collector},
      {"unclassified", r.unclassified}};
  auto model_json = [](const ModelCompatibility& m, int rank) {
    nlohmann::json x;
    if (rank > 0) x["rank"] = rank;
    x["model"] = m.key;
    x["name"] = m.name;
    x["usb_id"] = m.usb_id.empty() ? nlohmann::json() : nlohmann::json(m.usb_id);
    x["ieee1284"] = m.ieee1284.empty() ? nlohmann::json() : nlohmann::json(m.ieee1284);
    x["verdict"] = catalog::VerdictName(m.classification.verdict);
    x["source"] = m.classification.source.empty() ? nlohmann::json()
                                                  : nlohmann::json(m.classification.source);
    x["classified_by"] =
        m.classified_by.empty() ? nlohmann::json() : nlohmann::json(m.classified_by);
    x["driver"] = m.classification.driver;
    x["detail"] = m.classification.detail;
    x["instances"] = m.instances;
    x["working"] = m.working;
    x["failed"] = m.failed;
    x["endpoints"] = m.endpoints;
    x["endpoints_failed"] = m.endpoints_failed;
    x["reconnects_since_first_seen"] = m.reconnects;
    if (m.failed > 0) {
      x["failure"] = FailureKindName(m.kind());
      x["failure_states"] = m.failure_states;
      x["example_reason"] = m.example_reason;
    }
    return x;
  };
  j["failing_models"] = nlohmann::json::array();
  int rank = 0;
  for (const auto& m : r.failing) j["failing_models"].push_back(model_json(m, ++rank));
  j["working_models"] = nlohmann::json::array();
  for (const auto& m : r.working_models) j["working_models"].push_back(model_json(m, 0));
  return j;
}

std::string FormatPeripherals(const PeripheralsReport& r) {
  std::string s;
  const auto score = r.component.score;
  s += fmt::format(
      "Peripherals of {} over {}: compatibility {} — {}\n", r.customer.name,
      Counted((r.to_ms - r.from_ms) / kDayMs, "day"),
      score ? fmt::format("{:.1f} ({})", *score, scoring::BandName(scoring::BandOf(*score)))
            : std::string("n/a"),
      r.component.detail.empty() ? "no devices seen" : r.component.detail);
  if (r.failed > 0) {
    s += fmt::format("{}:\n", Counted(r.failed, "failing device instance"));
    const std::pair<FailureKind, const char*> kRows[] = {
        {FailureKind::kSupportedButFailing,
         "catalog says supported, fails here (configuration or redirection: fixable)"},
        {FailureKind::kPartial, "catalog rates support partial"},
        {FailureKind::kUnsupported, "unsupported (needs a driver)"},
        {FailureKind::kUnknown, "not in the catalog"}};
    for (const auto& [kind, label] : kRows) {
      auto it = r.split.find(kind);
      if (it == r.split.end()) continue;
      const auto& k = it->second;
      s += fmt::format("  {:>5} on {:>5} {:<10}{:>3} {:<7} {}\n", k.instances, k.endpoints,
                       Noun(k.endpoints, "endpoint,", "endpoints,"), k.models,
                       Noun(k.models, "model", "models"), label);
    }
  }
  s += fmt::format(
      "Verdicts: {} by the endpoints' catalogs, {} by this collector's{}{}\n",
      r.classified_by_agent, r.classified_by_collector,
      r.catalog_version.empty() ? " (no catalog here)" : " (catalog " + r.catalog_version + ")",
      r.unclassified > 0 ? fmt::format(", {} unclassified", r.unclassified) : "");
  if (r.failing.empty()) return s;
  s += fmt::format("\n{:>4}  {:<40} {:<9} {:<11} {:<8} {:>9} {:>9} {:>6}  {}\n", "RANK", "MODEL",
                   "ID", "VERDICT", "SOURCE", "ENDPOINTS", "INSTANCES", "RECONN", "FAILING AS");
  int rank = 0;
  for (const auto& m : r.failing) {
    std::string states;
    for (const auto& [state, n] : m.failure_states) {
      states += fmt::format("{}{} {}", states.empty() ? "" : ", ", state, n);
    }
    std::string name = m.name.empty() ? m.key : m.name;
    if (name.size() > 40) name = name.substr(0, 39) + "~";
    s += fmt::format("{:>4}  {:<40} {:<9} {:<11} {:<8} {:>4}/{:<4} {:>4}/{:<4} {:>6}  {}\n", ++rank,
                     name, m.usb_id.empty() ? "-" : m.usb_id,
                     catalog::VerdictName(m.classification.verdict),
                     m.classification.source.empty() ? "-" : m.classification.source,
                     m.endpoints_failed, m.endpoints, m.failed, m.instances, m.reconnects, states);
  }
  return s;
}

}  // namespace deskpulse::collector
