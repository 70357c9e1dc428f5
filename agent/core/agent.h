#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/probe.h"
#include "agent/probes/stability/stability_probe.h"
#include "agent/spool/spool.h"
#include "agent/uplink/uplink.h"

namespace deskpulse::agent {

/// The scheduler: runs the probes every interval, adds self-health, appends
/// the report to the spool and wakes the uplink. It owns timing, the run
/// history (clean-stop marker, restarts) and de-duplication of repeated
/// "unavailable" reasons.
class Agent {
 public:
  /// `once`: no state is written and no network is used (`--once --print`).
  static Result<std::unique_ptr<Agent>> Create(AgentConfig config, bool once);
  ~Agent();

  /// One collection cycle, returned instead of spooled.
  deskpulse::v1::Report CollectOnce();
  /// Runs until SIGTERM or SIGINT; returns the process exit code.
  int Run();
  /// Also hands every report, as spooled, to `sink` (`--print`).
  void set_report_sink(std::function<void(const deskpulse::v1::Report&)> sink) {
    sink_ = std::move(sink);
  }

 private:
  explicit Agent(AgentConfig config);
  deskpulse::v1::Report Cycle(bool first);
  void ArmCycle();
  void WriteRunState(bool clean);
  /// Spools a cycle's report; makes it durable a second later unless the
  /// collector acknowledged it first.
  void SpoolReport(deskpulse::v1::Report& report);
  void Dedup(deskpulse::v1::Report& report);

  AgentConfig config_;
  bool once_ = false;
  std::string agent_id_;
  std::string boot_id_;
  RunHistory history_;
  std::function<void(const deskpulse::v1::Report&)> sink_;
  std::unique_ptr<Spool> spool_;
  // Before the probes and the uplink: destroyed after them, as their sockets
  // and timers belong to it.
  asio::io_context io_;
  std::vector<std::unique_ptr<Probe>> probes_;
  std::unique_ptr<asio::steady_timer> cycle_timer_;
  std::unique_ptr<asio::steady_timer> sync_timer_;
  int run_fd_ = -1;  // the heartbeat, rewritten in place each cycle
  bool sync_armed_ = false;
  std::unique_ptr<Uplink> uplink_;
  std::uint64_t last_cpu_us_ = 0;
  bool first_cycle_ = true;
  bool warned_clamp_ = false;
  // Unavailable (measurement → reason) last sent, and when, so an unchanged
  // reason travels once an hour rather than in every report.
  std::map<std::string, std::pair<std::string, std::int64_t>> unavailable_sent_;
};

}  // namespace deskpulse::agent
