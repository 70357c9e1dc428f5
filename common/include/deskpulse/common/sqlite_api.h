#pragma once

#include <sqlite3.h>

namespace deskpulse {

/// The few SQLite entry points the catalog reader needs, as function pointers,
/// so one reader serves the collector (SQLite linked in) and the agent (which
/// loads libsqlite3 at run time only when a catalog is installed, keeping its
/// footprint and its libc-only link).
struct SqliteApi {
  decltype(&::sqlite3_open_v2) open_v2 = nullptr;
  decltype(&::sqlite3_close_v2) close_v2 = nullptr;
  decltype(&::sqlite3_errmsg) errmsg = nullptr;
  decltype(&::sqlite3_prepare_v2) prepare_v2 = nullptr;
  decltype(&::sqlite3_finalize) finalize = nullptr;
  decltype(&::sqlite3_reset) reset = nullptr;
  decltype(&::sqlite3_bind_int64) bind_int64 = nullptr;
  decltype(&::sqlite3_bind_text) bind_text = nullptr;
  decltype(&::sqlite3_step) step = nullptr;
  decltype(&::sqlite3_column_int64) column_int64 = nullptr;
  decltype(&::sqlite3_column_text) column_text = nullptr;
  decltype(&::sqlite3_column_type) column_type = nullptr;
};

/// The API of the SQLite linked into this program (library `deskpulse_sqlite_linked`).
const SqliteApi& LinkedSqliteApi();

}  // namespace deskpulse
