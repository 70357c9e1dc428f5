// deskpulse-agent: measures how the desktop feels and streams reports to the collector.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "agent/core/agent.h"
#include "agent/core/config.h"
#include "agent/core/report_json.h"
#include "agent/probes/boot/boot_probe.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace dp = deskpulse;
namespace ag = deskpulse::agent;

namespace {

dp::Result<ag::AgentConfig> Load(const std::string& path) {
  if (path.empty()) return ag::ParseAgentConfig("", "(defaults)");
  return ag::LoadAgentConfig(path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"deskpulse-agent: boot, session latency, peripheral and stability telemetry for "
               "Linux thin clients, VDI guests and hosts"};
  app.set_version_flag("--version", std::string("deskpulse-agent ") + DESKPULSE_VERSION);
  std::string config_path;
  bool once = false;
  bool print = false;
  app.add_option("--config", config_path, "TOML configuration file")->check(CLI::ExistingFile);
  app.add_flag("--once", once, "run one collection cycle and exit (no network, no state)");
  app.add_flag("--print", print, "with --once: print the report as JSON on stdout");

  auto* validate = app.add_subcommand("validate", "check a configuration file and exit");
  std::string validate_path;
  validate->add_option("--config", validate_path, "TOML configuration file")->required();

  auto* mark = app.add_subcommand(
      "mark-desktop-ready", "record that the desktop is ready for this boot (XDG autostart)");
  std::string mark_dir;
  mark->add_option("--mark-dir", mark_dir, "where marks go (default: probes.boot.mark_dir)");
  mark->add_option("--config", config_path, "TOML configuration file");

  CLI11_PARSE(app, argc, argv);
  (void)dp::SetUpLogging("deskpulse-agent", "info", "");

  if (validate->parsed()) {
    auto c = ag::LoadAgentConfig(validate_path);
    if (!c.ok()) {
      std::cerr << c.status().message() << "\n";
      return dp::ExitCodeFor(c.status());
    }
    std::cout << validate_path << ": OK\n";
    return dp::kExitOk;
  }

  auto config = Load(config_path);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return dp::ExitCodeFor(config.status());
  }
  if (mark->parsed()) {
    const std::string dir = mark_dir.empty() ? config->boot.mark_dir : mark_dir;
    if (dp::Status s = ag::WriteDesktopMark(dir, config->stability.proc); !s.ok()) {
      std::cerr << "mark-desktop-ready: " << s.message() << "\n";
      return dp::ExitCodeFor(s);
    }
    return dp::kExitOk;
  }
  if (print && !once) {
    std::cerr << "--print needs --once\n";
    return dp::kExitUsage;
  }
  if (config_path.empty() && !once) {
    std::cerr << "give --config FILE (or --once --print for a one-off look)\n";
    return dp::kExitUsage;
  }
  (void)dp::SetUpLogging("deskpulse-agent", config->log_level, "");

  if (!once) {
    // Held until the daemon's handler is in place (Agent::Run): a stop that
    // arrives during start-up is then a clean stop, not a kill.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  }
  auto agent = ag::Agent::Create(std::move(*config), once);
  if (!agent.ok()) {
    spdlog::error("{}", agent.status().message());
    return dp::ExitCodeFor(agent.status());
  }
  if (once) {
    const auto report = (*agent)->CollectOnce();
    if (print) std::cout << ag::ReportToJson(report).dump(2) << "\n";
    return dp::kExitOk;
  }
  return (*agent)->Run();
}
