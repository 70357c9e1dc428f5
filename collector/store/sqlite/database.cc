#include "collector/store/sqlite/database.h"

namespace deskpulse::collector {

namespace {
Status SqlError(sqlite3* db, std::string_view what) {
  const int code = sqlite3_extended_errcode(db);
  Code c = Code::kIo;
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) c = Code::kDataLoss;
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) c = Code::kUnavailable;
  if (code == SQLITE_FULL) c = Code::kResourceExhausted;
  if (code == SQLITE_CONSTRAINT || (code & 0xff) == SQLITE_CONSTRAINT) c = Code::kAlreadyExists;
  return Status(c, std::string(what) + ": " + sqlite3_errmsg(db));
}
}  // namespace

Statement& Statement::operator=(Statement&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(stmt_);
    db_ = o.db_;
    stmt_ = o.stmt_;
    o.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, std::int64_t v) {
  sqlite3_bind_int64(stmt_, index, v);
  return *this;
}
Statement& Statement::Bind(int index, double v) {
  sqlite3_bind_double(stmt_, index, v);
  return *this;
}
Statement& Statement::Bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::BindBlob(int index, std::string_view blob) {
  sqlite3_bind_blob(stmt_, index, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Result<bool> Statement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s = SqlError(db_, std::string("step `") + sqlite3_sql(stmt_) + "`");
  sqlite3_reset(stmt_);
  return s;
}

Status Statement::Run() {
  for (;;) {
    auto r = Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
  }
  Reset();
  return Status::Ok();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string_view Statement::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  if (p == nullptr) return {};
  return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
}

std::string_view Statement::Blob(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  if (p == nullptr) return {};
  return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
}

namespace {
// A connection waiting for another's write (ingest's writer behind an import
// or the book's round) goes on within a millisecond of that commit, where
// SQLite's own busy timeout sleeps in steps growing to 100 ms; it gives up
// after about 5 s, as that timeout did.
int RetryEveryMillisecond(void*, int tries) {
  if (tries >= 5000) return 0;
  sqlite3_sleep(1);
  return 1;
}
}  // namespace

Result<std::unique_ptr<Database>> Database::Open(const std::string& path, bool read_only,
                                                 bool create) {
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY
                              : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0));
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status(read_only || !create ? Code::kNotFound : Code::kIo,
                  "cannot open database " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_handler(db, &RetryEveryMillisecond, nullptr);
  return std::unique_ptr<Database>(new Database(db, path));
}

Database::~Database() { sqlite3_close_v2(db_); }

Status Database::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Status st = SqlError(db_, "exec");
    sqlite3_free(err);
    return st;
  }
  return Status::Ok();
}

Result<Statement> Database::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt, nullptr) != SQLITE_OK) {
    return SqlError(db_, "prepare `" + std::string(sql) + "`");
  }
  return Statement(db_, stmt);
}

Result<Transaction> Transaction::Begin(Database* db, bool immediate) {
  DP_RETURN_IF_ERROR(db->Exec(immediate ? "BEGIN IMMEDIATE" : "BEGIN"));
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)db_->Exec("ROLLBACK");
}

Status Transaction::Commit() {
  Status s = db_->Exec("COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

}  // namespace deskpulse::collector
