#include "collector/api/routes.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "collector/api/book.h"
#include "collector/reports/peripherals.h"
#include "collector/reports/scores.h"
#include "collector/signals/parse.h"
#include "deskpulse/common/report_json.h"

namespace deskpulse::collector::api {
namespace {

using nlohmann::json;

constexpr std::int64_t kMaxDays = 400;

Response Ok(json body) {
  Response r;
  r.body = std::move(body);
  return r;
}

json Num(const std::optional<double>& v, double scale = 10) {
  return v ? json(std::round(*v * scale) / scale) : json();
}

/// A query parameter as an integer in [lo, hi], or `fallback` when absent.
Result<std::int64_t> IntParam(const std::map<std::string, std::string>& m, const std::string& name,
                              std::int64_t lo, std::int64_t hi, std::int64_t fallback) {
  const auto it = m.find(name);
  if (it == m.end()) return fallback;
  std::int64_t v = 0;
  const auto [end, ec] =
      std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || end != it->second.data() + it->second.size() || v < lo || v > hi) {
    return InvalidArgument(fmt::format("{} must be an integer from {} to {}", name, lo, hi));
  }
  return v;
}

/// Refuses query parameters a route does not know, naming the first.
std::optional<Response> OnlyParams(const Request& r,
                                   std::initializer_list<std::string_view> known) {
  for (const auto& [k, v] : r.query) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      return Error(400, fmt::format("unknown query parameter '{}'", k.substr(0, 64)),
                   k.substr(0, 64));
    }
  }
  return std::nullopt;
}

Response FromIntParam(const Status& s, const std::string& name) { return ErrorFrom(s, name); }

/// The customer of `/customers/:customer`, checked to exist.
Result<Customer> PathCustomer(Context& ctx, const Request& r) {
  const std::string& text = r.params.at("customer");
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id <= 0) {
    return NotFound(fmt::format("no customer '{}': customers are named by id", text.substr(0, 64)));
  }
  DP_ASSIGN_OR_RETURN(auto customers, ctx.store.ListCustomers());
  for (Customer& c : customers) {
    if (c.id == id) return std::move(c);
  }
  return NotFound(fmt::format("no customer {}", id));
}

Result<std::int64_t> PathEndpoint(const Request& r) {
  const std::string& text = r.params.at("endpoint");
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id <= 0) {
    return NotFound(fmt::format("no endpoint '{}': endpoints are named by id", text.substr(0, 64)));
  }
  return id;
}

