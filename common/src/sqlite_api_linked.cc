#include "deskpulse/common/sqlite_api.h"

namespace deskpulse {

const SqliteApi& LinkedSqliteApi() {
  static const SqliteApi kApi = [] {
    SqliteApi a;
    a.open_v2 = &::sqlite3_open_v2;
    a.close_v2 = &::sqlite3_close_v2;
    a.errmsg = &::sqlite3_errmsg;
    a.prepare_v2 = &::sqlite3_prepare_v2;
    a.finalize = &::sqlite3_finalize;
    a.reset = &::sqlite3_reset;
    a.bind_int64 = &::sqlite3_bind_int64;
    a.bind_text = &::sqlite3_bind_text;
    a.step = &::sqlite3_step;
    a.column_int64 = &::sqlite3_column_int64;
    a.column_text = &::sqlite3_column_text;
    a.column_type = &::sqlite3_column_type;
    return a;
  }();
  return kApi;
}

}  // namespace deskpulse
