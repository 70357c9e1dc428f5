#pragma once

#include "deskpulse/common/sqlite_api.h"
#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// libsqlite3.so.0, loaded the first time a peripheral catalog is to be read
/// and kept for the agent's life. The agent itself links only libc.
Result<const SqliteApi*> LoadSqlite();

}  // namespace deskpulse::agent
