#pragma once

#include <memory>
#include <vector>

#include "agent/core/config.h"
#include "agent/probes/probe.h"
#include "agent/probes/stability/stability_probe.h"

namespace deskpulse::agent {

/// The built-in probes, in collection order: one explicit list, no
/// self-registration. A probe disabled in the config is left out.
/// `state_dir` empty: probes keep no state (`--once`).
std::vector<std::unique_ptr<Probe>> BuiltinProbes(const AgentConfig& config,
                                                  const std::string& state_dir,
                                                  const RunHistory& history);

}  // namespace deskpulse::agent
