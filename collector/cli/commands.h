#pragma once

// deskpulse-collector's subcommands, one file each. Each Add* registers its
// options on `app` and, when its subcommand is the one parsed, sets `run`.

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "collector/store/store.h"
#include "deskpulse/common/cli.h"

namespace deskpulse::collector::cli {

using ::deskpulse::cli::Number;
using ::deskpulse::cli::OneOf;
using ::deskpulse::cli::WholeNumber;

using Run = std::function<int()>;

void AddServe(CLI::App& app, Run* run);
void AddToken(CLI::App& app, Run* run);
void AddScores(CLI::App& app, Run* run);
void AddPeripherals(CLI::App& app, Run* run);
void AddCheck(CLI::App& app, Run* run);
void AddImport(CLI::App& app, Run* run);
void AddHealth(CLI::App& app, Run* run);
void AddApiToken(CLI::App& app, Run* run);
void AddOverride(CLI::App& app, Run* run);

/// The --db option every subcommand takes.
CLI::Option* AddDbOption(CLI::App* sub, std::string* db);

/// What a one-shot command does with its store.
enum class StoreUse {
  kRead,    // reads only: a read-only connection
  kWrite,   // writes into a store that must exist
  kCreate,  // writes, making the store when there is none (token create)
};

/// Opens the store `db` names for a one-shot command, logging at warn. Only
/// kCreate makes a store; the others refuse a missing one, naming it.
Result<std::unique_ptr<Store>> OpenForCommand(const std::string& db, StoreUse use);

/// The command as typed ("deskpulse-collector api-token revoke"), set once
/// the command line is parsed: what every message starts with.
void SetCommandName(std::string name);
const std::string& CommandName();

/// Says what went wrong on one line of standard error, "COMMAND: message",
/// and returns the exit code for `s`.
int Fail(const Status& s);

std::int64_t NowMs();

}  // namespace deskpulse::collector::cli
