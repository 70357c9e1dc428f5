#include "collector/store/postgres/connection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "deskpulse/common/hex.h"

namespace deskpulse::collector::pg {

std::string_view Rows::Text(int row, int col) const {
  return {PQgetvalue(r_.get(), row, col),
          static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
}

std::int64_t Rows::Int(int row, int col) const {
  return std::strtoll(PQgetvalue(r_.get(), row, col), nullptr, 10);
}

double Rows::Double(int row, int col) const {
  return std::strtod(PQgetvalue(r_.get(), row, col), nullptr);
}

std::string Rows::Bytes(int row, int col) const {
  std::string_view t = Text(row, col);
  if (t.starts_with("\\x")) t.remove_prefix(2);
  std::string out;
  if (!HexDecode(t, &out)) return {};
  return out;
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& uri, std::string name) {
  PGconn* c = PQconnectdb(uri.c_str());
  if (c == nullptr) return Status(Code::kUnavailable, name + ": out of memory connecting");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = PQerrorMessage(c);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    PQfinish(c);
    return Status(Code::kUnavailable, name + ": cannot connect: " + why);
  }
  std::unique_ptr<Connection> conn(new Connection(c, uri, std::move(name)));
  // Times in the schema are epoch milliseconds; keep the session's own
  // settings from changing what the SQL means.
  DP_RETURN_IF_ERROR(
      conn->Exec("SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET jit = off"));
  return conn;
}

Connection::~Connection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Status Connection::EnsureConnected() {
  if (PQstatus(conn_) == CONNECTION_OK) return Status::Ok();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn_);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return Status(Code::kUnavailable, name_ + ": connection lost: " + why);
  }
  return Exec("SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET jit = off");
}

CancelAt::CancelAt(Connection& c, std::chrono::steady_clock::time_point deadline)
    : cancel_(nullptr, PQfreeCancel) {
  if (deadline == std::chrono::steady_clock::time_point::max()) return;
  cancel_ = c.CancelHandle();
  if (!cancel_) return;
  thread_ = std::thread([this, deadline] {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, deadline, [&] { return done_; })) return;
    char why[256];
    fired_ = PQcancel(cancel_.get(), why, sizeof why) == 1;
  });
}

CancelAt::~CancelAt() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool CancelAt::fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

Status Connection::Fail(const char* what, PGresult* r) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  last_sqlstate_ = state ? state : "";
  std::string why = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
  if (why.empty()) why = PQerrorMessage(conn_);
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  if (r) PQclear(r);
  const Code code = PQstatus(conn_) != CONNECTION_OK ? Code::kUnavailable : Code::kIo;
  return Status(code, fmt::format("{}: {}: {}", name_, what, why));
}

Status Connection::Exec(std::string_view sql) {
  const std::string s(sql);
  PGresult* r = PQexec(conn_, s.c_str());
  const auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail("statement", r);
  PQclear(r);
  return Status::Ok();
}

Result<Rows> Connection::Query(const char* what, const std::string& sql, const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PGresult* r = PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  const auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(what, r);
  return Rows(r);
}

Status Connection::CopyIn(const char* what, const std::string& copy_sql, const std::string& data) {
  PGresult* r = PQexec(conn_, copy_sql.c_str());
  if (PQresultStatus(r) != PGRES_COPY_IN) return Fail(what, r);
  PQclear(r);
  constexpr std::size_t kChunk = 1 << 20;
  for (std::size_t off = 0; off < data.size(); off += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - off);
    if (PQputCopyData(conn_, data.data() + off, static_cast<int>(n)) != 1) {
      return Fail(what, nullptr);
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return Fail(what, nullptr);
  r = PQgetResult(conn_);
  const auto st = PQresultStatus(r);
  Status out = st == PGRES_COMMAND_OK ? Status::Ok() : Fail(what, r);
  if (st == PGRES_COMMAND_OK) PQclear(r);
  while ((r = PQgetResult(conn_)) != nullptr) PQclear(r);
  return out;
}

Result<Transaction> Transaction::Begin(Connection* c) {
  DP_RETURN_IF_ERROR(c->EnsureConnected());
  DP_RETURN_IF_ERROR(c->Exec("BEGIN"));
  return Transaction(c);
}

Transaction::~Transaction() {
  if (c_ != nullptr) (void)c_->Exec("ROLLBACK");
}

Status Transaction::Commit() {
  Connection* c = c_;
  c_ = nullptr;
  return c->Exec("COMMIT");
}

std::string Int(std::int64_t v) { return std::to_string(v); }

std::string Bytea(std::string_view bytes) {
  return "\\x" + HexEncode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

std::string ArrayLiteral(const std::vector<std::optional<std::string>>& elements) {
  std::string out = "{";
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (i > 0) out += ',';
    if (!elements[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char ch : *elements[i]) {
      if (ch == '\0') continue;
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string IntArray(const std::vector<std::int64_t>& v) {
  std::string out = "{";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(v[i]);
  }
  out += '}';
  return out;
}

void AppendCopyField(std::string* row, std::string_view text) {
  for (char ch : text) {
    switch (ch) {
      case '\\':
        *row += "\\\\";
        break;
      case '\t':
        *row += "\\t";
        break;
      case '\n':
        *row += "\\n";
        break;
      case '\r':
        *row += "\\r";
        break;
      case '\0':
        break;
      default:
        *row += ch;
    }
  }
}

void AppendCopyBytea(std::string* row, std::string_view bytes) {
  // bytea's hex input form, its backslash escaped for COPY.
  *row += "\\\\x";
  *row += HexEncode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

}  // namespace deskpulse::collector::pg
