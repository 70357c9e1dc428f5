#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "deskpulse/common/histogram.h"
#include "deskpulse/v1/report.pb.h"

namespace deskpulse::collector {

/// Each stretch of unplanned downtime in a stability report, as the rollups
/// and the availability SLO count it: an unplanned session event's downtime,
/// a frozen display (stall), a crash's downtime. `fn(at_ms, downtime_ms)`;
/// `t` stands in for an event without its own time.
template <typename Fn>
void ForEachDowntime(const deskpulse::v1::StabilityReport& s, std::int64_t t, Fn&& fn) {
  for (const auto& e : s.session_events()) {
    if (!e.planned() && e.has_downtime_ms()) {
      fn(e.at_unix_ms() != 0 ? e.at_unix_ms() : t, static_cast<double>(e.downtime_ms()));
    }
  }
  for (const auto& st : s.stalls()) {
    // A frozen display is unavailable session time, as an outage is.
    fn(st.start_unix_ms() != 0 ? st.start_unix_ms() : t,
       static_cast<double>(st.has_frozen_ms() ? st.frozen_ms() : st.duration_ms()));
  }
  for (const auto& c : s.crashes()) {
    if (c.has_downtime_ms()) {
      fn(c.at_unix_ms() != 0 ? c.at_unix_ms() : t, static_cast<double>(c.downtime_ms()));
    }
  }
}

/// What a rollup row measures. Values are stored in the schema: never renumber.
enum class Metric : std::int32_t {
  kReports = 1,      // count: reports received
  kBootLoginMs = 2,  // count: boots; sum: ms; hist: login-ready ms buckets
  kLatency = 3,      // count: windows; sum: window s; hist: latency_cells (histogram.h) → s
  kSessionS = 4,     // sum: remote-session seconds
  kDowntimeMs = 5,   // count: unplanned outages; sum: downtime ms
  kDisconnects = 6,  // count: unplanned disconnects
  kReconnects = 7,   // count: session reconnects
  kCrashes = 8,      // count: crashes (agent, VDI client, OS)
  kPeripheralReconnects = 9,  // count: detach+attach of the same device
  kStalls = 10,               // count: session stalls (their frozen time is in kDowntimeMs)
  // 11..17: count: boots with the phase; sum: its ms (BootPhase order).
  kBootPhaseFirst = 11,
  kBootPhaseLast = 17,
  // 101..163: kLatency of the windows of one display protocol, 100 +
  // deskpulse.v1.DisplayProtocol (LatencyOfProtocol): drivers by protocol.
};
inline constexpr std::int32_t kLatencyByProtocolBase = 100;
inline constexpr std::int32_t kMaxProtocol = 63;
inline Metric LatencyOfProtocol(int protocol) {
  return static_cast<Metric>(kLatencyByProtocolBase + protocol);
}
/// The protocol of a per-protocol latency metric, or -1.
inline int ProtocolOfMetric(Metric m) {
  const auto v = static_cast<std::int32_t>(m);
  return v > kLatencyByProtocolBase && v <= kLatencyByProtocolBase + kMaxProtocol
             ? v - kLatencyByProtocolBase
             : -1;
}

/// The boot phases the rollups total, in order: systemd-analyze's five, then
/// the end of userspace to login-ready and login-ready to desktop-ready.
enum class BootPhase : int {
  kFirmware,
  kLoader,
  kKernel,
  kInitrd,
  kUserspace,
  kToLogin,
  kToDesktop,
};
inline constexpr int kBootPhaseCount = 7;
static_assert(static_cast<int>(Metric::kBootPhaseLast) - static_cast<int>(Metric::kBootPhaseFirst) +
                  1 ==
              kBootPhaseCount);
const char* BootPhaseName(BootPhase p);
inline Metric MetricOfPhase(BootPhase p) {
  return static_cast<Metric>(static_cast<int>(Metric::kBootPhaseFirst) + static_cast<int>(p));
}
/// The phase of a boot-phase metric, or -1.
inline int PhaseOfMetric(Metric m) {
  const auto v = static_cast<int>(m);
  return v >= static_cast<int>(Metric::kBootPhaseFirst) &&
                 v <= static_cast<int>(Metric::kBootPhaseLast)
             ? v - static_cast<int>(Metric::kBootPhaseFirst)
             : -1;
}

enum class Grain : std::int32_t { kHour = 1, kDay = 2 };

inline constexpr std::int64_t kHourMs = 3'600'000;
inline constexpr std::int64_t kDayMs = 24 * kHourMs;

inline std::int64_t FloorTo(std::int64_t t_ms, std::int64_t step_ms) {
  const std::int64_t r = t_ms % step_ms;
  return r < 0 ? t_ms - r - step_ms : t_ms - r;
}

struct RollupCell {
  std::int64_t count = 0;
  double sum = 0;
  SparseHistogram hist;

