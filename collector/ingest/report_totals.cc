#include "collector/ingest/report_totals.h"

#include "collector/store/rollup.h"

namespace deskpulse::collector {
namespace {

/// How much a cumulative counter rose since `last`; one that went down was
/// reset (its agent reinstalled, its spool state lost) and counts from 0.
std::uint64_t Rise(std::uint64_t now, std::uint64_t& last) {
  const std::uint64_t rise = now >= last ? now - last : now;
  last = now;
  return rise;
}

}  // namespace

void ReportTotals::Add(std::int64_t endpoint_id, const deskpulse::v1::Report& r) {
  if (r.has_agent_health()) {
    const auto& h = r.agent_health();
    auto [it, first] = last_.try_emplace(endpoint_id);
    Last& last = it->second;
    if (first) {
      last = Last{h.dropped_reports(), h.corrupt_records(), h.rejected_reports(), h.restarts()};
    } else {
      totals_.agent_dropped_reports += Rise(h.dropped_reports(), last.dropped);
      totals_.agent_corrupt_records += Rise(h.corrupt_records(), last.corrupt);
      totals_.agent_rejected_reports += Rise(h.rejected_reports(), last.rejected);
      totals_.agent_restarts += Rise(h.restarts(), last.restarts);
    }
    totals_.agents_seen = true;
  }
  if (r.has_stability()) {
    const auto& s = r.stability();
    totals_.sessions_seen = true;
    totals_.session_seconds += static_cast<double>(s.session_s());
    ForEachDowntime(s, r.observed_at_unix_ms(),
                    [this](std::int64_t, double ms) { totals_.downtime_seconds += ms / 1000; });
  }
  for (const auto& w : r.sessions()) {
    if (!w.has_rtt_p95_us() || w.window_s() == 0) continue;  // as the rollups: nothing to score
    totals_.windows_seen = true;
    totals_.window_seconds += w.window_s();
    if (static_cast<double>(w.rtt_p95_us()) > slow_rtt_us_) {
      totals_.slow_window_seconds += w.window_s();
    }
  }
}

}  // namespace deskpulse::collector
