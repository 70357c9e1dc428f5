// What is particular to the SQLite backend: its files, its migrations from
// earlier versions, damage found in the file, and one collector per file.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>

#include "collector/signals/parse.h"
#include "collector/store/sqlite/sqlite_store.h"
#include "tests/collector/store_test_util.h"
#include "tests/fakes/temp_dir.h"

namespace deskpulse::collector {
namespace {

// Back to `version`: the tables later migrations added dropped.
void DropTablesAfter(Database& db, int version) {
  const std::vector<std::pair<int, const char*>> added = {
      {9, "webhook_deliveries"}, {6, "api_tokens"},    {5, "overrides"}, {5, "health_snapshots"},
      {5, "risk_events"},        {4, "surveys"},       {4, "tickets"},   {4, "contracts"},
      {4, "business_reviews"},   {4, "signal_imports"}};
  for (const auto& [v, t] : added) {
    if (v > version) {
      ASSERT_TRUE(db.Exec(std::string("DROP TABLE ") + t).ok()) << t;
    }
  }
}

using namespace testutil;

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> Open(StoreOptions options = {}) {
    options.db = path();
    auto s = SqliteStore::Open(options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::string path() const { return dir_.File("store.db"); }
  deskpulse::testing::TempDir dir_;
};

TEST_F(SqliteStoreTest, ForeignFilesAreRefusedByName) {
  const std::string text = dir_.File("notes.db");
  { std::ofstream(text) << "this is not a database\n"; }
  auto s = OpenStore({.db = text});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(text + ": not an SQLite database"), std::string::npos)
      << s.status().message();
  auto d = OpenStore({.db = dir_.File("")});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("is a directory"), std::string::npos);
}

TEST_F(SqliteStoreTest, ASecondCollectorOnTheSameFileIsRefused) {
  auto first = Open({.db = {}, .serving = true});
  ASSERT_NE(first, nullptr);
  auto second = SqliteStore::Open({.db = path(), .serving = true});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("already served by another collector"),
            std::string::npos)
      << second.status().message();
  // Reading alongside the collector is fine (scores, check).
  auto reader = SqliteStore::Open({.db = path(), .read_only = true});
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  first.reset();
  EXPECT_NE(Open({.db = {}, .serving = true}), nullptr) << "the lock goes with the collector";
}

// A store made before verdicts and checksums existed (v1) is migrated in place.
TEST_F(SqliteStoreTest, MigratesFromTheEarlierSchemaVersions) {
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    BatchWrite b = MakeBatch(info, 1, 1);
    auto* p = b.reports[0].report.add_peripherals();
    p->set_vendor_id(0x046d);
    p->set_serial_hash("00112233");
    p->set_state(v1::DEVICE_STATE_WORKING);
    p->mutable_catalog()->set_source("kernel");
    b.reports[0].bytes = b.reports[0].report.SerializeAsString();
    std::vector<BatchWrite> batches{std::move(b)};
    ASSERT_TRUE(s->CommitBatches(batches, kNow).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    // Back to schema v1, as a collector before verdicts left it.
    DropTablesAfter(*s->db(), 3);
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE peripheral_instances DROP COLUMN catalog").ok());
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE reports DROP COLUMN body_crc").ok());
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE endpoints DROP COLUMN last_report").ok());
    ASSERT_TRUE(s->db()->Exec("UPDATE meta SET value=1 WHERE key='schema_version'").ok());
  }
  auto s = Open();
  EXPECT_EQ(s->schema_version(), LatestSchemaVersion());
  auto got = s->LoadPeripheralInstances(customer, kNow - kDayMs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_FALSE((*got)[0].last.has_catalog());
  // v3 checksummed the rows already stored.
  auto full = s->Check(true);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->ok()) << full->problems.front();
  EXPECT_EQ(full->rows_checked, 1);
}