  void Merge(const RollupCell& o) {
    count += o.count;
    sum += o.sum;
    hist.Merge(o.hist);
  }
};

/// One row of a rollup table; endpoint_id 0 is the customer-level row.
struct RollupRow {
  Grain grain;
  std::int64_t customer_id;
  std::int64_t endpoint_id;
  std::int64_t bucket_start_ms;
  Metric metric;
  RollupCell cell;
};

/// The latest knowledge of one device instance (endpoint × device).
struct PeripheralInstance {
  std::int64_t customer_id = 0;
  std::int64_t endpoint_id = 0;
  std::string device_key;               // "usb:03f0:2b17:<serial hash>"
  deskpulse::v1::PeripheralState last;  // state at last_seen_ms
  std::int64_t first_seen_ms = 0;
  std::int64_t last_seen_ms = 0;
  std::int64_t last_fail_ms = 0;  // 0: never seen failing
  std::int64_t observations = 0;
  std::int64_t fail_observations = 0;
  std::int64_t reconnects = 0;
};

/// Turns committed reports into rollup deltas. Pure: no SQL, no clock.
///
/// On the hot path only endpoint × hour cells are touched; Expand() derives the
/// endpoint-day, customer-hour and customer-day rows when they are flushed.
class RollupAccumulator {
 public:
  /// `bytes` are the report as received, kept when it is the endpoint's
  /// newest (serialized again from `report` when not given).
  void AddReport(std::int64_t customer_id, std::int64_t endpoint_id,
                 const deskpulse::v1::Report& report, std::string_view bytes = {});
  void Merge(RollupAccumulator&& other);
  void Clear();
  bool empty() const { return cells_.empty() && instances_.empty(); }
  std::size_t reports() const { return reports_; }

  std::vector<RollupRow> Expand() const;
  const std::map<std::tuple<std::int64_t, std::int64_t, std::string>, PeripheralInstance>&
  instances() const {
    return instances_;
  }
  struct Seen {
    std::int64_t customer_id = 0;
    std::int64_t last_ms = 0;  // latest observed_at_unix_ms
    std::string last_report;   // the report observed at last_ms, serialized
  };
  /// endpoint_id → when it was last seen.
  const std::unordered_map<std::int64_t, Seen>& endpoints_seen() const { return endpoints_seen_; }

  static std::string DeviceKey(const deskpulse::v1::PeripheralState& p);
  static bool IsFailure(deskpulse::v1::DeviceState s);

 private:
  struct Key {
    std::int64_t customer_id;
    std::int64_t endpoint_id;
    std::int64_t hour_ms;
    Metric metric;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      std::size_t h = std::hash<std::int64_t>()(k.endpoint_id);
      h ^= std::hash<std::int64_t>()(k.hour_ms) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
      h ^= static_cast<std::size_t>(k.metric) * 0x100000001b3ULL;
      return h;
    }
  };
  void AddBootPhases(std::int64_t customer_id, std::int64_t endpoint_id,
                     const deskpulse::v1::BootReport& b, std::int64_t t);
  RollupCell& At(std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t t_ms, Metric m) {
    return cells_[Key{customer_id, endpoint_id, FloorTo(t_ms, kHourMs), m}];
  }

  std::unordered_map<Key, RollupCell, KeyHash> cells_;
  std::map<std::tuple<std::int64_t, std::int64_t, std::string>, PeripheralInstance> instances_;
  std::unordered_map<std::int64_t, Seen> endpoints_seen_;
  std::size_t reports_ = 0;
};

/// Where two sets of rollup rows differ (rows with nothing in them are
/// ignored), one line per differing key, in key order: what `check
/// --rollups` and the tests compare a store's rollups with a recomputation by.
std::vector<std::string> DiffRollups(std::vector<RollupRow> expected,
                                     std::vector<RollupRow> actual);

/// Rollups waiting to be flushed, partitioned by endpoint into slices. Each
/// slice is flushed in its own short transaction with its own rolled-up-through
/// mark, so a flush never holds the store's write lock for long.
inline constexpr int kRollupSlices = 64;  // a multiple of 16, the count before schema 8

class PendingRollups {
 public:
  static int SliceOf(std::int64_t endpoint_id) {
    return static_cast<int>(static_cast<std::uint64_t>(endpoint_id) % kRollupSlices);
  }
  void AddReport(std::int64_t customer_id, std::int64_t endpoint_id,
                 const deskpulse::v1::Report& report, std::string_view bytes = {}) {
    slices_[static_cast<std::size_t>(SliceOf(endpoint_id))].AddReport(customer_id, endpoint_id,
                                                                      report, bytes);
  }
  RollupAccumulator& slice(int i) { return slices_[static_cast<std::size_t>(i)]; }
  void Clear() {
    for (auto& s : slices_) s.Clear();
  }
  std::size_t reports() const {
    std::size_t n = 0;
    for (const auto& s : slices_) n += s.reports();
    return n;
  }

 private:
  std::array<RollupAccumulator, kRollupSlices> slices_;
};

}  // namespace deskpulse::collector
