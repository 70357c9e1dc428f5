#include <chrono>
#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::cli {

CLI::Option* AddDbOption(CLI::App* sub, std::string* db) {
  return sub->add_option("--db", *db,
                         "the store: an SQLite file, or a postgresql:// URI (give its password "
                         "in PGPASSWORD or ~/.pgpass, not in the URI)");
}

Result<std::unique_ptr<Store>> OpenForCommand(const std::string& db, StoreUse use) {
  (void)SetUpLogging("collector", "warn");
  return OpenStore({.db = db,
                    .read_only = use == StoreUse::kRead,
                    .create_if_missing = use == StoreUse::kCreate});
}

namespace {
std::string& CommandNameSlot() {
  static std::string name = "deskpulse-collector";
  return name;
}
}  // namespace

void SetCommandName(std::string name) { CommandNameSlot() = std::move(name); }

const std::string& CommandName() { return CommandNameSlot(); }

int Fail(const Status& s) {
  // Straight to standard error, whatever the log level: a one-shot command
  // never fails without a word.
  std::cerr << CommandName() << ": " << s.message() << "\n";
  return ExitCodeFor(s);
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace deskpulse::collector::cli
