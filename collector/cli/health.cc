// deskpulse-collector health: the vendor's table of customers by loyalty
// health and churn risk (docs/scoring.md). Records today's snapshot.
#include "collector/reports/health.h"

#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"

namespace deskpulse::collector::cli {
namespace {

struct HealthArgs {
  std::string db;
  bool json = false;
  bool no_record = false;
  int window_days = 30;
  int survey_max_age_days = 180;
  int review_max_age_days = 365;
};

int Health(const HealthArgs& a) {
  auto store = OpenForCommand(a.db, a.no_record ? StoreUse::kRead : StoreUse::kWrite);
  if (!store.ok()) return Fail(store.status());
  HealthOptions options;
  options.policy.window_days = a.window_days;
  options.loyalty.survey_max_age_days = a.survey_max_age_days;
  options.loyalty.review_max_age_days = a.review_max_age_days;
  options.record = !a.no_record;
  const std::int64_t now = NowMs();
  auto book = AssessAllCustomers(**store, options, now);
  if (!book.ok()) return Fail(book.status());
  if (a.json) {
    std::cout << HealthToJson(*book, options, now).dump(2) << "\n";
  } else {
    std::cout << FormatHealthTable(*book);
  }
  return kExitOk;
}

}  // namespace

void AddHealth(CLI::App& app, Run* run) {
  auto args = std::make_shared<HealthArgs>();
  auto* sub = app.add_subcommand(
      "health", "Print each customer's loyalty health, churn risk and top driver, at-risk first");
  AddDbOption(sub, &args->db)->required();
  sub->add_flag("--json", args->json, "JSON instead of a table, with every factor and driver");
  sub->add_flag("--no-record", args->no_record,
                "do not store today's snapshot (opens the store read-only)");
  sub->add_option("--window-days", args->window_days, "days of telemetry scored (default 30)")
      ->check(WholeNumber(1, 400));
  sub->add_option("--survey-max-age-days", args->survey_max_age_days,
                  "older surveys count as missing (default 180)")
      ->check(WholeNumber(1, 3650));
  sub->add_option("--review-max-age-days", args->review_max_age_days,
                  "older business reviews count as missing (default 365)")
      ->check(WholeNumber(1, 3650));
  sub->callback([run, args] { *run = [args] { return Health(*args); }; });
}

}  // namespace deskpulse::collector::cli
