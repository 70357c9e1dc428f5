#include "agent/core/command_line.h"

#include <sys/stat.h>

#include <cstddef>
#include <optional>
#include <string_view>

namespace deskpulse::agent {

namespace {

using Command = CommandLine::Command;

/// One option: its name, whether it takes a value, and where that goes.
struct Option {
  std::string_view name;
  std::string CommandLine::*value;  // null for a flag
  bool CommandLine::*flag;          // null for an option with a value
};

constexpr Option kRunOptions[] = {
    {"--config", &CommandLine::config_path, nullptr},
    {"--once", nullptr, &CommandLine::once},
    {"--print", nullptr, &CommandLine::print},
};
constexpr Option kValidateOptions[] = {
    {"--config", &CommandLine::config_path, nullptr},
};
constexpr Option kMarkOptions[] = {
    {"--mark-dir", &CommandLine::mark_dir, nullptr},
    {"--config", &CommandLine::config_path, nullptr},
};

template <std::size_t N>
const Option* Find(const Option (&options)[N], std::string_view name) {
  for (const Option& o : options) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

template <std::size_t N>
Status ParseOptions(const std::vector<std::string>& args, std::size_t i, const Option (&options)[N],
                    const char* where, CommandLine* out) {
  for (; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "--version") {
      out->command = arg == "--version" ? Command::kVersion : Command::kHelp;
      return Status::Ok();
    }
    std::optional<std::string> inline_value;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      inline_value = std::string(arg.substr(eq + 1));
      arg = arg.substr(0, eq);
    }
    const Option* o = Find(options, arg);
    if (o == nullptr) {
      return InvalidArgument(arg.starts_with("-")
                                 ? "unknown option " + std::string(arg) + where
                                 : "unexpected argument '" + args[i] + "'" + where);
    }
    if (o->flag != nullptr) {
      if (inline_value) return InvalidArgument(std::string(arg) + " takes no value");
      out->*(o->flag) = true;
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) return InvalidArgument(std::string(arg) + " needs a value");
      inline_value = args[++i];
    }
    if (inline_value->empty()) return InvalidArgument(std::string(arg) + " needs a value");
    out->*(o->value) = std::move(*inline_value);
  }
  return Status::Ok();
}

}  // namespace

Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine out;
  if (!args.empty() && args[0] == "validate") {
    out.command = Command::kValidate;
    DP_RETURN_IF_ERROR(ParseOptions(args, 1, kValidateOptions, " for validate", &out));
    if (out.command == Command::kValidate && out.config_path.empty()) {
      return InvalidArgument("validate needs --config FILE");
    }
    return out;
  }
  if (!args.empty() && args[0] == "mark-desktop-ready") {
    out.command = Command::kMarkDesktopReady;
    DP_RETURN_IF_ERROR(ParseOptions(args, 1, kMarkOptions, " for mark-desktop-ready", &out));
    return out;
  }
  DP_RETURN_IF_ERROR(ParseOptions(args, 0, kRunOptions, "", &out));
  if (out.command != Command::kRun) return out;
  if (!out.config_path.empty() && !IsFile(out.config_path)) {
    return InvalidArgument("--config: no such file: " + out.config_path);
  }
  if (out.config_path.empty() && !out.once) {
    return InvalidArgument("give --config FILE (or --once --print for a one-off look)");
  }
  return out;
}

std::string UsageText() {
  return "deskpulse-agent: boot, session latency, peripheral and stability telemetry for Linux\n"
         "thin clients, VDI guests and hosts\n"
         "\n"
         "Usage:\n"
         "  deskpulse-agent --config FILE            run the daemon\n"
         "  deskpulse-agent --once [--print] [--config FILE]\n"
         "                                           one collection cycle, no network or state;\n"
         "                                           --print writes the report as JSON\n"
         "  deskpulse-agent --config FILE --print    run the daemon; also write each report to\n"
         "                                           stdout as one line of JSON\n"
         "  deskpulse-agent validate --config FILE   check a configuration file and exit\n"
         "  deskpulse-agent mark-desktop-ready [--mark-dir DIR] [--config FILE]\n"
         "                                           record that the desktop is ready for this\n"
         "                                           boot (run from XDG autostart)\n"
         "  deskpulse-agent --version | --help\n"
         "\n"
         "Options take their value as --name VALUE or --name=VALUE.\n";
}

}  // namespace deskpulse::agent
