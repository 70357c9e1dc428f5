#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "deskpulse/common/histogram.h"
#include "deskpulse/common/status.h"

namespace deskpulse::scoring {

/// Contract thresholds and weights (docs/scoring.md). Defaults are the published ones.
struct Policy {
  double boot_good_s = 30, boot_poor_s = 100;
  double rtt_good_ms = 100, rtt_poor_ms = 375;
  double retransmit_good_pct = 1, retransmit_poor_pct = 5;
  double unavailability_good = 1e-4, unavailability_poor = 1e-2;
  double weight_latency = 0.30, weight_boot = 0.25, weight_peripherals = 0.25,
         weight_stability = 0.20;
  int window_days = 30;

  /// Rejects thresholds that are not ordered and weights that are negative or sum to 0.
  Status Validate() const;
};

/// Everything scoring needs about one customer over one window, read from rollups.
struct WindowRollup {
  std::int64_t endpoints = 0;
  std::int64_t reports = 0;
  SparseHistogram boot_ms;  // 1-D: power-on → login-ready, ms buckets
  SparseHistogram latency;  // latency_cells: (rtt p95, retransmit rate) → window seconds
  std::int64_t latency_windows = 0;
  double session_s = 0;
  double downtime_ms = 0;
  std::int64_t disconnects = 0;
  std::int64_t reconnects = 0;
  std::int64_t crashes = 0;
  std::int64_t stalls = 0;  // display connections frozen (data outstanding, nothing acknowledged)
  std::int64_t peripherals_working = 0;  // device instances seen, never failing in the window
  std::int64_t peripherals_failed = 0;   // device instances seen failing in the window
  std::int64_t peripheral_reconnects = 0;
  /// `latency` split by display protocol (deskpulse.v1.DisplayProtocol);
  /// windows without one are only in `latency`.
  std::map<int, SparseHistogram> latency_by_protocol;
  /// Boots with each phase and its total ms, in the rollups' BootPhase order
  /// (collector/store/rollup.h): the phase breakdown of the dashboard.
  struct PhaseTotal {
    std::int64_t boots = 0;
    double ms = 0;
  };
  std::array<PhaseTotal, 7> boot_phases{};
};

enum class Band { kGood, kFair, kPoor };
const char* BandName(Band band);
Band BandOf(double score);

/// A group of a customer's endpoints over the window: those of one site or
/// pool, or the session windows of one display protocol.
struct EndpointGroup {
  std::string dimension;  // "site", "pool", "protocol"
  std::string name;       // "lyon-hq", "finance-vdi", "ICA"
  std::int64_t endpoints = 0;
  WindowRollup window;
};

/// Where most of a component's lost points come from (docs/scoring.md, "Drivers").
struct LossSource {
  std::string dimension, name;
  std::int64_t endpoints = 0;
  double share = 0;     // of the component's lost points, 0..1
  std::string figures;  // the group's own, e.g. "p95 87.0 s"
  std::int64_t rest_endpoints = 0;
  std::string rest_figures;  // the rest of its dimension's
};

struct Component {
  std::optional<double> score;       // absent: no data in the window
  double weight = 0;                 // policy weight
  std::string detail;                // the figures behind the score, for a person
  std::optional<LossSource> source;  // set by AttributeLosses
};

struct TechScore {
  Component boot, latency, peripherals, stability;
  std::optional<double> tps;
  std::optional<Band> band;
  double coverage = 0;               // share of the weight that had data, 0..1
  std::vector<std::string> drivers;  // what pulls the score down most, worst first
};

/// Per-event score: 1 at or better than `good`, 0 at or worse than `poor`, linear in between.
double EventScore(double x, double good, double poor);

double BootComponent(const SparseHistogram& boot_ms, const Policy& p);
double LatencyComponent(const SparseHistogram& latency, const Policy& p);
double StabilityComponent(double unavailability, const Policy& p);
/// Quantile of window RTT p95 (ms) over a latency histogram, weighted by seconds.
double LatencyRttQuantileMs(const SparseHistogram& latency, double q);

/// The technical performance score of one window. Pure.
TechScore ScoreWindow(const WindowRollup& w, const Policy& p);

/// For boot, latency and stability: the group, across every dimension with
/// two groups or more, whose share of the component's lost points most
/// exceeds its share of the boots (session seconds, session time), by 10
/// points at least, with its figures and those of the rest of its
/// dimension; none when the loss is spread evenly. Boot and latency scores
/// are means over boots and session seconds, so a group's share of the loss
/// is exact; stability's is its share of the downtime. Pure.
void AttributeLosses(TechScore& t, const std::vector<EndpointGroup>& groups, const Policy& p);

}  // namespace deskpulse::scoring