// A v7 store flushed its rollups in 16 slices (endpoint_id % 16), each with
// its mark. Cut into 64, every new slice starts from its old slice's mark:
// the raw rows past it are rolled up once, those before it not again.
TEST_F(SqliteStoreTest, RollupMarksOfSixteenSlicesCarryOverToSixtyFour) {
  {
    auto s = Open();
    constexpr int kAgents = 40;
    std::vector<StreamInfo> agents;
    agents.reserve(kAgents);
    for (int i = 0; i < kAgents; ++i) {
      agents.push_back(Register(*s, "Northwind", fmt::format("a{}", i)));
    }
    ASSERT_GE(agents.back().endpoint_id, 16) << "endpoints in the slices 16..63 too";
    std::vector<BatchWrite> flushed, pending;
    flushed.reserve(agents.size());
    pending.reserve(agents.size());
    for (const StreamInfo& a : agents) flushed.push_back(MakeBatch(a, 1, 3));
    ASSERT_TRUE(s->CommitBatches(flushed, kNow).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    // Committed, not yet rolled up, when the v7 collector stopped.
    for (const StreamInfo& a : agents) pending.push_back(MakeBatch(a, 4, 5));
    ASSERT_TRUE(s->CommitBatches(pending, kNow).ok());
    ASSERT_TRUE(s->db()->Exec("DELETE FROM rollup_marks WHERE slice >= 16").ok());
    DropTablesAfter(*s->db(), 7);
    ASSERT_TRUE(s->db()->Exec("UPDATE meta SET value=7 WHERE key='schema_version'").ok());
  }
  auto s = Open();
  EXPECT_EQ(s->schema_version(), LatestSchemaVersion());
  ExpectRollupsMatchRawRows(*s);
  auto marks = s->db()->Prepare("SELECT count(*) FROM rollup_marks");
  ASSERT_TRUE(marks.ok());
  ASSERT_TRUE(*marks->Step());
  EXPECT_EQ(marks->Int(0), kRollupSlices);
}

// The previous versions (v5, before API tokens; v6, before each endpoint's
// latest report) to the latest: rows and signals intact, health recordable,
// API tokens creatable, and the latest report kept from the next flush on.
class SqliteMigrationTest : public SqliteStoreTest, public ::testing::WithParamInterface<int> {};

TEST_P(SqliteMigrationTest, MigratesFromAPreviousVersion) {
  const int from = GetParam();
  StreamInfo info;
  {
    auto s = Open();
    info = Register(*s, "Northwind", "agent-1");
    std::vector<BatchWrite> b{MakeBatch(info, 1, 5)};
    ASSERT_TRUE(s->CommitBatches(b, kNow).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    ParseOutcome reviews = ParseSignals(SignalKind::kReviews, SignalFormat::kCsv,
                                        "customer,date\nNorthwind,2026-10-01\n");
    ASSERT_TRUE(reviews.batch.has_value());
    ASSERT_TRUE(s->ImportSignals(*reviews.batch, kNow).ok());
    DropTablesAfter(*s->db(), from);
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE endpoints DROP COLUMN last_report").ok());
    ASSERT_TRUE(s->db()
                    ->Exec(fmt::format("UPDATE meta SET value={} WHERE key='schema_version'", from))
                    .ok());
  }
  auto s = Open();
  EXPECT_EQ(s->schema_version(), LatestSchemaVersion());
  auto full = s->Check(true);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->ok()) << full->problems.front();
  EXPECT_EQ(full->rows_checked, 5);
  ExpectRollupsMatchRawRows(*s);
  const std::int64_t customer = (*s->ListCustomers())[0].id;
  EXPECT_EQ(s->LoadSignals(customer)->signals.review_dates_ms.size(), 1u);
  HealthSnapshot snap;
  snap.customer_id = customer;
  snap.day_ms = kNow / kDayMs * kDayMs;
  snap.coverage = 1;
  snap.risk = "low";
  auto event = s->RecordHealth(snap, {}, kNow);
  ASSERT_TRUE(event.ok()) << event.status().ToString();
  EXPECT_EQ(s->LoadHistory(customer, 0)->size(), 1u);
  EXPECT_TRUE(s->CreateApiToken(ApiRole::kCustomerAdmin, customer, kNow).ok());
  // Migrated endpoints have no latest report until they next report.
  auto before = s->LoadEndpoint(customer, info.endpoint_id);
  ASSERT_TRUE(before.ok() && before->has_value());
  EXPECT_FALSE((*before)->latest_report.has_value());
  std::vector<BatchWrite> more{MakeBatch(info, 6, 6)};
  ASSERT_TRUE(s->CommitBatches(more, kNow).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  auto after = s->LoadEndpoint(customer, info.endpoint_id);
  ASSERT_TRUE(after.ok() && after->has_value());
  ASSERT_TRUE((*after)->latest_report.has_value());
  EXPECT_EQ((*after)->latest_report->seq(), 6u);
}

INSTANTIATE_TEST_SUITE_P(Versions, SqliteMigrationTest, ::testing::Values(5, 6));

// Flips one byte of a stored body in the database file itself, where SQLite
// keeps no checksum of its own.
void FlipByteOfBody(const std::string& path, const std::string& body) {
  {
    auto db = Database::Open(path, false);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(f)), {});
  const auto at = data.find(body);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(data.find(body, at + 1), std::string::npos) << "the body is unique in the file";
  f.seekp(static_cast<std::streamoff>(at + body.size() / 2));
  f.put(static_cast<char>(data[at + body.size() / 2] ^ 0x01));
}

TEST_F(SqliteStoreTest, AFlippedByteInABodyIsFoundOnReadAndNeverScored) {
  std::string victim;
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    std::vector<BatchWrite> b{MakeBatch(info, 1, 10, 20'000)};
    victim = b[0].reports[6].bytes;  // seq 7
    ASSERT_TRUE(s->CommitBatches(b, kNow).ok());
    // Closed before the rollups were flushed (as by a crash): the next open
    // reads the raw rows back to build them.
  }
  FlipByteOfBody(path(), victim);
  auto s = Open();
  EXPECT_EQ(s->stats().damaged_rows, 1u);
  auto w = s->LoadWindow(customer, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 9) << "the damaged row is left out of the rollups";
  s.reset();

  auto ro = Open({.db = {}, .read_only = true});
  auto quick = ro->Check(false);
  ASSERT_TRUE(quick.ok());
  EXPECT_TRUE(quick->ok()) << "SQLite's own check sees nothing wrong";
  auto full = ro->Check(true);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->problems.size(), 1u);
  EXPECT_NE(full->problems[0].find("seq 7): its body fails its checksum"), std::string::npos)
      << full->problems[0];
  EXPECT_EQ(full->rows_checked, 10);
  EXPECT_EQ(full->damaged_rows, 1);
}

TEST_F(SqliteStoreTest, ADamagedStoreIsRefusedAtOpenUnlessAllowed) {
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    std::vector<BatchWrite> b{MakeBatch(info, 1, 2000, 20'000)};
    ASSERT_TRUE(s->CommitBatches(b, kNow).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    ASSERT_TRUE(s->db()->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
  }
  {
    // Overwrite a page in the middle of the file.
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::int64_t>(f.tellg());
    f.seekp((size / 4096 / 2) * 4096);
    f << std::string(4096, '\x5a');
  }
  auto refused = OpenStore({.db = path(), .check_at_open = true});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kDataLoss);
  EXPECT_NE(refused.status().message().find("is damaged"), std::string::npos);
  EXPECT_NE(refused.status().message().find("deskpulse-collector check --db"), std::string::npos)
      << refused.status().message();
  auto allowed = OpenStore({.db = path(), .check_at_open = true, .allow_damaged = true});
  EXPECT_TRUE(allowed.ok()) << allowed.status().ToString();
}

TEST(RedactDb, APasswordNeverShows) {
  EXPECT_EQ(RedactDb("postgresql://dp:s3cr%40t@db.example:5432/deskpulse"),
            "postgresql://dp:***@db.example:5432/deskpulse");
  EXPECT_EQ(RedactDb("postgres://dp@db/deskpulse?sslmode=require&password=hunter2"),
            "postgres://dp@db/deskpulse?sslmode=require&password=***");
  EXPECT_EQ(RedactDb("postgresql://db/deskpulse"), "postgresql://db/deskpulse");
  EXPECT_EQ(RedactDb("/var/lib/deskpulse/store.db"), "/var/lib/deskpulse/store.db");
  EXPECT_TRUE(IsPostgresUri("postgres://x"));
  EXPECT_FALSE(IsPostgresUri("postgresql.db"));
}

}  // namespace
}  // namespace deskpulse::collector
