#include "agent/probes/builtin.h"

#include "agent/probes/boot/boot_probe.h"
#include "agent/probes/peripherals/peripherals_probe.h"
#include "agent/probes/session/session_probe.h"

namespace deskpulse::agent {

std::vector<std::unique_ptr<Probe>> BuiltinProbes(const AgentConfig& config,
                                                  const std::string& state_dir,
                                                  const RunHistory& history) {
  std::vector<std::unique_ptr<Probe>> probes;
  const bool once = state_dir.empty();
  if (config.boot.enabled) {
    probes.push_back(
        std::make_unique<BootProbe>(config.boot, state_dir, config.stability.proc, config.role));
  }
  if (config.session.enabled) {
    probes.push_back(std::make_unique<SessionProbe>(config.session, config.role));
  }
  if (config.peripherals.enabled) {
    probes.push_back(std::make_unique<PeripheralsProbe>(config.peripherals, once));
  }
  if (config.stability.enabled) {
    probes.push_back(std::make_unique<StabilityProbe>(config.stability, state_dir, history));
  }
  return probes;
}

}  // namespace deskpulse::agent
