// What is particular to the PostgreSQL backend: the distribution rule read
// from the live schema, several collectors on one store, a killed collector's
// rollups, whole-partition retention, and passwords kept out of messages.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <thread>

#include "collector/store/postgres/pg_store.h"
#include "tests/collector/store_test_util.h"
#include "tests/fakes/store_backends.h"

namespace deskpulse::collector {
namespace {

using namespace testutil;

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = deskpulse::testing::MakePostgresBackend(); }
  std::unique_ptr<Store> Open(StoreOptions options = {}) {
    auto s = backend_->Open(std::move(options));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::int64_t Int(const std::string& sql) { return backend_->QueryInt(sql); }
  std::unique_ptr<deskpulse::testing::StoreBackend> backend_;
};

// A stop's bound on PostgreSQL: the statement running when the deadline
// passes is cancelled by the server, and the connection stays usable.
TEST_F(PgStoreTest, CancelAtCancelsTheStatementRunningAtItsDeadline) {
  auto conn = pg::Connection::Open(backend_->db(), "test");
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  {
    pg::CancelAt bound(**conn, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
    const Status s = (*conn)->Exec("SELECT pg_sleep(60)");
    EXPECT_FALSE(s.ok());
    EXPECT_EQ((*conn)->last_sqlstate(), "57014");  // query_canceled
    EXPECT_TRUE(bound.fired());
  }
  {
    // Done before its deadline: nothing is cancelled.
    pg::CancelAt bound(**conn, std::chrono::steady_clock::now() + std::chrono::hours(1));
    EXPECT_TRUE((*conn)->Exec("SELECT 1").ok());
    EXPECT_FALSE(bound.fired());
  }
}

// docs/scale-out.md: every table holding customer data has customer_id first
// in its primary key and in every unique constraint, and no foreign key joins
// two customers' rows; the directory tables are Citus reference tables.
TEST_F(PgStoreTest, EveryTableFollowsTheDistributionRule) {
  auto s = Open();
  ASSERT_NE(s, nullptr);
  const std::set<std::string> reference{"meta",           "collectors", "customers",
                                        "signal_imports", "api_tokens", "webhook_deliveries"};
  // Tables (partitioned parents and plain tables; partitions inherit the
  // parent's keys) in the public schema.
  const std::string tables_sql =
      "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON "
      "n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT "
      "c.relispartition";
  // libpq through the backend's helper returns integers only: walk the tables
  // by index instead.
  const std::int64_t n_tables =
      Int("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
          "n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition");
  ASSERT_GE(n_tables, 10);
  (void)tables_sql;
  const std::vector<std::string> expected{
      "api_tokens", "business_reviews", "collectors",     "contracts", "customers",
      "endpoints",  "health_snapshots", "meta",           "overrides", "peripheral_instances",
      "reports",    "risk_events",      "rollup_pending", "rollups",   "signal_imports",
      "streams",    "surveys",          "tickets",        "tokens",    "webhook_deliveries"};
  EXPECT_EQ(n_tables, static_cast<std::int64_t>(expected.size()))
      << "a table was added: put it in the rule's list here and in docs/scale-out.md";
  for (const auto& t : expected) {
    const std::string rel = "'" + t + "'::regclass";
    ASSERT_EQ(Int("SELECT count(*) FROM pg_class WHERE oid = " + rel), 1) << t;
    if (reference.contains(t)) continue;
    // customer_id is the first column of the primary key...
    EXPECT_EQ(Int("SELECT count(*) FROM pg_constraint WHERE conrelid = " + rel +
                  " AND contype = 'p' AND (SELECT attname FROM pg_attribute WHERE attrelid = "
                  "conrelid AND attnum = conkey[1]) = 'customer_id'"),
              1)
        << t << ": its primary key does not start with customer_id";
    // ...and in every unique constraint and unique index.
    EXPECT_EQ(Int("SELECT count(*) FROM pg_index i WHERE i.indrelid = " + rel +
                  " AND i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE "
                  "a.attrelid = i.indrelid AND a.attname = 'customer_id' AND a.attnum = ANY "
                  "(i.indkey))"),
              0)
        << t << ": a unique index without customer_id";
    // Foreign keys: to a reference table, or joining customer_id to customer_id.
    EXPECT_EQ(Int("SELECT count(*) FROM pg_constraint f WHERE f.conrelid = " + rel +
                  " AND f.contype = 'f' AND f.confrelid NOT IN ('meta'::regclass, "
                  "'collectors'::regclass, 'customers'::regclass) AND NOT EXISTS (SELECT 1 FROM "
                  "generate_subscripts(f.conkey, 1) k WHERE (SELECT attname FROM pg_attribute "
                  "WHERE attrelid = f.conrelid AND attnum = f.conkey[k]) = 'customer_id' AND "
                  "(SELECT attname FROM pg_attribute WHERE attrelid = f.confrelid AND attnum = "
                  "f.confkey[k]) = 'customer_id')"),
              0)
        << t << ": a foreign key that could join two customers' rows";
  }
  // Raw reports are partitioned by time.
  EXPECT_EQ(Int("SELECT count(*) FROM pg_partitioned_table WHERE partrelid = "
                "'reports'::regclass AND partstrat = 'r'"),
            1);
}

// An agent flapping between two collectors: both commit its overlapping
// resends at the same moment, again and again. Each report is stored once,
// nothing acknowledged is missing, and the rollups equal a recomputation.
TEST_F(PgStoreTest, TwoCollectorsCommittingOneStreamNeitherDuplicateNorLose) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a && b);
  const StreamInfo info = Register(*a, "Northwind", "flapper");
  constexpr int kRounds = 60;
  std::uint64_t acked_a = 0, acked_b = 0;
  auto run = [&](Store* s, std::uint64_t* acked, int phase) {
    for (int i = 0; i < kRounds; ++i) {
      // Each sends 1..(i+1)*10 shifted a little: always overlapping the other.
      const std::uint64_t last = static_cast<std::uint64_t>(i + 1) * 10 + phase;
      std::vector<BatchWrite> batch{MakeBatch(info, last > 25 ? last - 25 : 1, last)};
      const Status st = s->CommitBatches(batch, kNow);
      ASSERT_TRUE(st.ok()) << st.ToString();
      EXPECT_GE(batch[0].acked_through, last);
      *acked = std::max(*acked, batch[0].acked_through);
    }
  };
  std::thread ta(run, a.get(), &acked_a, 0);
  std::thread tb(run, b.get(), &acked_b, 3);
  ta.join();
  tb.join();
  const std::uint64_t top = std::max(acked_a, acked_b);
  EXPECT_EQ(top, static_cast<std::uint64_t>(kRounds) * 10 + 3);
  EXPECT_EQ(Int("SELECT count(*) FROM reports"), static_cast<std::int64_t>(top));
  EXPECT_EQ(Int("SELECT count(DISTINCT seq) FROM reports"), static_cast<std::int64_t>(top));
  EXPECT_EQ(Int("SELECT max(seq) FROM reports"), static_cast<std::int64_t>(top));
  EXPECT_EQ(Int("SELECT last_seq FROM streams"), static_cast<std::int64_t>(top));
  std::thread fa([&] { EXPECT_TRUE(a->FlushRollups().ok()); });
  std::thread fb([&] { EXPECT_TRUE(b->FlushRollups().ok()); });
  fa.join();
  fb.join();
  EXPECT_EQ(Int("SELECT count(*) FROM rollup_pending"), 0);
  ExpectRollupsMatchRawRows(*a);
}

