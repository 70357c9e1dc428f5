#include "agent/platform/libsqlite.h"

namespace deskpulse::agent {

Result<SqliteLibrary> SqliteLibrary::Load() {
  DP_ASSIGN_OR_RETURN(auto opened, DynamicLibrary::Open("libsqlite3.so.0"));
  auto lib = std::make_unique<DynamicLibrary>(std::move(opened));
  auto a = std::make_unique<SqliteApi>();
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_open_v2", &a->open_v2));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_close_v2", &a->close_v2));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_errmsg", &a->errmsg));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_prepare_v2", &a->prepare_v2));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_finalize", &a->finalize));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_reset", &a->reset));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_bind_int64", &a->bind_int64));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_bind_text", &a->bind_text));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_step", &a->step));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_column_int64", &a->column_int64));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_column_text", &a->column_text));
  DP_RETURN_IF_ERROR(lib->Bind("sqlite3_column_type", &a->column_type));
  return SqliteLibrary(std::move(lib), std::move(a));
}

}  // namespace deskpulse::agent