std::pair<std::int64_t, std::int64_t> Window(std::int64_t now_ms, std::int64_t days) {
  const std::int64_t to = FloorTo(now_ms, kDayMs) + kDayMs;
  return {to - days * kDayMs, to};
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// ---- figures shared by endpoint views

/// A quantile over session time of the windows' RTT p95, in ms; null without
/// windows.
json RttMs(const SparseHistogram& latency, double q) {
  return latency.TotalWeight() > 0 ? Num(scoring::LatencyRttQuantileMs(latency, q)) : json();
}

json Weekly(const std::vector<std::optional<double>>& points) {
  json out = json::array();
  for (const auto& p : points) out.push_back(Num(p));
  return out;
}

json WindowFigures(const scoring::WindowRollup& w) {
  json j;
  j["reports"] = w.reports;
  j["boots"] = w.boot_ms.TotalWeight();
  j["boot_p50_s"] = w.boot_ms.TotalWeight() > 0 ? Num(w.boot_ms.Quantile(0.5) / 1000) : json();
  j["boot_p95_s"] = w.boot_ms.TotalWeight() > 0 ? Num(w.boot_ms.Quantile(0.95) / 1000) : json();
  j["session_hours"] = std::round(w.session_s / 360) / 10;
  j["latency_windows"] = w.latency_windows;
  j["rtt_p50_ms"] = RttMs(w.latency, 0.5);
  j["rtt_p95_ms"] = RttMs(w.latency, 0.95);
  j["disconnects"] = w.disconnects;
  j["reconnects"] = w.reconnects;
  j["crashes"] = w.crashes;
  j["stalls"] = w.stalls;
  j["downtime_s"] = std::round(w.downtime_ms / 100) / 10;
  j["peripheral_reconnects"] = w.peripheral_reconnects;
  return j;
}

json EndpointJson(const EndpointInfo& e) {
  return {{"id", e.id},
          {"agent_id", e.agent_id},
          {"hostname", e.hostname},
          {"site", e.site},
          {"pool", e.pool},
          {"role", e.role},
          {"os", e.os},
          {"kernel", e.kernel},
          {"agent_version", e.agent_version},
          {"first_seen_unix_ms", e.first_seen_ms},
          {"last_seen_unix_ms", e.last_seen_ms == 0 ? json() : json(e.last_seen_ms)}};
}

// ---- handlers

Response Index(Context&, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  json routes = json::array();
  for (const Route& route : Routes()) {
    routes.push_back({{"method", route.method},
                      {"path", route.path},
                      {"scope", ScopeName(route.scope)},
                      {"summary", route.summary}});
  }
  json token = {{"id", r.token.id}, {"role", ApiRoleName(r.token.role)}};
  if (r.token.customer) {
    token["customer"] = {{"id", r.token.customer->id}, {"name", r.token.customer->name}};
  }
  return Ok({{"api", "deskpulse/v1"}, {"token", token}, {"routes", routes}});
}

Response ListCustomers(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"risk", "tier", "q", "sort", "limit", "offset"})) return *bad;
  auto limit = IntParam(r.query, "limit", 1, 500, 100);
  if (!limit.ok()) return FromIntParam(limit.status(), "limit");
  auto offset = IntParam(r.query, "offset", 0, 1'000'000'000, 0);
  if (!offset.ok()) return FromIntParam(offset.status(), "offset");
  std::set<std::string> risks;
  if (auto it = r.query.find("risk"); it != r.query.end()) {
    std::string_view rest = it->second;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string one(rest.substr(0, comma));
      if (one != "high" && one != "medium" && one != "low" && one != "unknown") {
        return Error(400, "risk must be high, medium, low or unknown (comma-separated)", "risk");
      }
      risks.insert(one);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  std::string tier;
  if (auto it = r.query.find("tier"); it != r.query.end()) {
    tier = it->second;
    if (tier != "S" && tier != "A" && tier != "B" && tier != "C" && tier != "none") {
      return Error(400, "tier must be S, A, B, C or none", "tier");
    }
  }
  const std::string q = r.query.contains("q") ? Lower(r.query.at("q")) : std::string();
  const std::string sort = r.query.contains("sort") ? r.query.at("sort") : "risk";
  static const std::set<std::string> kSorts = {"risk", "lhi",   "-lhi",     "tps",      "-tps",
                                               "name", "-name", "coverage", "-coverage"};
  if (!kSorts.contains(sort)) {
    return Error(400, "sort must be risk, lhi, tps, name or coverage, with - for descending",
                 "sort");
  }

  const std::shared_ptr<const Book> book = ctx.book.current();
  if (!book) {
    Response busy = Error(503, "the first assessment of the customers is still running");
    busy.headers.emplace_back("Retry-After", "1");
    return busy;
  }
  std::vector<const CustomerHealth*> rows;
  for (const CustomerHealth& c : book->customers) {
    if (r.token.customer && r.token.customer->id != c.technical.customer.id) continue;
    if (!risks.empty() && !risks.contains(scoring::RiskName(c.health.risk))) continue;
    if (!tier.empty()) {
      const std::string t = c.contract ? std::string(1, c.contract->tier) : "none";
      if (t != tier) continue;
    }
    if (!q.empty() && Lower(c.technical.customer.name).find(q) == std::string::npos) continue;
    rows.push_back(&c);
  }
  const bool desc = sort.starts_with('-');
  const std::string key = desc ? sort.substr(1) : sort;
  auto value = [&key](const CustomerHealth& c) -> std::optional<double> {
    if (key == "lhi") return c.health.lhi;
    if (key == "tps") return c.technical.score.tps;
    return c.health.coverage;
  };
  if (key == "name") {
    std::stable_sort(rows.begin(), rows.end(), [desc](const auto* a, const auto* b) {
      return desc ? a->technical.customer.name > b->technical.customer.name
                  : a->technical.customer.name < b->technical.customer.name;
    });
  } else if (key != "risk") {
    // Customers without the figure last, either way.
    std::stable_sort(rows.begin(), rows.end(), [&](const auto* a, const auto* b) {
      const auto va = value(*a), vb = value(*b);
      if (va.has_value() != vb.has_value()) return va.has_value();
      if (!va) return false;
      return desc ? *va > *vb : *va < *vb;
    });
  }  // "risk": the book's own order

  json out;
  out["assessed_unix_ms"] = book->assessed_ms;
  out["total"] = rows.size();
  out["offset"] = *offset;
  out["limit"] = *limit;
  out["customers"] = json::array();
  const auto from = static_cast<std::size_t>(std::min<std::int64_t>(*offset, std::ssize(rows)));
  const auto to = std::min(rows.size(), from + static_cast<std::size_t>(*limit));
  for (std::size_t i = from; i < to; ++i) {
    const CustomerHealth& c = *rows[i];
    const scoring::LoyaltyHealth& h = c.health;
    out["customers"].push_back(
        {{"id", c.technical.customer.id},
         {"customer", c.technical.customer.name},
         {"tier", c.contract ? json(std::string(1, c.contract->tier)) : json()},
         {"endpoints", c.technical.window.endpoints},
         {"tps", Num(c.technical.score.tps)},
         {"lhi", Num(h.lhi)},
         {"coverage", std::round(h.coverage * 1000) / 1000},
         {"risk", scoring::RiskName(h.risk)},
         {"risk_reasons", h.risk_reasons},
         {"top_driver", h.drivers.empty() ? json() : json(h.drivers.front().text)},
         {"lhi_change_30d", Num(h.lhi_trend.change_30d)},
         {"tps_change_30d", Num(h.tps_trend.change_30d)},
         {"tps_weekly", Weekly(h.tps_trend.weekly)},
         {"lhi_weekly", Weekly(h.lhi_trend.weekly)}});
  }
  return Ok(std::move(out));
}

Result<CustomerHealth> AssessLive(Context& ctx, const Customer& c, std::int64_t now_ms) {
  HealthOptions o = ctx.health;
  o.record = false;  // the book records; a read never writes
  o.source_cache = &ctx.book.sources();
  DP_ASSIGN_OR_RETURN(CustomerScore score, ScoreCustomer(ctx.store, c, o.policy, now_ms));
  return AssessCustomer(ctx.store, std::move(score), o, now_ms);
}

Response CustomerDetail(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto h = AssessLive(ctx, *c, r.now_ms);
  if (!h.ok()) return ErrorFrom(h.status());
  json j = CustomerHealthToJson(*h);
  j["assessed_unix_ms"] = r.now_ms;
  j["tps_window_days"] = ctx.health.policy.window_days;
  j["score_version"] = "lhi-v1";
  return Ok(std::move(j));
}

Response CustomerDrivers(Context& ctx, const Request& r) {
  auto detail = CustomerDetail(ctx, r);
  if (detail.status != 200) return detail;
  json j;
  for (const char* k :
       {"id", "customer", "assessed_unix_ms", "sources_unix_ms", "drivers", "gaps"}) {
    j[k] = detail.body[k];
  }
  j["technical_drivers"] = detail.body["components"];
  return Ok(std::move(j));
}

Response CustomerHistory(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"days"})) return *bad;
  auto days = IntParam(r.query, "days", 1, kMaxDays, 91);
  if (!days.ok()) return FromIntParam(days.status(), "days");
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  const std::int64_t from = FloorTo(r.now_ms, kDayMs) - (*days - 1) * kDayMs;
  auto history = ctx.store.LoadHistory(c->id, from);
  if (!history.ok()) return ErrorFrom(history.status());
  json out = {{"id", c->id}, {"customer", c->name}, {"days", json::array()}};
  for (const HealthSnapshot& s : *history) {
    out["days"].push_back({{"day_unix_ms", s.day_ms},
                           {"tps", Num(s.tps)},
                           {"lhi", Num(s.lhi)},
                           {"coverage", std::round(s.coverage * 1000) / 1000},
                           {"risk", s.risk}});
  }
  return Ok(std::move(out));
}

