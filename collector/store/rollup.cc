#include "collector/store/rollup.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;

bool RollupAccumulator::IsFailure(v1::DeviceState s) {
  return s == v1::DEVICE_STATE_NO_DRIVER || s == v1::DEVICE_STATE_BLOCKED_BY_POLICY ||
         s == v1::DEVICE_STATE_REDIRECT_FAILED || s == v1::DEVICE_STATE_ERROR;
}

std::string RollupAccumulator::DeviceKey(const v1::PeripheralState& p) {
  const char* bus = p.bus() == v1::PERIPHERAL_BUS_CUPS   ? "cups"
                    : p.bus() == v1::PERIPHERAL_BUS_PCSC ? "pcsc"
                                                         : "usb";
  char ids[32];
  std::snprintf(ids, sizeof ids, "%04x:%04x", p.vendor_id() & 0xFFFFu, p.product_id() & 0xFFFFu);
  std::string key = std::string(bus) + ":" + ids + ":";
  key += p.serial_hash().empty() ? p.name() : p.serial_hash();
  return key;
}

const char* BootPhaseName(BootPhase p) {
  switch (p) {
    case BootPhase::kFirmware:
      return "firmware";
    case BootPhase::kLoader:
      return "loader";
    case BootPhase::kKernel:
      return "kernel";
    case BootPhase::kInitrd:
      return "initrd";
    case BootPhase::kUserspace:
      return "userspace";
    case BootPhase::kToLogin:
      return "to login-ready";
    case BootPhase::kToDesktop:
      return "to desktop-ready";
  }
  return "?";
}

void RollupAccumulator::AddBootPhases(std::int64_t customer_id, std::int64_t endpoint_id,
                                      const v1::BootReport& b, std::int64_t t) {
  const std::int64_t bt = b.booted_at_unix_ms() != 0 ? b.booted_at_unix_ms() : t;
  auto add = [&](BootPhase p, std::uint64_t ms) {
    auto& c = At(customer_id, endpoint_id, bt, MetricOfPhase(p));
    c.count += 1;
    c.sum += static_cast<double>(ms);
  };
  if (b.has_firmware_ms()) add(BootPhase::kFirmware, b.firmware_ms());
  if (b.has_loader_ms()) add(BootPhase::kLoader, b.loader_ms());
  if (b.has_kernel_ms()) add(BootPhase::kKernel, b.kernel_ms());
  if (b.has_initrd_ms()) add(BootPhase::kInitrd, b.initrd_ms());
  if (b.has_userspace_ms()) add(BootPhase::kUserspace, b.userspace_ms());
  // The gap to login-ready is known only where the phases run from the same
  // origin as login-ready: userspace's end is their sum.
  if (b.has_login_ready_ms() && b.has_userspace_ms()) {
    const std::uint64_t end =
        b.firmware_ms() + b.loader_ms() + b.kernel_ms() + b.initrd_ms() + b.userspace_ms();
    if (b.login_ready_ms() >= end) add(BootPhase::kToLogin, b.login_ready_ms() - end);
  }
  if (b.has_login_ready_ms() && b.has_desktop_ready_ms() &&
      b.desktop_ready_ms() >= b.login_ready_ms()) {
    add(BootPhase::kToDesktop, b.desktop_ready_ms() - b.login_ready_ms());
  }
}