// A collector killed after committing (no flush, no clean close): while its
// heartbeat is fresh its batches stay its own; once the lease has passed,
// another collector rolls them up from the raw rows.
TEST_F(PgStoreTest, AKilledCollectorsRollupsAreFinishedByAnother) {
  {
    auto s = Open();
    ASSERT_NE(s, nullptr);
    (void)Register(*s, "Northwind", "agent-1");
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Retention follows the real clock: keep the fixed test day's partition.
    auto s = OpenStore({.db = backend_->db(), .serving = true, .raw_retention_days = 3650});
    if (!s.ok()) _exit(2);
    auto token = (*s)->CreateToken("Northwind", kNow);
    const v1::Hello hello = MakeHello("agent-1", *token);
    auto info = (*s)->AuthenticateAndRegister(std::span(&hello, 1), kNow);
    if (!info[0].ok()) _exit(3);
    for (std::uint64_t first = 1; first <= 91; first += 10) {
      std::vector<BatchWrite> b{MakeBatch(*info[0], first, first + 9, 30'000)};
      if (!(*s)->CommitBatches(b, kNow).ok()) _exit(4);
    }
    _exit(0);  // as SIGKILL: no destructor, no flush
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(Int("SELECT count(*) FROM reports"), 100);
  EXPECT_EQ(Int("SELECT count(*) FROM rollup_pending"), 10);

  auto other = Open({.db = {}, .serving = true, .raw_retention_days = 3650});
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->FlushRollups().ok());
  EXPECT_EQ(Int("SELECT count(*) FROM rollup_pending"), 10) << "its lease has not passed yet";

  auto later = Open({.db = {},
                     .serving = true,
                     .raw_retention_days = 3650,
                     .collector_lease = std::chrono::milliseconds(0)});
  ASSERT_NE(later, nullptr);
  ASSERT_TRUE(later->FlushRollups().ok());
  EXPECT_EQ(Int("SELECT count(*) FROM rollup_pending"), 0);
  EXPECT_EQ(later->stats().reports_replayed, 100u);
  ExpectRollupsMatchRawRows(*later);
  auto w = later->LoadWindow(1, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 100);
}

TEST_F(PgStoreTest, RetentionDropsWholeDailyPartitions) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> old{MakeBatch(info, 1, 5)};
  ASSERT_TRUE(s->CommitBatches(old, kNow - 20 * kDayMs).ok());
  std::vector<BatchWrite> recent{MakeBatch(info, 6, 8)};
  ASSERT_TRUE(s->CommitBatches(recent, kNow).ok());
  const std::string old_part =
      "reports_d" + std::to_string(FloorTo(kNow - 20 * kDayMs, kDayMs) / kDayMs);
  const std::string exists = "SELECT count(*) FROM pg_class WHERE relname = '" + old_part + "'";
  EXPECT_EQ(Int(exists), 1);
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(Int(exists), 1) << "not rolled up yet";
  ASSERT_TRUE(s->FlushRollups().ok());
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(Int(exists), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM reports"), 3);
}

TEST_F(PgStoreTest, APasswordNeverAppearsInAnError) {
  std::string uri = backend_->db();
  const std::size_t at = uri.find('@');
  const std::size_t colon = uri.rfind(':', at);
  uri.replace(colon + 1, at - colon - 1, "not-the-password-9f3b");
  auto s = OpenStore({.db = uri});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message().find("not-the-password-9f3b"), std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find("***"), std::string::npos) << s.status().message();
}

}  // namespace
}  // namespace deskpulse::collector
