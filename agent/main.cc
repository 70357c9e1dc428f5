// deskpulse-agent: measures how the desktop feels and streams reports to the collector.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

#include "agent/core/agent.h"
#include "agent/core/command_line.h"
#include "agent/core/config.h"
#include "agent/probes/boot/boot_probe.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"
#include "deskpulse/common/report_json.h"

namespace dp = deskpulse;
namespace ag = deskpulse::agent;

namespace {

using Command = ag::CommandLine::Command;

dp::Result<ag::AgentConfig> Load(const std::string& path) {
  if (path.empty()) return ag::ParseAgentConfig("", "(defaults)");
  return ag::LoadAgentConfig(path);
}

int Fail(const std::string& prefix, const dp::Status& s) {
  std::fprintf(stderr, "%s%s\n", prefix.c_str(), s.message().c_str());
  return dp::ExitCodeFor(s);
}

}  // namespace

static int Main(int argc, char** argv) {
  auto cl = ag::ParseCommandLine(std::vector<std::string>(argv + 1, argv + argc));
  if (!cl.ok()) {
    std::fprintf(stderr, "deskpulse-agent: %s (see deskpulse-agent --help)\n",
                 cl.status().message().c_str());
    return dp::kExitUsage;
  }
  switch (cl->command) {
    case Command::kHelp:
      std::fputs(ag::UsageText().c_str(), stdout);
      return dp::kExitOk;
    case Command::kVersion:
      std::printf("deskpulse-agent %s\n", DESKPULSE_VERSION);
      return dp::kExitOk;
    case Command::kValidate: {
      auto c = ag::LoadAgentConfig(cl->config_path);
      if (!c.ok()) return Fail("", c.status());
      std::printf("%s: OK\n", cl->config_path.c_str());
      return dp::kExitOk;
    }
    case Command::kMarkDesktopReady:
    case Command::kRun:
      break;
  }
  (void)dp::SetUpLogging("deskpulse-agent", "info", "");
  auto config = Load(cl->config_path);
  if (!config.ok()) return Fail("", config.status());
  if (cl->command == Command::kMarkDesktopReady) {
    const std::string dir = cl->mark_dir.empty() ? config->boot.mark_dir : cl->mark_dir;
    if (dp::Status s = ag::WriteDesktopMark(dir, config->stability.proc); !s.ok()) {
      return Fail("mark-desktop-ready: ", s);
    }
    return dp::kExitOk;
  }
  (void)dp::SetUpLogging("deskpulse-agent", config->log_level, "");

  if (!cl->once) {
    // Held until the daemon's handler is in place (Agent::Run): a stop that
    // arrives during start-up is then a clean stop, not a kill.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  }
  auto agent = ag::Agent::Create(std::move(*config), cl->once);
  if (!agent.ok()) {
    spdlog::error("{}", agent.status().message());
    return dp::ExitCodeFor(agent.status());
  }
  if (cl->once) {
    const auto report = (*agent)->CollectOnce();
    if (cl->print) std::printf("%s\n", deskpulse::ReportToJson(report).dump(2).c_str());
    return dp::kExitOk;
  }
  if (cl->print) {
    (*agent)->set_report_sink([](const dp::v1::Report& r) {
      std::printf("%s\n", deskpulse::ReportToJson(r).dump().c_str());
      std::fflush(stdout);
    });
  }
  return (*agent)->Run();
}

int main(int argc, char** argv) {
  return dp::GuardMain("deskpulse-agent", [&] { return Main(argc, argv); });
}
