#pragma once

// deskpulse-collector's subcommands, one file each. Each Add* registers its
// options on `app` and, when its subcommand is the one parsed, sets `run`.

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "collector/store/store.h"

namespace deskpulse::collector::cli {

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

/// Opens the store `db` names for a one-shot command, logging at warn.
Result<std::unique_ptr<Store>> OpenForCommand(const std::string& db, bool read_only);

/// Logs `s` and returns its exit code.
int Fail(const Status& s);

std::int64_t NowMs();

}  // namespace deskpulse::collector::cli
