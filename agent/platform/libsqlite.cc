#include "agent/platform/libsqlite.h"

#include <memory>

#include "agent/platform/dynamic_library.h"

namespace deskpulse::agent {

namespace {

Result<SqliteApi> Bind(const DynamicLibrary& lib) {
  SqliteApi a;
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_open_v2", &a.open_v2));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_close_v2", &a.close_v2));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_errmsg", &a.errmsg));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_prepare_v2", &a.prepare_v2));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_finalize", &a.finalize));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_reset", &a.reset));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_bind_int64", &a.bind_int64));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_bind_text", &a.bind_text));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_step", &a.step));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_column_int64", &a.column_int64));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_column_text", &a.column_text));
  DP_RETURN_IF_ERROR(lib.Bind("sqlite3_column_type", &a.column_type));
  return a;
}

}  // namespace

Result<const SqliteApi*> LoadSqlite() {
  struct Loaded {
    std::unique_ptr<DynamicLibrary> lib;
    SqliteApi api;
    Status status;
  };
  static const Loaded kLoaded = [] {
    Loaded l;
    auto lib = DynamicLibrary::Open("libsqlite3.so.0");
    if (!lib.ok()) {
      l.status = lib.status();
      return l;
    }
    l.lib = std::make_unique<DynamicLibrary>(std::move(*lib));
    auto api = Bind(*l.lib);
    if (api.ok()) {
      l.api = *api;
    } else {
      l.status = api.status();
    }
    return l;
  }();
  if (!kLoaded.status.ok()) return kLoaded.status;
  return &kLoaded.api;
}

}  // namespace deskpulse::agent
