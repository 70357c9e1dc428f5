#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/probe.h"

namespace deskpulse::agent {

/// How the agent's previous run ended, read at start from the state directory.
struct RunHistory {
  std::string previous_boot_id;            // empty on the first run on this machine
  bool previous_clean = true;              // it stopped on SIGTERM and wrote its marker
  std::int64_t previous_seen_unix_ms = 0;  // its last heartbeat
  std::uint64_t restarts = 0;              // starts after the first on this machine
};

/// Uptime, crash signs and the agent's own restarts.
///  - an unclean end of the previous boot (the agent's stop marker is missing
///    and the boot id changed): an OS crash, power loss or hard reset;
///  - the same boot id without the marker: the agent itself crashed;
///  - journal COREDUMP records of VDI clients and of the agent.
class StabilityProbe : public Probe {
 public:
  StabilityProbe(StabilityConfig config, const std::string& state_dir, RunHistory history);
  std::string_view name() const override { return "stability"; }
  void Collect(const CycleContext& ctx, deskpulse::v1::Report& report) override;

 private:
  void CollectCoredumps(deskpulse::v1::Report& report);

  StabilityConfig config_;
  std::string cursor_file_;
  RunHistory history_;
  std::string journal_unavailable_;  // reported once, not every cycle
  bool journal_reported_ = false;
  bool journal_positioned_ = false;
};

}  // namespace deskpulse::agent
