#pragma once

// What the stored reports add up to since the collector started: the figures
// /metrics exports as counters (docs/metrics.md).

#include <cstdint>
#include <unordered_map>

#include "deskpulse/v1/report.pb.h"

namespace deskpulse::collector {

struct ReportTotalsSnapshot {
  /// Some stored report carried agent self-health; until then the agent
  /// counters have no data (and /metrics leaves them out).
  bool agents_seen = false;
  /// Increases of the agents' own counters between consecutive reports of an
  /// endpoint. An agent's first report here is its baseline; a counter that
  /// went down (a reinstalled agent) counts from 0 again. So the totals only
  /// rise, as Prometheus counters must, whatever an agent does.
  std::uint64_t agent_dropped_reports = 0;
  std::uint64_t agent_corrupt_records = 0;
  std::uint64_t agent_rejected_reports = 0;
  std::uint64_t agent_restarts = 0;
  /// The availability SLO: remote-session time, and the unplanned downtime
  /// within it as the rollups count it (ForEachDowntime).
  bool sessions_seen = false;
  double session_seconds = 0;
  double downtime_seconds = 0;
  /// The session-latency SLO: the seconds of session windows with an RTT,
  /// and of those whose RTT p95 was above the target.
  bool windows_seen = false;
  double window_seconds = 0;
  double slow_window_seconds = 0;
};

/// Adds up reports as they are stored. One thread (the writer's); about 64
/// bytes per endpoint seen.
class ReportTotals {
 public:
  /// `slow_rtt_ms`: a session window slower than this at p95 misses the
  /// latency target (the published default good RTT, docs/scoring.md).
  explicit ReportTotals(double slow_rtt_ms = 100) : slow_rtt_us_(slow_rtt_ms * 1000) {}

  void Add(std::int64_t endpoint_id, const deskpulse::v1::Report& r);
  const ReportTotalsSnapshot& snapshot() const { return totals_; }
  std::size_t endpoints() const { return last_.size(); }

 private:
  struct Last {
    std::uint64_t dropped = 0, corrupt = 0, rejected = 0, restarts = 0;
  };
  double slow_rtt_us_;
  std::unordered_map<std::int64_t, Last> last_;  // by endpoint id
  ReportTotalsSnapshot totals_;
};

}  // namespace deskpulse::collector
