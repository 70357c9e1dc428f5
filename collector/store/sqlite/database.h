#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "deskpulse/common/status.h"

namespace deskpulse::collector {

/// A prepared statement. Bind*, Step and the column getters never throw;
/// errors come back as Status naming the SQL.
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Statement& operator=(Statement&& o) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, std::int64_t v);
  Statement& Bind(int index, double v);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view blob);
  Statement& BindNull(int index);

  /// Runs one step: true when a row is available, false when done.
  Result<bool> Step();
  /// Steps to completion, ignoring rows, and resets.
  Status Run();
  void Reset();

  std::int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string_view Text(int col) const;
  std::string_view Blob(int col) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

/// One SQLite connection.
class Database {
 public:
  /// Opens `path`; a missing file is created only when `create` (and not
  /// `read_only`).
  static Result<std::unique_ptr<Database>> Open(const std::string& path, bool read_only,
                                                bool create = true);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Status Exec(std::string_view sql);
  Result<Statement> Prepare(std::string_view sql);
  std::int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }
  /// Rows the last INSERT, UPDATE or DELETE changed.
  std::int64_t Changes() const { return sqlite3_changes64(db_); }
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

/// Commits on Commit(); rolls back when destroyed without it.
class Transaction {
 public:
  static Result<Transaction> Begin(Database* db, bool immediate = true);
  Transaction(Transaction&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

}  // namespace deskpulse::collector