Response CustomerEvents(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto events = ctx.store.LoadRiskEvents(c->id);
  if (!events.ok()) return ErrorFrom(events.status());
  json out = {{"id", c->id}, {"customer", c->name}, {"events", json::array()}};
  for (const RiskEvent& e : *events) {
    out["events"].push_back({{"at_unix_ms", e.at_ms},
                             {"kind", "risk_change"},
                             {"from", e.from_risk},
                             {"to", e.to_risk},
                             {"reasons", e.reasons}});
  }
  return Ok(std::move(out));
}

Response CustomerEndpoints(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"site", "pool", "sort", "limit", "offset"})) return *bad;
  const std::string sort = r.query.contains("sort") ? r.query.at("sort") : "id";
  static const std::set<std::string> kSorts = {
      "id",           "hostname",    "-hostname",  "boot_p95_s",  "-boot_p95_s",
      "rtt_p95_ms",   "-rtt_p95_ms", "downtime_s", "-downtime_s", "disconnects",
      "-disconnects", "crashes",     "-crashes"};
  if (!kSorts.contains(sort)) {
    return Error(400,
                 "sort must be id, hostname, boot_p95_s, rtt_p95_ms, downtime_s, disconnects or "
                 "crashes, with - for descending",
                 "sort");
  }
  auto limit = IntParam(r.query, "limit", 1, 1000, 100);
  if (!limit.ok()) return FromIntParam(limit.status(), "limit");
  auto offset = IntParam(r.query, "offset", 0, 1'000'000'000, 0);
  if (!offset.ok()) return FromIntParam(offset.status(), "offset");
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto endpoints = ctx.store.ListEndpoints(c->id);
  if (!endpoints.ok()) return ErrorFrom(endpoints.status());
  const auto [from, to] = Window(r.now_ms, ctx.health.policy.window_days);
  auto windows = ctx.store.LoadEndpointWindows(c->id, from, to);
  if (!windows.ok()) return ErrorFrom(windows.status());
  const auto site = r.query.find("site");
  const auto pool = r.query.find("pool");
  std::vector<const EndpointInfo*> rows;
  for (const EndpointInfo& e : *endpoints) {
    if (site != r.query.end() && e.site != site->second) continue;
    if (pool != r.query.end() && e.pool != pool->second) continue;
    rows.push_back(&e);
  }
  if (sort != "id") {
    const bool desc = sort.starts_with('-');
    const std::string key = desc ? sort.substr(1) : sort;
    if (key == "hostname") {
      std::stable_sort(rows.begin(), rows.end(), [desc](const auto* a, const auto* b) {
        return desc ? a->hostname > b->hostname : a->hostname < b->hostname;
      });
    } else {
      auto value = [&](const EndpointInfo& e) -> std::optional<double> {
        const auto w = windows->find(e.id);
        if (w == windows->end()) return std::nullopt;
        const scoring::WindowRollup& x = w->second;
        if (key == "boot_p95_s") {
          if (x.boot_ms.TotalWeight() == 0) return std::nullopt;
          return x.boot_ms.Quantile(0.95);
        }
        if (key == "rtt_p95_ms") {
          if (x.latency.TotalWeight() == 0) return std::nullopt;
          return scoring::LatencyRttQuantileMs(x.latency, 0.95);
        }
        if (key == "downtime_s") return x.downtime_ms;
        if (key == "disconnects") return static_cast<double>(x.disconnects);
        return static_cast<double>(x.crashes);
      };
      // Endpoints without the figure last, either way.
      std::stable_sort(rows.begin(), rows.end(), [&](const auto* a, const auto* b) {
        const auto va = value(*a), vb = value(*b);
        if (va.has_value() != vb.has_value()) return va.has_value();
        if (!va) return false;
        return desc ? *va > *vb : *va < *vb;
      });
    }
  }
  json out = {{"id", c->id},          {"customer", c->name},
              {"sort", sort},         {"window", {{"from_unix_ms", from}, {"to_unix_ms", to}}},
              {"total", rows.size()}, {"offset", *offset},
              {"limit", *limit},      {"endpoints", json::array()}};
  const auto first = static_cast<std::size_t>(std::min<std::int64_t>(*offset, std::ssize(rows)));
  const auto last = std::min(rows.size(), first + static_cast<std::size_t>(*limit));
  for (std::size_t i = first; i < last; ++i) {
    json e = EndpointJson(*rows[i]);
    const auto w = windows->find(rows[i]->id);
    e["window"] = w == windows->end() ? json() : WindowFigures(w->second);
    out["endpoints"].push_back(std::move(e));
  }
  return Ok(std::move(out));
}

}  // namespace

