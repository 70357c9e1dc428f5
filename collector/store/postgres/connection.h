#pragma once

// A thin RAII layer over libpq: one connection, text-format parameters and
// results, COPY FROM STDIN, and errors as Status naming the statement's
// purpose and the server's message (never the connection string).

#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::collector::pg {

/// One query's result rows.
class Rows {
 public:
  Rows() = default;
  explicit Rows(PGresult* r) : r_(r, PQclear) {}
  int size() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view Text(int row, int col) const;
  std::int64_t Int(int row, int col) const;
  double Double(int row, int col) const;
  /// A bytea column (hex output) decoded.
  std::string Bytes(int row, int col) const;

 private:
  std::shared_ptr<PGresult> r_;
};

/// Parameters in text format; std::nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string>>;

class Connection {
 public:
  /// Connects to `uri` (any libpq connection string); `name` is the redacted
  /// form used in messages.
  static Result<std::unique_ptr<Connection>> Open(const std::string& uri, std::string name);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Runs one or more statements without parameters.
  Status Exec(std::string_view sql);
  /// Runs one statement with text parameters; `what` names it in errors.
  Result<Rows> Query(const char* what, const std::string& sql, const Params& params = {});
  /// COPY ... FROM STDIN with `data` in COPY's text format.
  Status CopyIn(const char* what, const std::string& copy_sql, const std::string& data);
  /// SQLSTATE of the last failed statement ("" if none).
  const std::string& last_sqlstate() const { return last_sqlstate_; }
  /// Reconnects if the connection was lost (the server restarted).
  Status EnsureConnected();
  const std::string& name() const { return name_; }
  /// A handle that cancels the statement running on this connection.
  std::unique_ptr<PGcancel, void (*)(PGcancel*)> CancelHandle() const {
    return {PQgetCancel(conn_), PQfreeCancel};
  }

 private:
  Connection(PGconn* c, std::string uri, std::string name)
      : conn_(c), uri_(std::move(uri)), name_(std::move(name)) {}
  Status Fail(const char* what, PGresult* r);
  PGconn* conn_;
  std::string uri_;
  std::string name_;
  std::string last_sqlstate_;
};

/// Cancels whatever its connection is running once `deadline` passes, for as
/// long as it lives (PQcancel from a thread of its own, the one thing libpq
/// lets another thread do): a bound on work that must not hold up a stop.
class CancelAt {
 public:
  CancelAt(Connection& c, std::chrono::steady_clock::time_point deadline);
  ~CancelAt();
  CancelAt(const CancelAt&) = delete;
  CancelAt& operator=(const CancelAt&) = delete;
  /// Whether the deadline passed and the cancel was sent.
  bool fired() const;

 private:
  std::unique_ptr<PGcancel, void (*)(PGcancel*)> cancel_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

/// BEGIN on construction; ROLLBACK when destroyed without Commit().
class Transaction {
 public:
  static Result<Transaction> Begin(Connection* c);
  Transaction(Transaction&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Connection* c) : c_(c) {}
  Connection* c_;
};

/// Builders for parameters.
std::string Int(std::int64_t v);
/// bytea in hex input form.
std::string Bytea(std::string_view bytes);
/// A PostgreSQL array literal ({...}) of text elements, each quoted; NULL
/// elements as NULL. NUL bytes, which text cannot hold, are dropped.
std::string ArrayLiteral(const std::vector<std::optional<std::string>>& elements);
std::string IntArray(const std::vector<std::int64_t>& v);
/// One field of a COPY text-format row (escaped), or \N for NULL.
void AppendCopyField(std::string* row, std::string_view text);
void AppendCopyBytea(std::string* row, std::string_view bytes);

}  // namespace deskpulse::collector::pg