void RollupAccumulator::AddReport(std::int64_t customer_id, std::int64_t endpoint_id,
                                  const v1::Report& r, std::string_view bytes) {
  const std::int64_t t = r.observed_at_unix_ms();
  ++reports_;
  At(customer_id, endpoint_id, t, Metric::kReports).count += 1;
  auto& seen = endpoints_seen_[endpoint_id];
  seen.customer_id = customer_id;
  if (t >= seen.last_ms || seen.last_report.empty()) {
    seen.last_ms = std::max(seen.last_ms, t);
    if (bytes.empty()) {
      seen.last_report = r.SerializeAsString();
    } else {
      seen.last_report.assign(bytes);
    }
  }

  if (r.has_boot() && r.boot().has_login_ready_ms()) {
    const std::int64_t bt = r.boot().booted_at_unix_ms() != 0 ? r.boot().booted_at_unix_ms() : t;
    auto& c = At(customer_id, endpoint_id, bt, Metric::kBootLoginMs);
    c.count += 1;
    c.sum += static_cast<double>(r.boot().login_ready_ms());
    c.hist.AddValue(r.boot().login_ready_ms());
  }

  if (r.has_boot()) AddBootPhases(customer_id, endpoint_id, r.boot(), t);

  for (const auto& w : r.sessions()) {
    if (!w.has_rtt_p95_us() || w.window_s() == 0) continue;  // nothing to score
    const std::int64_t wt = w.window_start_unix_ms() != 0 ? w.window_start_unix_ms() : t;
    const std::uint64_t loss = w.retransmit_ppm();
    const auto key = latency_cells::Key(w.rtt_p95_us(), w.has_retransmit_ppm() ? &loss : nullptr);
    auto& c = At(customer_id, endpoint_id, wt, Metric::kLatency);
    c.count += 1;
    c.sum += w.window_s();
    c.hist.Add(key, w.window_s());
    if (w.protocol() > 0 && w.protocol() <= kMaxProtocol) {
      auto& pc = At(customer_id, endpoint_id, wt, LatencyOfProtocol(w.protocol()));
      pc.count += 1;
      pc.sum += w.window_s();
      pc.hist.Add(key, w.window_s());
    }
  }

  if (r.has_stability()) {
    const auto& s = r.stability();
    if (s.session_s() > 0) At(customer_id, endpoint_id, t, Metric::kSessionS).sum += s.session_s();
    for (const auto& e : s.session_events()) {
      const std::int64_t et = e.at_unix_ms() != 0 ? e.at_unix_ms() : t;
      if (e.kind() == v1::SESSION_EVENT_KIND_RECONNECT) {
        At(customer_id, endpoint_id, et, Metric::kReconnects).count += 1;
      }
      if (!e.planned() && e.kind() == v1::SESSION_EVENT_KIND_DISCONNECT) {
        At(customer_id, endpoint_id, et, Metric::kDisconnects).count += 1;
      }
    }
    for (const auto& st : s.stalls()) {
      At(customer_id, endpoint_id, st.start_unix_ms() != 0 ? st.start_unix_ms() : t,
         Metric::kStalls)
          .count += 1;
    }
    for (const auto& c : s.crashes()) {
      At(customer_id, endpoint_id, c.at_unix_ms() != 0 ? c.at_unix_ms() : t, Metric::kCrashes)
          .count += 1;
    }
    ForEachDowntime(s, t, [&](std::int64_t at, double ms) {
      auto& d = At(customer_id, endpoint_id, at, Metric::kDowntimeMs);
      d.count += 1;
      d.sum += ms;
    });
  }

  for (const auto& p : r.peripherals()) {
    auto key = std::make_tuple(customer_id, endpoint_id, DeviceKey(p));
    auto [it, fresh] = instances_.try_emplace(key);
    PeripheralInstance& inst = it->second;
    if (fresh) {
      inst.customer_id = customer_id;
      inst.endpoint_id = endpoint_id;
      inst.device_key = std::get<2>(key);
    }
    inst.first_seen_ms = inst.observations == 0 ? t : std::min(inst.first_seen_ms, t);
    if (t >= inst.last_seen_ms) {
      inst.last_seen_ms = t;
      inst.last = p;
    }
    inst.observations += 1;
    if (IsFailure(p.state())) {
      inst.fail_observations += 1;
      inst.last_fail_ms = std::max(inst.last_fail_ms, t);
    }
  }
  for (const auto& e : r.peripheral_events()) {
    if (e.kind() != v1::PERIPHERAL_EVENT_KIND_RECONNECT) continue;
    At(customer_id, endpoint_id, e.at_unix_ms() != 0 ? e.at_unix_ms() : t,
       Metric::kPeripheralReconnects)
        .count += 1;
    // Attribute the reconnect to its device instance; an instance that this
    // accumulator has not seen in a state report only carries the count
    // (observations stay 0), and the store then updates an existing row only.
    v1::PeripheralState probe;
    probe.set_bus(v1::PERIPHERAL_BUS_USB);
    probe.set_vendor_id(e.vendor_id());
    probe.set_product_id(e.product_id());
    probe.set_serial_hash(e.serial_hash());
    auto key = std::make_tuple(customer_id, endpoint_id, DeviceKey(probe));
    auto [it, fresh] = instances_.try_emplace(key);
    if (fresh) {
      it->second.customer_id = customer_id;
      it->second.endpoint_id = endpoint_id;
      it->second.device_key = std::get<2>(key);
      it->second.last = probe;
    }
    it->second.reconnects += 1;
  }
}

void RollupAccumulator::Merge(RollupAccumulator&& other) {
  for (auto& [k, c] : other.cells_) cells_[k].Merge(c);
  for (auto& [k, inst] : other.instances_) {
    auto [it, fresh] = instances_.try_emplace(k, inst);
    if (fresh) continue;
    PeripheralInstance& mine = it->second;
    if (inst.observations > 0) {
      mine.first_seen_ms = mine.observations == 0
                               ? inst.first_seen_ms
                               : std::min(mine.first_seen_ms, inst.first_seen_ms);
    }
    if (inst.last_seen_ms >= mine.last_seen_ms) {
      mine.last_seen_ms = inst.last_seen_ms;
      mine.last = inst.last;
    }
    mine.last_fail_ms = std::max(mine.last_fail_ms, inst.last_fail_ms);
    mine.observations += inst.observations;
    mine.fail_observations += inst.fail_observations;
    mine.reconnects += inst.reconnects;
  }
  for (auto& [e, t] : other.endpoints_seen_) {
    auto& seen = endpoints_seen_[e];
    seen.customer_id = t.customer_id;
    if (t.last_ms >= seen.last_ms && !t.last_report.empty()) {
      seen.last_report = std::move(t.last_report);
    }
    seen.last_ms = std::max(seen.last_ms, t.last_ms);
  }
  reports_ += other.reports_;
  other.Clear();
}