json BootHistogram(const SparseHistogram& boot_ms) {
  const double top_s = boot_ms.Quantile(0.99) / 1000;
  constexpr double kBins = 30;
  double bin_s = 1;
  for (double w : {1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0}) {
    bin_s = w;
    if (top_s / w <= kBins) break;
  }
  // Beyond half an hour (an agent may report any figure), whole minutes:
  // never more than about 30 bins, whatever the data.
  if (top_s / bin_s > kBins) bin_s = std::ceil(top_s / kBins / 60) * 60;
  const auto last = static_cast<std::size_t>(std::floor(top_s / bin_s)) + 1;  // the open bin
  std::vector<std::uint64_t> counts(last + 1, 0);
  for (const auto& [key, weight] : boot_ms.cells()) {
    const double s = buckets::Representative(key) / 1000;
    counts[std::min(last, static_cast<std::size_t>(std::max(0.0, std::floor(s / bin_s))))] +=
        weight;
  }
  json bins = json::array();
  for (std::size_t i = 0; i <= last; ++i) {
    bins.push_back({{"from_s", static_cast<double>(i) * bin_s},
                    {"to_s", i == last ? json() : json(static_cast<double>(i + 1) * bin_s)},
                    {"boots", counts[i]}});
  }
  return {{"bin_s", bin_s}, {"bins", std::move(bins)}};
}

