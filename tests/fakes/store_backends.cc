#include "tests/fakes/store_backends.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>

#include "collector/store/sqlite/database.h"

namespace deskpulse::testing {
namespace {

void RunPg(const std::string& uri, const std::string& sql) {
  PGconn* c = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
      << sql << ": " << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
}

std::int64_t QueryPgInt(const std::string& uri, const std::string& sql) {
  PGconn* c = PQconnectdb(uri.c_str());
  std::int64_t out = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      out = std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10);
    } else {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    }
    PQclear(r);
  } else {
    ADD_FAILURE() << PQerrorMessage(c);
  }
  PQfinish(c);
  return out;
}

class SqliteBackend final : public StoreBackend {
 public:
  std::string name() const override { return "sqlite"; }
  std::string db() const override { return dir_.File("store.db"); }
  void FailReportInserts(bool fail) override {
    Sql(fail ? "CREATE TRIGGER fail_reports BEFORE INSERT ON reports BEGIN SELECT "
               "RAISE(ABORT, 'injected failure'); END"
             : "DROP TRIGGER fail_reports");
  }
  void SetWatermark(std::int64_t stream_id, std::int64_t seq) override {
    Sql("UPDATE streams SET last_seq=" + std::to_string(seq) +
        " WHERE stream_id=" + std::to_string(stream_id));
  }
  void Sql(const std::string& sql) override {
    auto conn = collector::Database::Open(db(), false);
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE((*conn)->Exec("PRAGMA busy_timeout=5000").ok());
    const Status s = (*conn)->Exec(sql);
    ASSERT_TRUE(s.ok()) << sql << ": " << s.ToString();
  }
  std::int64_t QueryInt(const std::string& sql) override {
    auto conn = collector::Database::Open(db(), true);
    if (!conn.ok()) return -1;
    auto st = (*conn)->Prepare(sql);
    if (!st.ok()) {
      ADD_FAILURE() << sql << ": " << st.status().ToString();
      return -1;
    }
    auto row = st->Step();
    return row.ok() && *row ? st->Int(0) : -1;
  }

 private:
  TempDir dir_;
};

class PostgresBackend final : public StoreBackend {
 public:
  PostgresBackend() : db_(NewTestDatabase()) {}
  std::string name() const override { return "postgresql"; }
  std::string db() const override { return db_; }
  void FailReportInserts(bool fail) override {
    Sql(fail ? "CREATE FUNCTION fail_reports() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "RAISE EXCEPTION 'injected failure'; END $$; CREATE TRIGGER fail_reports BEFORE "
               "INSERT ON reports FOR EACH ROW EXECUTE FUNCTION fail_reports()"
             : "DROP TRIGGER fail_reports ON reports; DROP FUNCTION fail_reports()");
  }
  void SetWatermark(std::int64_t stream_id, std::int64_t seq) override {
    Sql("UPDATE streams SET last_seq=" + std::to_string(seq) +
        " WHERE stream_id=" + std::to_string(stream_id));
  }
  void Sql(const std::string& sql) override { RunPg(db_, sql); }
  std::int64_t QueryInt(const std::string& sql) override { return QueryPgInt(db_, sql); }

 private:
  std::string db_;
};

}  // namespace

std::string TestClusterUri() {
  const char* state = std::getenv("DESKPULSE_TEST_PG");
  if (state == nullptr) return {};
  std::ifstream f(std::string(state) + "/uri");
  std::string uri;
  std::getline(f, uri);
  return uri;
}

std::string NewTestDatabase() {
  const std::string admin = TestClusterUri();
  if (admin.empty()) {
    ADD_FAILURE() << "no PostgreSQL test cluster: run the tests with ctest (fixture \"suite\"), or "
                     "start one with tests/fakes/pg_cluster.sh start DIR and set "
                     "DESKPULSE_TEST_PG=DIR";
    return "postgresql://invalid";
  }
  static std::atomic<int> counter{0};
  const std::string name = "dp_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  RunPg(admin, "DROP DATABASE IF EXISTS " + name);
  RunPg(admin, "CREATE DATABASE " + name);
  const std::size_t slash = admin.rfind('/');
  return admin.substr(0, slash + 1) + name;
}

std::unique_ptr<StoreBackend> MakeSqliteBackend() { return std::make_unique<SqliteBackend>(); }
std::unique_ptr<StoreBackend> MakePostgresBackend() { return std::make_unique<PostgresBackend>(); }
std::unique_ptr<StoreBackend> MakeBackend(const std::string& name) {
  if (name == "sqlite") return MakeSqliteBackend();
  return MakePostgresBackend();
}

}  // namespace deskpulse::testing
