#pragma once

#include <string>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// What `deskpulse-agent ARGS...` asks for.
struct CommandLine {
  enum class Command { kRun, kValidate, kMarkDesktopReady, kHelp, kVersion };
  Command command = Command::kRun;
  std::string config_path;  // --config (every command)
  std::string mark_dir;     // mark-desktop-ready --mark-dir
  bool once = false;        // --once
  bool print = false;       // --print: reports as JSON on stdout
};

/// Parses the agent's arguments (without argv[0]). Options take their value
/// as `--name VALUE` or `--name=VALUE`. Errors name the offending argument;
/// the caller prints them with a pointer to --help and exits with kExitUsage.
/// Only the daemon's own flags are accepted: the agent is a small program with
/// a fixed command line, so this stays a table, not a framework.
Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

/// The --help text.
std::string UsageText();

}  // namespace deskpulse::agent