namespace {

json DaySeries(std::int64_t from, std::int64_t to,
               const std::map<std::int64_t, SparseHistogram>& by_day) {
  json days = json::array();
  for (std::int64_t d = from; d < to; d += kDayMs) {
    const auto it = by_day.find(d);
    const SparseHistogram empty;
    const SparseHistogram& h = it == by_day.end() ? empty : it->second;
    days.push_back({{"day_unix_ms", d},
                    {"session_hours", std::round(static_cast<double>(h.TotalWeight()) / 360) / 10},
                    {"rtt_p50_ms", RttMs(h, 0.5)},
                    {"rtt_p95_ms", RttMs(h, 0.95)}});
  }
  return days;
}

Response CustomerTelemetry(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"days"})) return *bad;
  auto days = IntParam(r.query, "days", 1, 90, ctx.health.policy.window_days);
  if (!days.ok()) return FromIntParam(days.status(), "days");
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  const auto [from, to] = Window(r.now_ms, *days);
  auto endpoints = ctx.store.ListEndpoints(c->id);
  if (!endpoints.ok()) return ErrorFrom(endpoints.status());
  auto by_day = ctx.store.LoadCustomerDays(c->id, from, to);
  if (!by_day.ok()) return ErrorFrom(by_day.status());
  auto cells = ctx.store.LoadEndpointDayCells(c->id, Metric::kLatency, from, to);
  if (!cells.ok()) return ErrorFrom(cells.status());

  scoring::WindowRollup all;
  json day_rows = json::array();
  for (std::int64_t d = from; d < to; d += kDayMs) {
    const auto it = by_day->find(d);
    if (it == by_day->end()) {
      day_rows.push_back({{"day_unix_ms", d}, {"endpoints_reporting", 0}});
      continue;
    }
    MergeWindow(all, it->second);
    json row = WindowFigures(it->second);
    row["day_unix_ms"] = d;
    row["endpoints_reporting"] = it->second.endpoints;
    day_rows.push_back(std::move(row));
  }
  std::int64_t reporting = 0;
  for (const EndpointInfo& e : *endpoints) {
    if (e.last_seen_ms >= from && e.first_seen_ms < to) ++reporting;
  }

  json boot = {
      {"boots", all.boot_ms.TotalWeight()},
      {"p50_s", all.boot_ms.TotalWeight() > 0 ? Num(all.boot_ms.Quantile(0.5) / 1000) : json()},
      {"p95_s", all.boot_ms.TotalWeight() > 0 ? Num(all.boot_ms.Quantile(0.95) / 1000) : json()},
      {"histogram", all.boot_ms.TotalWeight() > 0 ? BootHistogram(all.boot_ms) : json()},
      {"phases", json::array()}};
  for (int p = 0; p < kBootPhaseCount; ++p) {
    const auto& t = all.boot_phases[static_cast<std::size_t>(p)];
    boot["phases"].push_back(
        {{"phase", BootPhaseName(static_cast<BootPhase>(p))},
         {"boots", t.boots},
         {"mean_s", t.boots > 0 ? Num(t.ms / static_cast<double>(t.boots) / 1000) : json()}});
  }

  // Session RTT by display protocol (the customer's rows) and by site (its
  // endpoints' rows, summed by the site their agents name).
  json by_protocol = json::array();
  std::map<int, std::map<std::int64_t, SparseHistogram>> protocol_days;
  for (const auto& [d, w] : *by_day) {
    for (const auto& [protocol, h] : w.latency_by_protocol) protocol_days[protocol][d] = h;
  }
  for (const auto& [protocol, series] : protocol_days) {
    by_protocol.push_back(
        {{"protocol", ProtocolName(protocol)}, {"days", DaySeries(from, to, series)}});
  }
  std::map<std::string, std::map<std::int64_t, SparseHistogram>> site_days;
  std::map<std::string, std::int64_t> site_endpoints;
  for (const EndpointInfo& e : *endpoints) {
    const auto it = cells->find(e.id);
    if (it == cells->end()) continue;
    const std::string site = e.site.empty() ? "(no site)" : e.site;
    site_endpoints[site] += 1;
    for (const auto& [d, cell] : it->second) site_days[site][d].Merge(cell.hist);
  }
  json by_site = json::array();
  for (const auto& [site, series] : site_days) {
    by_site.push_back({{"site", site},
                       {"endpoints", site_endpoints[site]},
                       {"days", DaySeries(from, to, series)}});
  }

  return Ok(
      {{"id", c->id},
       {"customer", c->name},
       {"window", {{"from_unix_ms", from}, {"to_unix_ms", to}, {"days", *days}}},
       {"endpoints_registered", endpoints->size()},
       {"endpoints_reporting", reporting},
       {"totals", WindowFigures(all)},
       {"days", std::move(day_rows)},
       {"boot", std::move(boot)},
       {"latency", {{"by_protocol", std::move(by_protocol)}, {"by_site", std::move(by_site)}}}});
}

Response EndpointDetail(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto id = PathEndpoint(r);
  if (!id.ok()) return ErrorFrom(id.status(), "endpoint");
  auto e = ctx.store.LoadEndpoint(c->id, *id);
  if (!e.ok()) return ErrorFrom(e.status());
  if (!*e) return Error(404, fmt::format("customer {} has no endpoint {}", c->id, *id), "endpoint");
  json out = EndpointJson(**e);
  out["customer"] = c->name;
  out["latest_report"] = (*e)->latest_report ? ReportToJson(*(*e)->latest_report) : json();
  auto devices =
      AnalyseEndpointDevices(ctx.store, c->id, *id, ctx.health.policy, r.now_ms, ctx.catalog);
  if (!devices.ok()) return ErrorFrom(devices.status());
  out["devices"] = EndpointDevicesToJson(*devices);
  out["devices_window_days"] = ctx.health.policy.window_days;
  return Ok(std::move(out));
}

