#pragma once

#include <asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "deskpulse/v1/report.pb.h"

namespace deskpulse::agent {

/// What the scheduler tells a probe about the cycle it is collecting for.
struct CycleContext {
  std::int64_t now_unix_ms = 0;
  std::uint32_t window_s = 0;  // the collection interval this report covers
  bool first_cycle = false;
};

/// A probe only measures (Telegraf's `Gather`). The scheduler owns timing and
/// self-stats; the uplink owns batching, backoff and the spool.
class Probe {
 public:
  virtual ~Probe() = default;
  virtual std::string_view name() const = 0;
  /// Begin listening to event sources (netlink groups, sampling timers) on
  /// `executor`. Called once, before the first cycle; never by `--once`.
  virtual void Start(const asio::any_io_executor& executor) { (void)executor; }
  /// Add this cycle's measurements to `report`. What cannot be measured goes
  /// to `report.unavailable` with the reason: failure is data.
  virtual void Collect(const CycleContext& ctx, deskpulse::v1::Report& report) = 0;
};

/// Record that `measurement` could not be taken, and why.
inline void AddUnavailable(deskpulse::v1::Report& report, std::string_view measurement,
                           std::string reason) {
  auto* u = report.add_unavailable();
  u->set_measurement(std::string(measurement));
  u->set_reason(std::move(reason));
}

}  // namespace deskpulse::agent
