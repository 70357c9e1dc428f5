#include "collector/reports/scores.h"

#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"

namespace deskpulse::collector::cli {
namespace {

struct ScoresArgs {
  std::string db;
  bool json = false;
  int window_days = 30;
};

int Scores(const ScoresArgs& a) {
  auto store = OpenForCommand(a.db, StoreUse::kRead);
  if (!store.ok()) return Fail(store.status());
  scoring::Policy policy;
  policy.window_days = a.window_days;
  const std::int64_t now = NowMs();
  auto scores = ScoreAllCustomers(**store, policy, now);
  if (!scores.ok()) return Fail(scores.status());
  if (a.json) {
    const std::int64_t to = FloorTo(now, kDayMs) + kDayMs;
    std::cout << ScoresToJson(*scores, policy, to - a.window_days * kDayMs, to).dump(2) << "\n";
  } else {
    std::cout << FormatScoreTable(*scores);
  }
  return kExitOk;
}

}  // namespace

void AddScores(CLI::App& app, Run* run) {
  auto args = std::make_shared<ScoresArgs>();
  auto* sc = app.add_subcommand("scores", "Print each customer's technical performance score");
  AddDbOption(sc, &args->db)->required();
  sc->add_flag("--json", args->json, "JSON instead of a table");
  sc->add_option("--window-days", args->window_days, "days scored, ending today (default 30)")
      ->check(WholeNumber(1, 400));
  sc->callback([run, args] { *run = [args] { return Scores(*args); }; });
}

}  // namespace deskpulse::collector::cli