Response EndpointHistory(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"days"})) return *bad;
  auto days = IntParam(r.query, "days", 1, kMaxDays, 30);
  if (!days.ok()) return FromIntParam(days.status(), "days");
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto id = PathEndpoint(r);
  if (!id.ok()) return ErrorFrom(id.status(), "endpoint");
  auto e = ctx.store.LoadEndpoint(c->id, *id);
  if (!e.ok()) return ErrorFrom(e.status());
  if (!*e) return Error(404, fmt::format("customer {} has no endpoint {}", c->id, *id), "endpoint");
  const auto [from, to] = Window(r.now_ms, *days);
  auto rows = ctx.store.LoadEndpointDays(c->id, *id, from, to);
  if (!rows.ok()) return ErrorFrom(rows.status());
  json out = {{"id", *id}, {"customer", c->name}, {"days", json::array()}};
  for (const auto& [day, w] : *rows) {
    json d = WindowFigures(w);
    d["day_unix_ms"] = day;
    out["days"].push_back(std::move(d));
  }
  return Ok(std::move(out));
}

Response CustomerPeripherals(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto report = AnalyseCustomerPeripherals(ctx.store, *c, ctx.health.policy, r.now_ms, ctx.catalog);
  if (!report.ok()) return ErrorFrom(report.status());
  json j = PeripheralsToJson(*report);
  j["id"] = c->id;
  return Ok(std::move(j));
}

json OverrideJson(const scoring::Override& o, std::int64_t now_ms) {
  return {{"factor", scoring::FactorName(o.factor)},
          {"value", o.value},
          {"reason", o.reason},
          {"expires_unix_ms", o.expires_ms},
          {"active", o.expires_ms > now_ms}};
}

json OptionalMs(const std::optional<std::int64_t>& v) { return v ? json(*v) : json(); }

Response CustomerSignals(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto loaded = ctx.store.LoadSignals(c->id);
  if (!loaded.ok()) return ErrorFrom(loaded.status());
  const scoring::BusinessSignals& s = loaded->signals;
  json out = {{"id", c->id}, {"customer", c->name}};
  out["surveys"] = json::array();
  for (const scoring::Survey& v : s.surveys) {
    out["surveys"].push_back({{"date_unix_ms", v.date_ms},
                              {"nps", Num(v.nps)},
                              {"ces", Num(v.ces)},
                              {"ves", Num(v.ves)},
                              {"respondents", v.respondents}});
  }
  out["tickets"] = json::array();
  for (const scoring::Ticket& t : s.tickets) {
    out["tickets"].push_back({{"id", t.id},
                              {"opened_unix_ms", t.opened_ms},
                              {"first_response_unix_ms", OptionalMs(t.first_response_ms)},
                              {"resolved_unix_ms", OptionalMs(t.resolved_ms)},
                              {"severity", t.severity}});
  }
  if (s.contract) {
    const scoring::Contract& k = *s.contract;
    const SlaTargets& sla = loaded->sla;
    out["contract"] = {{"tier", std::string(1, k.tier)},
                       {"annual_value", k.annual_value},
                       {"start_unix_ms", k.start_ms},
                       {"renewal_unix_ms", k.renewal_ms},
                       {"renewal_status", scoring::RenewalStatusName(k.renewal_status)},
                       {"expected_savings", Num(k.expected_savings, 100)},
                       {"realised_savings", Num(k.realised_savings, 100)},
                       {"sla",
                        {{"boot_s", Num(sla.boot_s, 1000)},
                         {"boot_pct", Num(sla.boot_pct, 1000)},
                         {"rtt_ms", Num(sla.rtt_ms, 1000)},
                         {"rtt_pct", Num(sla.rtt_pct, 1000)},
                         {"peripherals_pct", Num(sla.peripherals_pct, 1000)},
                         {"availability_pct", Num(sla.availability_pct, 1000)}}}};
  } else {
    out["contract"] = nullptr;
  }
  out["reviews"] = json::array();
  for (std::int64_t d : s.review_dates_ms) out["reviews"].push_back({{"date_unix_ms", d}});
  out["overrides"] = json::array();
  for (const scoring::Override& o : s.overrides) {
    out["overrides"].push_back(OverrideJson(o, r.now_ms));
  }
  return Ok(std::move(out));
}

Response CustomerOverrides(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto loaded = ctx.store.LoadSignals(c->id);
  if (!loaded.ok()) return ErrorFrom(loaded.status());
  json out = {{"id", c->id}, {"customer", c->name}, {"overrides", json::array()}};
  for (const scoring::Override& o : loaded->signals.overrides) {
    out["overrides"].push_back(OverrideJson(o, r.now_ms));
  }
  return Ok(std::move(out));
}

/// The body as a JSON object, or a 400 naming where it fails.
Result<json> JsonBody(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("the body is not valid JSON");
  if (!j.is_object()) return InvalidArgument("the body must be a JSON object");
  return j;
}