void RollupAccumulator::Clear() {
  cells_.clear();
  instances_.clear();
  endpoints_seen_.clear();
  reports_ = 0;
}

std::vector<RollupRow> RollupAccumulator::Expand() const {
  // (grain, customer, endpoint, bucket, metric), ordered for a locality-friendly
  // upsert. Histogram cells are gathered and merged once per output row:
  // merging thousands of endpoint histograms pairwise would be quadratic.
  struct Gathered {
    std::int64_t count = 0;
    double sum = 0;
    std::vector<SparseHistogram::Cell> cells;
  };
  std::map<std::tuple<int, std::int64_t, std::int64_t, std::int64_t, int>, Gathered> out;
  for (const auto& [k, c] : cells_) {
    const std::int64_t day = FloorTo(k.hour_ms, kDayMs);
    const int m = static_cast<int>(k.metric);
    for (const auto& key : {std::make_tuple(1, k.customer_id, k.endpoint_id, k.hour_ms, m),
                            std::make_tuple(2, k.customer_id, k.endpoint_id, day, m),
                            std::make_tuple(1, k.customer_id, std::int64_t{0}, k.hour_ms, m),
                            std::make_tuple(2, k.customer_id, std::int64_t{0}, day, m)}) {
      Gathered& g = out[key];
      g.count += c.count;
      g.sum += c.sum;
      g.cells.insert(g.cells.end(), c.hist.cells().begin(), c.hist.cells().end());
    }
  }
  std::vector<RollupRow> rows;
  rows.reserve(out.size());
  for (auto& [k, g] : out) {
    RollupCell cell{g.count, g.sum, SparseHistogram::FromCells(std::move(g.cells))};
    rows.push_back(RollupRow{static_cast<Grain>(std::get<0>(k)), std::get<1>(k), std::get<2>(k),
                             std::get<3>(k), static_cast<Metric>(std::get<4>(k)), std::move(cell)});
  }
  return rows;
}

std::vector<std::string> DiffRollups(std::vector<RollupRow> expected,
                                     std::vector<RollupRow> actual) {
  using Key = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, int>;
  auto index = [](std::vector<RollupRow>& rows) {
    std::map<Key, const RollupRow*> out;
    for (const auto& r : rows) {
      if (r.cell.count == 0 && r.cell.sum == 0 && r.cell.hist.empty()) continue;
      out[Key(static_cast<int>(r.grain), r.customer_id, r.endpoint_id, r.bucket_start_ms,
              static_cast<int>(r.metric))] = &r;
    }
    return out;
  };
  const auto want = index(expected);
  const auto got = index(actual);
  auto describe = [](const Key& k, const RollupRow* r) {
    const auto [grain, customer, endpoint, bucket, metric] = k;
    std::string s = "grain " + std::to_string(grain) + ", customer " + std::to_string(customer) +
                    ", endpoint " + std::to_string(endpoint) + ", bucket " +
                    std::to_string(bucket) + ", metric " + std::to_string(metric) + ": ";
    if (r == nullptr) return s + "none";
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.6g", r->cell.sum);
    return s + "count " + std::to_string(r->cell.count) + " sum " + sum + " hist weight " +
           std::to_string(r->cell.hist.TotalWeight());
  };
  std::vector<std::string> out;
  auto w = want.begin();
  auto g = got.begin();
  while (w != want.end() || g != got.end()) {
    if (g == got.end() || (w != want.end() && w->first < g->first)) {
      out.push_back("missing " + describe(w->first, w->second));
      ++w;
    } else if (w == want.end() || g->first < w->first) {
      out.push_back("extra " + describe(g->first, g->second));
      ++g;
    } else {
      const RollupCell& a = w->second->cell;
      const RollupCell& b = g->second->cell;
      const double tolerance = 1e-9 * std::max(1.0, std::abs(a.sum));
      if (a.count != b.count || std::abs(a.sum - b.sum) > tolerance ||
          a.hist.Encode() != b.hist.Encode()) {
        out.push_back("expected " + describe(w->first, w->second) + "; stored " +
                      describe(g->first, g->second));
      }
      ++w;
      ++g;
    }
  }
  return out;
}

}  // namespace deskpulse::collector
