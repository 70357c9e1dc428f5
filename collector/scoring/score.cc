#include "collector/scoring/score.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <utility>

namespace deskpulse::scoring {

namespace {

std::string Fmt(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}
}  // namespace

Status Policy::Validate() const {
  auto ordered = [](double good, double poor, const char* name) -> Status {
    if (!(good < poor)) {
      return InvalidArgument(std::string("policy: ") + name + " good threshold must be below poor");
    }
    return Status::Ok();
  };
  DP_RETURN_IF_ERROR(ordered(boot_good_s, boot_poor_s, "boot"));
  DP_RETURN_IF_ERROR(ordered(rtt_good_ms, rtt_poor_ms, "rtt"));
  DP_RETURN_IF_ERROR(ordered(retransmit_good_pct, retransmit_poor_pct, "retransmit"));
  DP_RETURN_IF_ERROR(ordered(unavailability_good, unavailability_poor, "unavailability"));
  if (unavailability_good <= 0) return InvalidArgument("policy: unavailability good must be > 0");
  const double w[] = {weight_latency, weight_boot, weight_peripherals, weight_stability};
  double sum = 0;
  for (double x : w) {
    if (x < 0) return InvalidArgument("policy: weights must not be negative");
    sum += x;
  }
  if (sum <= 0) return InvalidArgument("policy: weights sum to 0");
  if (window_days < 1 || window_days > 400) {
    return InvalidArgument("policy: window_days must be within 1..400");
  }
  return Status::Ok();
}

const char* BandName(Band band) {
  switch (band) {
    case Band::kGood:
      return "good";
    case Band::kFair:
      return "fair";
    case Band::kPoor:
      return "poor";
  }
  return "?";
}

Band BandOf(double score) {
  if (score >= 70) return Band::kGood;
  if (score >= 40) return Band::kFair;
  return Band::kPoor;
}

double EventScore(double x, double good, double poor) {
  if (x <= good) return 1;
  if (x >= poor) return 0;
  return (poor - x) / (poor - good);
}

double BootComponent(const SparseHistogram& boot_ms, const Policy& p) {
  double total = 0;
  double weighted = 0;
  for (const auto& [bucket, n] : boot_ms.cells()) {
    const double s = buckets::Representative(bucket) / 1000.0;
    weighted += static_cast<double>(n) * EventScore(s, p.boot_good_s, p.boot_poor_s);
    total += static_cast<double>(n);
  }
  return total > 0 ? 100.0 * weighted / total : 0;
}

double LatencyComponent(const SparseHistogram& latency, const Policy& p) {
  double total = 0;
  double weighted = 0;
  for (const auto& [key, seconds] : latency.cells()) {
    double s = EventScore(latency_cells::RttMs(key), p.rtt_good_ms, p.rtt_poor_ms);
    if (const double pct = latency_cells::LossPct(key); pct >= 0) {
      s = std::min(s, EventScore(pct, p.retransmit_good_pct, p.retransmit_poor_pct));
    }
    weighted += static_cast<double>(seconds) * s;
    total += static_cast<double>(seconds);
  }
  return total > 0 ? 100.0 * weighted / total : 0;
}

double LatencyRttQuantileMs(const SparseHistogram& latency, double q) {
  std::vector<std::pair<double, std::uint64_t>> rtt;  // marginal over loss, by seconds
  std::uint64_t total = 0;
  for (const auto& [key, seconds] : latency.cells()) {
    rtt.emplace_back(latency_cells::RttMs(key), seconds);
    total += seconds;
  }
  if (total == 0) return 0;
  std::sort(rtt.begin(), rtt.end());
  const double target = q * static_cast<double>(total);
  std::uint64_t seen = 0;
  for (const auto& [ms, seconds] : rtt) {
    seen += seconds;
    if (static_cast<double>(seen) >= target) return ms;
  }
  return rtt.back().first;
}

double StabilityComponent(double u, const Policy& p) {
  if (u <= 0) return 100;
  const double lg = std::log10(p.unavailability_good);
  const double lp = std::log10(p.unavailability_poor);
  return 100.0 * std::clamp((lp - std::log10(u)) / (lp - lg), 0.0, 1.0);
}

TechScore ScoreWindow(const WindowRollup& w, const Policy& p) {
  TechScore t;
  t.boot.weight = p.weight_boot;
  t.latency.weight = p.weight_latency;
  t.peripherals.weight = p.weight_peripherals;
  t.stability.weight = p.weight_stability;

  if (!w.boot_ms.empty()) {
    t.boot.score = BootComponent(w.boot_ms, p);
    t.boot.detail = Fmt("%.0f boots, p50 %.1f s, p95 %.1f s", double(w.boot_ms.TotalWeight()),
                        w.boot_ms.Quantile(0.5) / 1000, w.boot_ms.Quantile(0.95) / 1000);
  }
  if (!w.latency.empty()) {
    t.latency.score = LatencyComponent(w.latency, p);
    t.latency.detail = Fmt("%.0f session windows, window RTT p95: median %.0f ms, p95 %.0f ms",
                           double(w.latency_windows), LatencyRttQuantileMs(w.latency, 0.5),
                           LatencyRttQuantileMs(w.latency, 0.95));
  }
  const std::int64_t devices = w.peripherals_working + w.peripherals_failed;
  if (devices > 0) {
    t.peripherals.score = 100.0 * double(w.peripherals_working) / double(devices);
    t.peripherals.detail =
        Fmt("%.0f of %.0f device instances working, %.0f reconnects", double(w.peripherals_working),
            double(devices), double(w.peripheral_reconnects));
  }
  if (w.session_s > 0) {
    const double u = (w.downtime_ms / 1000.0) / w.session_s;
    t.stability.score = StabilityComponent(u, p);
    t.stability.detail = Fmt("unavailability %.4f%% over %.0f session hours, %.0f disconnects",
                             100 * u, w.session_s / 3600, double(w.disconnects)) +
                         Fmt(", %.0f stalls, %.0f crashes", double(w.stalls), double(w.crashes));
  }

  double weight_with_data = 0;
  double weighted = 0;
  const double weight_total =
      p.weight_boot + p.weight_latency + p.weight_peripherals + p.weight_stability;
  std::vector<std::pair<double, std::string>> losses;  // points lost, driver text
  auto add = [&](const Component& c, const char* name) {
    if (!c.score) return;
    weight_with_data += c.weight;
    weighted += c.weight * *c.score;
    if (*c.score < 100) {
      losses.emplace_back(c.weight * (100 - *c.score),
                          std::string(name) + " " + Fmt("%.0f", *c.score) + ": " + c.detail);
    }
  };
  add(t.latency, "latency");
  add(t.boot, "boot");
  add(t.peripherals, "peripherals");
  add(t.stability, "stability");

  t.coverage = weight_total > 0 ? weight_with_data / weight_total : 0;
  if (weight_with_data > 0) {
    t.tps = weighted / weight_with_data;
    t.band = BandOf(*t.tps);
  }
  std::stable_sort(losses.begin(), losses.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& l : losses) t.drivers.push_back(std::move(l.second));
  return t;
}

namespace {

struct Part {
  const EndpointGroup* group;
  double weight;  // boots, session seconds, or downtime
  double loss;    // weight × lost points per unit: the group's part of the loss
};

std::string BootFigures(const SparseHistogram& h) {
  return Fmt("p95 %.1f s", h.Quantile(0.95) / 1000);
}
std::string LatencyFigures(const SparseHistogram& h) {
  return Fmt("RTT p95 %.0f ms (median window)", LatencyRttQuantileMs(h, 0.5));
}
std::string StabilityFigures(double downtime_ms, double session_s) {
  return session_s > 0 ? Fmt("unavailability %.3f%%", 100 * downtime_ms / 1000 / session_s)
                       : std::string("downtime with no session time");
}

}  // namespace

void AttributeLosses(TechScore& t, const std::vector<EndpointGroup>& groups, const Policy& p) {
  // A group is named when its share of the loss exceeds its share of the
  // boots (seconds, session time) by at least this much.
  constexpr double kMinExcess = 0.10;
  enum Which { kBoot, kLatency, kStability };
  for (Which which : {kBoot, kLatency, kStability}) {
    Component& c = which == kBoot ? t.boot : which == kLatency ? t.latency : t.stability;
    c.source.reset();
    if (!c.score || *c.score >= 100) continue;
    std::optional<LossSource> best;
    double best_excess = 0;
    for (const char* dim : {"site", "pool", "protocol"}) {
      if (which != kLatency && std::string_view(dim) == "protocol") continue;
      std::vector<Part> parts;
      double total = 0;
      double total_weight = 0;
      for (const EndpointGroup& g : groups) {
        if (g.dimension != dim) continue;
        const WindowRollup& w = g.window;
        Part part{&g, 0, 0};
        if (which == kBoot && !w.boot_ms.empty()) {
          part.weight = static_cast<double>(w.boot_ms.TotalWeight());
          part.loss = part.weight * (100 - BootComponent(w.boot_ms, p));
        } else if (which == kLatency && !w.latency.empty()) {
          part.weight = static_cast<double>(w.latency.TotalWeight());
          part.loss = part.weight * (100 - LatencyComponent(w.latency, p));
        } else if (which == kStability && w.session_s > 0) {
          part.weight = w.session_s;
          part.loss = w.downtime_ms;
        } else {
          continue;
        }
        total += part.loss;
        total_weight += part.weight;
        parts.push_back(part);
      }
      if (parts.size() < 2 || total <= 0 || total_weight <= 0) continue;
      // The group that costs most beyond its part of the boots (seconds,
      // session time): a loss spread evenly over the groups has no source.
      auto excess = [&](const Part& x) { return x.loss / total - x.weight / total_weight; };
      const auto top =
          std::max_element(parts.begin(), parts.end(),
                           [&](const Part& x, const Part& y) { return excess(x) < excess(y); });
      if (excess(*top) < kMinExcess || (best && excess(*top) <= best_excess)) continue;
      best_excess = excess(*top);
      const double share = top->loss / total;
      LossSource src{.dimension = dim,
                     .name = top->group->name,
                     .endpoints = top->group->endpoints,
                     .share = share,
                     .figures = {},
                     .rest_endpoints = 0,
                     .rest_figures = {}};
      WindowRollup rest;
      for (const Part& part : parts) {
        if (&part == &*top) continue;
        src.rest_endpoints += part.group->endpoints;
        rest.boot_ms.Merge(part.group->window.boot_ms);
        rest.latency.Merge(part.group->window.latency);
        rest.downtime_ms += part.group->window.downtime_ms;
        rest.session_s += part.group->window.session_s;
      }
      const WindowRollup& mine = top->group->window;
      switch (which) {
        case kBoot:
          src.figures = BootFigures(mine.boot_ms);
          src.rest_figures = BootFigures(rest.boot_ms);
          break;
        case kLatency:
          src.figures = LatencyFigures(mine.latency);
          src.rest_figures = LatencyFigures(rest.latency);
          break;
        case kStability:
          src.figures = StabilityFigures(mine.downtime_ms, mine.session_s);
          src.rest_figures = StabilityFigures(rest.downtime_ms, rest.session_s);
          break;
      }
      best = std::move(src);
    }
    c.source = std::move(best);
  }
}

}  // namespace deskpulse::scoring