Response PutOverride(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  auto c = PathCustomer(ctx, r);
  if (!c.ok()) return ErrorFrom(c.status(), "customer");
  auto body = JsonBody(r.body);
  if (!body.ok()) return ErrorFrom(body.status(), "body");
  for (const auto& [k, v] : body->items()) {
    if (k != "value" && k != "reason" && k != "expires") {
      return Error(400, fmt::format("unknown field '{}'", k.substr(0, 64)), k.substr(0, 64));
    }
  }
  const json& value = (*body)["value"];
  const json& reason = (*body)["reason"];
  const json& expires = (*body)["expires"];
  if (!value.is_number()) return Error(400, "value must be a number from 0 to 100", "value");
  if (!reason.is_string()) return Error(400, "reason must be a string", "reason");
  if (!expires.is_string()) return Error(400, "expires must be a date, YYYY-MM-DD", "expires");
  std::string field;
  auto o = MakeOverride(r.params.at("factor"), value.get<double>(), reason.get<std::string>(),
                        expires.get<std::string>(), r.now_ms, &field);
  if (!o.ok()) return ErrorFrom(o.status(), field);
  if (Status s = ctx.store.SetOverride(c->id, *o, r.now_ms); !s.ok()) return ErrorFrom(s);
  ctx.book.RequestRefresh();
  json out = OverrideJson(*o, r.now_ms);
  out["customer"] = c->name;
  out["id"] = c->id;
  return Ok(std::move(out));
}

Response ListImports(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {"limit"})) return *bad;
  auto limit = IntParam(r.query, "limit", 1, 1000, 100);
  if (!limit.ok()) return FromIntParam(limit.status(), "limit");
  auto imports = ctx.store.ListImports(static_cast<std::size_t>(*limit));
  if (!imports.ok()) return ErrorFrom(imports.status());
  json out = {{"imports", json::array()}};
  for (const ImportRecord& i : *imports) {
    out["imports"].push_back({{"kind", SignalKindName(i.kind)},
                              {"content_sha256", i.content_sha256},
                              {"rows", i.rows},
                              {"imported_unix_ms", i.imported_ms}});
  }
  return Ok(std::move(out));
}

Response PostImport(Context& ctx, const Request& r) {
  if (auto bad = OnlyParams(r, {})) return *bad;
  const auto kind = ParseSignalKind(r.params.at("kind"));
  if (!kind) return Error(404, "imports are of surveys, tickets, contracts or reviews", "kind");
  const SignalFormat format =
      r.content_type == "text/csv" ? SignalFormat::kCsv : SignalFormat::kJson;
  const ParseOutcome parsed = ParseSignals(*kind, format, r.body);
  if (!parsed.batch) {
    json errors = json::array();
    for (const FieldError& e : parsed.errors) {
      errors.push_back({{"where", e.where}, {"field", e.field}, {"message", e.message}});
    }
    Response bad = Error(400, parsed.Summary() + "; nothing imported",
                         parsed.errors.empty() ? std::string() : parsed.errors.front().field);
    bad.body["error"]["problems"] = std::move(errors);
    bad.body["error"]["more_problems"] = parsed.more_errors;
    return bad;
  }
  std::optional<Result<ImportResult>> committed;
  const auto commit = [&] { committed = ctx.store.ImportSignals(*parsed.batch, r.now_ms); };
  if (ctx.write) {
    ctx.write(commit);
  } else {
    commit();
  }
  const Result<ImportResult>& result = *committed;
  if (!result.ok()) {
    // A row naming a customer the store does not know: the body is at fault.
    if (result.status().code() == Code::kNotFound) {
      return Error(400, result.status().message() + "; nothing imported", "customer");
    }
    return ErrorFrom(result.status());
  }
  if (!result->already_imported) ctx.book.RequestRefresh();
  return Ok({{"kind", SignalKindName(*kind)},
             {"already_imported", result->already_imported},
             {"rows", result->rows}});
}

}  // namespace

const char* ScopeName(Scope s) {
  switch (s) {
    case Scope::kAnyToken:
      return "any";
    case Scope::kCustomer:
      return "customer";
    case Scope::kVendor:
      return "vendor";
  }
  return "?";
}

Response Error(int status, std::string message, std::string field) {
  json e = {{"status", status}, {"message", std::move(message)}};
  e["field"] = field.empty() ? json() : json(std::move(field));
  Response r;
  r.status = status;
  r.body = {{"error", std::move(e)}};
  return r;
}

Response ErrorFrom(const Status& s, std::string field) {
  switch (s.code()) {
    case Code::kInvalidArgument:
      return Error(400, s.message(), std::move(field));
    case Code::kNotFound:
      return Error(404, s.message(), std::move(field));
    case Code::kPermissionDenied:
      return Error(403, s.message(), std::move(field));
    case Code::kUnauthenticated:
      return Error(401, s.message(), std::move(field));
    case Code::kAlreadyExists:
      return Error(409, s.message(), std::move(field));
    case Code::kResourceExhausted:
      return Error(413, s.message(), std::move(field));
    case Code::kUnavailable: {
      Response r = Error(503, "the store is unavailable; retry");
      r.fault = s.ToString();
      return r;
    }
    default: {
      Response r = Error(500, "internal error (the collector's log has the details)");
      r.fault = s.ToString();
      return r;
    }
  }
}

