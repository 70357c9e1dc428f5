#include "collector/reports/peripherals.h"

#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/catalog.h"
#include "deskpulse/common/exit_codes.h"

namespace deskpulse::collector::cli {
namespace {

struct PeripheralsArgs {
  std::string db;
  std::string customer;
  std::string catalog;
  bool json = false;
  int window_days = 30;
};

int Peripherals(const PeripheralsArgs& a) {
  auto store = OpenForCommand(a.db, StoreUse::kRead);
  if (!store.ok()) return Fail(store.status());
  auto catalog = OpenCollectorCatalog(a.catalog);
  if (!catalog.ok()) return Fail(catalog.status());
  scoring::Policy policy;
  policy.window_days = a.window_days;
  auto report =
      AnalysePeripherals(**store, a.customer, policy, NowMs(), *catalog ? &**catalog : nullptr);
  if (!report.ok()) return Fail(report.status());
  if (a.json) {
    std::cout << PeripheralsToJson(*report).dump(2, ' ', false,
                                                 nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << FormatPeripherals(*report);
  }
  return kExitOk;
}

}  // namespace

void AddPeripherals(CLI::App& app, Run* run) {
  auto args = std::make_shared<PeripheralsArgs>();
  auto* pe = app.add_subcommand(
      "peripherals", "A customer's peripheral compatibility: failing device models, ranked");
  AddDbOption(pe, &args->db)->required();
  pe->add_option("--customer", args->customer, "customer name")->required();
  pe->add_option("--catalog", args->catalog,
                 std::string("catalog for devices that arrive without a verdict (default ") +
                     catalog::kDefaultPath + ")");
  pe->add_flag("--json", args->json, "JSON instead of a table");
  pe->add_option("--window-days", args->window_days, "days analysed, ending today (default 30)")
      ->check(WholeNumber(1, 400));
  pe->callback([run, args] { *run = [args] { return Peripherals(*args); }; });
}

}  // namespace deskpulse::collector::cli
