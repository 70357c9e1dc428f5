#include <filesystem>
#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector::cli {
namespace {

struct CheckArgs {
  std::string db;
  bool quick = false;
  bool rollups = false;
};

// The rollups against a recomputation from the raw rows: equal as long as no
// raw rows have passed retention (a new store, a test, a migration check).
int CheckRollups(ReadStore& store, const std::string& name) {
  RollupAccumulator acc;
  std::int64_t reports = 0;
  const Status s = store.ForEachRawReport([&](const RawReport& r) {
    acc.AddReport(r.customer_id, r.endpoint_id, r.report);
    ++reports;
  });
  if (!s.ok()) return Fail(s);
  auto stored = store.LoadRollupRows();
  if (!stored.ok()) return Fail(stored.status());
  const auto diff = DiffRollups(acc.Expand(), std::move(*stored));
  if (diff.empty()) {
    std::cout << name << ": the rollups equal a recomputation from "
              << Counted(reports, "raw report") << "\n";
    return kExitOk;
  }
  std::cout << name << ": " << Counted(static_cast<std::int64_t>(diff.size()), "rollup row")
            << (diff.size() == 1 ? " differs" : " differ") << " from a recomputation from "
            << Counted(reports, "raw report")
            << " (expected once raw reports have passed retention)\n";
  for (std::size_t i = 0; i < diff.size() && i < 20; ++i) std::cout << "  " << diff[i] << "\n";
  return kExitDamaged;
}

int Check(const CheckArgs& a) {
  (void)SetUpLogging("collector", "off");
  const std::string name = RedactDb(a.db);
  std::error_code ec;
  if (!IsPostgresUri(a.db) && !std::filesystem::exists(a.db, ec)) {
    return Fail(NotFound("no store at " + a.db + NoStoreHint()));
  }
  auto store = OpenStore({.db = a.db, .read_only = true, .create_if_missing = false});
  if (!store.ok() && store.status().code() == Code::kNotFound) return Fail(store.status());
  if (!store.ok()) {
    std::cout << name << ": cannot be opened: " << store.status().message() << "\n";
    return kExitDamaged;
  }
  if (a.rollups) return CheckRollups(**store, name);
  auto report = (*store)->Check(!a.quick);
  if (!report.ok()) {
    std::cout << name << ": the check failed: " << report.status().message() << "\n";
    return kExitDamaged;
  }
  if (report->ok()) {
    std::cout << name << ": ok (" << (a.quick ? "quick check" : "full check") << "; "
              << Counted(report->rows_checked, "report row") << " checked)\n";
    return kExitOk;
  }
  std::cout << name << ": DAMAGED\n";
  for (const auto& p : report->problems) std::cout << "  " << p << "\n";
  if (report->more_problems > 0) std::cout << "  ... and " << report->more_problems << " more\n";
  if (report->full) {
    std::cout << report->damaged_rows << " of " << Counted(report->rows_checked, "report row")
              << (report->damaged_rows == 1 ? " is" : " are") << " damaged\n";
  }
  std::cout << "Restore the store from a backup. To keep collecting into it meanwhile, start "
               "serve with --allow-damaged: damaged rows are left out of scores.\n";
  return kExitDamaged;
}

}  // namespace

void AddCheck(CLI::App& app, Run* run) {
  auto args = std::make_shared<CheckArgs>();
  auto* ck = app.add_subcommand(
      "check",
      "Check the store for damage: the backend's own check, every report's checksum, "
      "rollups and watermarks; exit 0 when sound, 8 when damaged");
  AddDbOption(ck, &args->db)->required();
  ck->add_flag("--quick", args->quick,
               "only the backend's quick structural check (what serve runs at start)");
  ck->add_flag("--rollups", args->rollups,
               "compare the rollups with a recomputation from the raw reports (they differ "
               "once raw reports have passed retention)");
  ck->callback([run, args] { *run = [args] { return Check(*args); }; });
}

}  // namespace deskpulse::collector::cli