const std::vector<Route>& Routes() {
  static const std::vector<Route> kRoutes = {
      {"GET",
       "/api/v1",
       Scope::kAnyToken,
       "this index: every route, and who the token is",
       {},
       Index},
      {"GET",
       "/api/v1/customers",
       Scope::kAnyToken,
       "customers with TPS, LHI, coverage, risk and top driver; filters, sort, pages",
       {},
       ListCustomers},
      {"GET",
       "/api/v1/customers/:customer",
       Scope::kCustomer,
       "one customer: components, factors, trends, drivers, gaps",
       {},
       CustomerDetail},
      {"GET",
       "/api/v1/customers/:customer/drivers",
       Scope::kCustomer,
       "what to fix first, with the points each costs",
       {},
       CustomerDrivers},
      {"GET",
       "/api/v1/customers/:customer/history",
       Scope::kCustomer,
       "daily snapshots of TPS, LHI, coverage and risk",
       {},
       CustomerHistory},
      {"GET",
       "/api/v1/customers/:customer/events",
       Scope::kCustomer,
       "churn-risk changes with their reasons",
       {},
       CustomerEvents},
      {"GET",
       "/api/v1/customers/:customer/endpoints",
       Scope::kCustomer,
       "endpoints with site, pool and their figures over the window",
       {},
       CustomerEndpoints},
      {"GET",
       "/api/v1/customers/:customer/telemetry",
       Scope::kCustomer,
       "daily figures, boot distribution and phases, session RTT by protocol and site",
       {},
       CustomerTelemetry},
      {"GET",
       "/api/v1/customers/:customer/endpoints/:endpoint",
       Scope::kCustomer,
       "one endpoint and its latest report",
       {},
       EndpointDetail},
      {"GET",
       "/api/v1/customers/:customer/endpoints/:endpoint/history",
       Scope::kCustomer,
       "one endpoint's daily figures",
       {},
       EndpointHistory},
      {"GET",
       "/api/v1/customers/:customer/peripherals",
       Scope::kCustomer,
       "peripheral compatibility by device model",
       {},
       CustomerPeripherals},
      {"GET",
       "/api/v1/customers/:customer/signals",
       Scope::kCustomer,
       "business signals: surveys, tickets, contract, reviews, overrides",
       {},
       CustomerSignals},
      {"GET",
       "/api/v1/customers/:customer/overrides",
       Scope::kCustomer,
       "account managers' overrides of business factors",
       {},
       CustomerOverrides},
      {"PUT",
       "/api/v1/customers/:customer/overrides/:factor",
       Scope::kCustomer,
       "set an override: {value, reason, expires}",
       {"application/json"},
       PutOverride,
       Route::Body::kSmall},
      {"GET",
       "/api/v1/imports",
       Scope::kVendor,
       "the latest imports, newest first",
       {},
       ListImports},
      {"POST",
       "/api/v1/imports/:kind",
       Scope::kVendor,
       "import surveys, tickets, contracts or reviews (CSV or JSON): all rows or none",
       {"text/csv", "application/json"},
       PostImport,
       Route::Body::kImport},
  };
  return kRoutes;
}

std::optional<Response> CheckAccess(const Route& route, const ApiToken& token,
                                    const std::map<std::string, std::string>& params,
                                    const std::string& content_type) {
  const bool admin = token.role == ApiRole::kCustomerAdmin;
  if (admin && !token.customer) return Error(403, "this token has no customer");
  if (route.scope == Scope::kCustomer && admin) {
    // Another customer's id answers as an unknown one would: no data, and
    // nothing said about whether it exists.
    const auto it = params.find("customer");
    if (it == params.end() || it->second != std::to_string(token.customer->id)) {
      return Error(404,
                   fmt::format("no customer '{}'",
                               it == params.end() ? std::string() : it->second.substr(0, 64)),
                   "customer");
    }
  }
  if (admin && (route.scope == Scope::kVendor || route.writes())) {
    return Error(403, "a customer-admin token is read-only: this route needs a vendor token");
  }
  if (route.writes()) {
    if (std::find(route.content_types.begin(), route.content_types.end(), content_type) ==
        route.content_types.end()) {
      std::string allowed;
      for (std::string_view t : route.content_types) {
        allowed += allowed.empty() ? "" : " or ";
        allowed += t;
      }
      return Error(415,
                   fmt::format("Content-Type must be {}{}", allowed,
                               content_type.empty() ? "" : ", not " + content_type.substr(0, 64)),
                   "Content-Type");
    }
  }
  return std::nullopt;
}

}  // namespace deskpulse::collector::api
