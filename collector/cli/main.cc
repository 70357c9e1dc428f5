// deskpulse-collector: receives agent reports, stores them, scores customers.
// A dispatcher: each subcommand is in its own file (commands.h).
#include "collector/cli/commands.h"
#include "deskpulse/common/cli.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace dp = deskpulse;
namespace cli = deskpulse::collector::cli;

static int Main(int argc, char** argv) {
  CLI::App app{
      "deskpulse-collector: receives DeskPulse agent reports, stores them and scores "
      "each customer's technical performance.",
      "deskpulse-collector"};
  app.set_version_flag("--version", std::string("deskpulse-collector ") + DESKPULSE_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 internal error, 2 bad usage or config, 3 store error, 4 network "
      "error, 5 not found, 6 credential refused, 8 the store is damaged.");
  cli::Run run;
  cli::AddServe(app, &run);
  cli::AddToken(app, &run);
  cli::AddScores(app, &run);
  cli::AddPeripherals(app, &run);
  cli::AddCheck(app, &run);
  cli::AddImport(app, &run);
  cli::AddHealth(app, &run);
  cli::AddApiToken(app, &run);
  cli::AddOverride(app, &run);
  if (auto done = dp::cli::Parse(app, argc, argv)) return *done;
  cli::SetCommandName(dp::cli::CommandPath(app));
  return run ? run() : dp::kExitUsage;
}

int main(int argc, char** argv) {
  return dp::GuardMain("deskpulse-collector", [&] { return Main(argc, argv); });
}
