#pragma once

#include "collector/app/serve_config.h"

namespace deskpulse::collector {

/// `deskpulse-collector serve`: loads the configuration, opens the store,
/// starts the writer and the ingest server, runs until SIGTERM or SIGINT,
/// drains the connections, commits what they sent and logs the totals.
/// Returns the process exit code.
int RunServe(const ServeFlags& flags);

}  // namespace deskpulse::collector
