#include "collector/store/store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "collector/reports/scores.h"
#include "tests/fakes/temp_dir.h"

namespace deskpulse::collector {
namespace {

constexpr std::int64_t kNow = 1'795'000'000'000;  // fixed clock for the tests

v1::Hello MakeHello(const std::string& agent, std::uint64_t epoch = 1) {
  v1::Hello h;
  h.set_protocol_version(1);
  h.set_agent_id(agent);
  h.set_epoch(epoch);
  h.mutable_host()->set_hostname("tc-" + agent);
  return h;
}

IncomingReport MakeReport(std::uint64_t seq, std::int64_t at_ms, std::uint64_t boot_ms = 0) {
  IncomingReport in;
  in.report.set_seq(seq);
  in.report.set_observed_at_unix_ms(at_ms);
  if (boot_ms > 0) {
    in.report.mutable_boot()->set_boot_id("b" + std::to_string(seq));
    in.report.mutable_boot()->set_login_ready_ms(boot_ms);
  }
  in.bytes = in.report.SerializeAsString();
  return in;
}

BatchWrite MakeBatch(std::int64_t stream, std::uint64_t first, std::uint64_t last,
                     std::uint64_t boot_ms = 0) {
  BatchWrite b;
  b.stream_id = stream;
  for (std::uint64_t s = first; s <= last; ++s) {
    b.reports.push_back(MakeReport(s, kNow - 3600'000 + static_cast<std::int64_t>(s), boot_ms));
  }
  return b;
}

class StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open() {
    auto s = Store::Open({.path = dir_.File("store.db")});
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }
  StreamInfo Register(Store& s, const std::string& customer, const std::string& agent) {
    auto token = s.CreateToken(customer, kNow);
    EXPECT_TRUE(token.ok());
    auto c = s.Authenticate(*token);
    EXPECT_TRUE(c.ok());
    auto info = s.RegisterStream(c->id, MakeHello(agent), kNow);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return *info;
  }
  testing::TempDir dir_;
};

TEST_F(StoreTest, MigratesAFreshFileAndReopens) {
  {
    auto s = Open();
    EXPECT_EQ(s->schema_version(), 3);
  }
  auto again = Open();
  EXPECT_EQ(again->schema_version(), 3);
  auto ro = Store::Open({.path = dir_.File("store.db"), .read_only = true});
  ASSERT_TRUE(ro.ok());
}

TEST_F(StoreTest, ForeignFilesAreRefusedByName) {
  const std::string text = dir_.File("notes.db");
  { std::ofstream(text) << "this is not a database\n"; }
  auto s = Store::Open({.path = text});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(text + ": not an SQLite database"), std::string::npos)
      << s.status().message();
  auto d = Store::Open({.path = dir_.File("")});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("is a directory"), std::string::npos);
}

TEST_F(StoreTest, ReadOnlyOpenOfAMissingStoreFails) {
  auto ro = Store::Open({.path = dir_.File("missing.db"), .read_only = true});
  EXPECT_FALSE(ro.ok());
}

TEST_F(StoreTest, TokensAreStoredHashedAndDecideTheCustomer) {
  auto s = Open();
  auto t1 = s->CreateToken("Northwind", kNow);
  auto t2 = s->CreateToken("Contoso", kNow);
  ASSERT_TRUE(t1.ok() && t2.ok());
  EXPECT_NE(*t1, *t2);
  EXPECT_EQ(s->Authenticate(*t1)->name, "Northwind");
  EXPECT_EQ(s->Authenticate(*t2)->name, "Contoso");
  EXPECT_EQ(s->Authenticate("dpt_nope").status().code(), Code::kUnauthenticated);
  // Only the hash is on disk.
  auto st = s->db()->Prepare("SELECT count(*) FROM tokens WHERE token_hash=?");
  st->Bind(1, *t1);
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->Int(0), 0);
  st->Reset();
  st->Bind(1, HashToken(*t1));
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->Int(0), 1);
}

TEST_F(StoreTest, ResentReportsAreStoredOnce) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  EXPECT_EQ(info.last_acked_seq, 0u);
  PendingRollups pending;
  std::vector<BatchWrite> first{MakeBatch(info.stream_id, 1, 10)};
  ASSERT_TRUE(s->CommitBatches(first, kNow, &pending).ok());
  EXPECT_EQ(first[0].acked_through, 10u);
  EXPECT_EQ(first[0].duplicates, 0u);
  // The ack was lost: the agent resends 6..15.
  std::vector<BatchWrite> resend{MakeBatch(info.stream_id, 6, 15)};
  ASSERT_TRUE(s->CommitBatches(resend, kNow, &pending).ok());
  EXPECT_EQ(resend[0].acked_through, 15u);
  EXPECT_EQ(resend[0].duplicates, 5u);
  EXPECT_EQ(*s->CountRawReports(), 15);
  EXPECT_EQ(pending.reports(), 15u);
}

TEST_F(StoreTest, WatermarkSurvivesReopen) {
  std::int64_t stream = 0;
  {
    auto s = Open();
    stream = Register(*s, "Northwind", "agent-1").stream_id;
    PendingRollups pending;
    std::vector<BatchWrite> b{MakeBatch(stream, 1, 7)};
    ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
  }
  auto s = Open();
  auto token = s->CreateToken("Northwind", kNow);
  auto c = s->Authenticate(*token);
  auto info = s->RegisterStream(c->id, MakeHello("agent-1"), kNow);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->stream_id, stream);
  EXPECT_EQ(info->last_acked_seq, 7u);
  // A new epoch is a new stream, starting from 0.
  auto epoch2 = s->RegisterStream(c->id, MakeHello("agent-1", 2), kNow);
  EXPECT_NE(epoch2->stream_id, stream);
  EXPECT_EQ(epoch2->last_acked_seq, 0u);
}

TEST_F(StoreTest, SameAgentIdUnderAnotherCustomerIsAnotherEndpoint) {
  auto s = Open();
  const StreamInfo a = Register(*s, "Northwind", "cloned-golden-image");
  const StreamInfo b = Register(*s, "Contoso", "cloned-golden-image");
  EXPECT_NE(a.endpoint_id, b.endpoint_id);
  EXPECT_NE(a.customer_id, b.customer_id);
}

TEST_F(StoreTest, RollupsCommittedButNotFlushedAreReplayedAtOpen) {
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    PendingRollups pending;
    std::vector<BatchWrite> b1{MakeBatch(info.stream_id, 1, 4, 40'000)};
    ASSERT_TRUE(s->CommitBatches(b1, kNow, &pending).ok());
    ASSERT_TRUE(s->FlushRollups(&pending).ok());
    std::vector<BatchWrite> b2{MakeBatch(info.stream_id, 5, 10, 40'000)};
    ASSERT_TRUE(s->CommitBatches(b2, kNow, &pending).ok());
    // Crash here: rows 5..10 are durable, their rollups are not.
  }
  auto s = Open();
  auto w = s->LoadWindow(customer, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 10);
  EXPECT_EQ(w->boot_ms.TotalWeight(), 10u);
  EXPECT_EQ(w->endpoints, 1);
}

// A device instance keeps the catalog verdict its agent attached, as of its
// latest observation; a store made before verdicts existed is migrated in place.
TEST_F(StoreTest, DeviceInstancesKeepTheAgentsCatalogVerdict) {
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    BatchWrite b;
    b.stream_id = info.stream_id;
    for (std::uint64_t seq = 1; seq <= 2; ++seq) {
      IncomingReport in = MakeReport(seq, kNow - 3600'000 + static_cast<std::int64_t>(seq));
      auto* p = in.report.add_peripherals();
      p->set_bus(v1::PERIPHERAL_BUS_USB);
      p->set_vendor_id(0x046d);
      p->set_product_id(0x082d);
      p->add_interface_classes(0x0e);
      p->set_serial_hash("00112233");
      p->set_state(seq == 1 ? v1::DEVICE_STATE_NO_DRIVER : v1::DEVICE_STATE_WORKING);
      if (seq == 2) {
        p->add_drivers("uvcvideo");
        p->mutable_catalog()->set_verdict(v1::COMPATIBILITY_VERDICT_SUPPORTED);
        p->mutable_catalog()->set_source("kernel");
        p->mutable_catalog()->set_catalog_version("1-abc");
      }
      in.bytes = in.report.SerializeAsString();
      b.reports.push_back(std::move(in));
    }
    std::vector<BatchWrite> batches{std::move(b)};
    PendingRollups pending;
    ASSERT_TRUE(s->CommitBatches(batches, kNow, &pending).ok());
    ASSERT_TRUE(s->FlushRollups(&pending).ok());
    auto got = s->LoadPeripheralInstances(customer, kNow - kDayMs);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->size(), 1u);
    const auto& inst = (*got)[0];
    EXPECT_EQ(inst.observations, 2);
    EXPECT_EQ(inst.fail_observations, 1);
    EXPECT_EQ(inst.last.state(), v1::DEVICE_STATE_WORKING);
    ASSERT_EQ(inst.last.drivers_size(), 1);
    EXPECT_EQ(inst.last.interface_classes(0), 0x0eu);
    ASSERT_TRUE(inst.last.has_catalog());
    EXPECT_EQ(inst.last.catalog().source(), "kernel");
    EXPECT_EQ(inst.last.catalog().catalog_version(), "1-abc");

    // Back to schema v1, as a collector before verdicts left it.
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE peripheral_instances DROP COLUMN catalog").ok());
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE reports DROP COLUMN body_crc").ok());
    ASSERT_TRUE(s->db()->Exec("UPDATE meta SET value=1 WHERE key='schema_version'").ok());
  }
  auto s = Open();
  EXPECT_EQ(s->schema_version(), 3);
  auto got = s->LoadPeripheralInstances(customer, kNow - kDayMs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].observations, 2);
  EXPECT_FALSE((*got)[0].last.has_catalog());
}

TEST_F(StoreTest, RetentionDeletesOldRawRowsOnlyOnceRolledUp) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  PendingRollups pending;
  std::vector<BatchWrite> old{MakeBatch(info.stream_id, 1, 5)};
  ASSERT_TRUE(s->CommitBatches(old, kNow - 20 * kDayMs, &pending).ok());
  std::vector<BatchWrite> recent{MakeBatch(info.stream_id, 6, 8)};
  ASSERT_TRUE(s->CommitBatches(recent, kNow, &pending).ok());
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(*s->CountRawReports(), 8);  // nothing rolled up yet: nothing deleted
  ASSERT_TRUE(s->FlushRollups(&pending).ok());
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(*s->CountRawReports(), 3);  // the 20-day-old rows are past 14 days
  auto w = s->LoadWindow(info.customer_id, kNow - 30 * kDayMs, kNow + kDayMs);
  EXPECT_EQ(w->reports, 8);  // rollups keep them
}

TEST_F(StoreTest, FailedCommitChangesNothing) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  PendingRollups pending;
  std::vector<BatchWrite> ok{MakeBatch(info.stream_id, 1, 3)};
  ASSERT_TRUE(s->CommitBatches(ok, kNow, &pending).ok());
  // A second writer holds the lock: the commit fails and the watermark stays.
  auto other = Database::Open(dir_.File("store.db"), false);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Exec("PRAGMA busy_timeout=0; BEGIN IMMEDIATE").ok());
  sqlite3_busy_timeout(s->db()->handle(), 0);
  std::vector<BatchWrite> blocked{MakeBatch(info.stream_id, 4, 6)};
  EXPECT_FALSE(s->CommitBatches(blocked, kNow, &pending).ok());
  ASSERT_TRUE((*other)->Exec("ROLLBACK").ok());
  std::vector<BatchWrite> retry{MakeBatch(info.stream_id, 4, 6)};
  ASSERT_TRUE(s->CommitBatches(retry, kNow, &pending).ok());
  EXPECT_EQ(retry[0].duplicates, 0u);
  EXPECT_EQ(retry[0].acked_through, 6u);
  EXPECT_EQ(*s->CountRawReports(), 6);
  // The rolled-back attempt left nothing in the rollups: they count 6, not 9.
  ASSERT_TRUE(s->FlushRollups(&pending).ok());
  auto w = s->LoadWindow(info.customer_id, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 6);
}

TEST_F(StoreTest, ScoresRankCustomersFromStoredRollups) {
  auto s = Open();
  const StreamInfo fast = Register(*s, "Fast", "a");
  const StreamInfo slow = Register(*s, "Slow", "b");
  PendingRollups pending;
  std::vector<BatchWrite> b{MakeBatch(fast.stream_id, 1, 5, 20'000),
                            MakeBatch(slow.stream_id, 1, 5, 110'000)};
  ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
  ASSERT_TRUE(s->FlushRollups(&pending).ok());
  auto scores = ScoreAllCustomers(*s, scoring::Policy{}, kNow);
  ASSERT_TRUE(scores.ok());
  ASSERT_EQ(scores->size(), 2u);
  EXPECT_EQ((*scores)[0].customer.name, "Fast");
  EXPECT_DOUBLE_EQ(*(*scores)[0].score.boot.score, 100);
  EXPECT_DOUBLE_EQ(*(*scores)[1].score.boot.score, 0);
  EXPECT_EQ(*(*scores)[1].score.band, scoring::Band::kPoor);
  EXPECT_NEAR((*scores)[1].score.coverage, 0.25, 1e-9);  // boot data only
}

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

TEST_F(StoreTest, AFlippedByteInABodyIsFoundOnReadAndNeverScored) {
  std::string victim;
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    std::vector<BatchWrite> b{MakeBatch(info.stream_id, 1, 10, 20'000)};
    victim = b[0].reports[6].bytes;  // seq 7
    PendingRollups pending;
    ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
    // Closed before the rollups were flushed (as by a crash): the next open
    // reads the raw rows back to build them.
  }
  FlipByteOfBody(dir_.File("store.db"), victim);
  auto s = Open();
  EXPECT_EQ(s->health().damaged_rows, 1u);
  auto w = s->LoadWindow(customer, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 9) << "the damaged row is left out of the rollups";
  s.reset();

  auto ro = Store::Open({.path = dir_.File("store.db"), .read_only = true});
  ASSERT_TRUE(ro.ok());
  auto quick = (*ro)->Check(false);
  ASSERT_TRUE(quick.ok());
  EXPECT_TRUE(quick->ok()) << "SQLite's own check sees nothing wrong";
  auto full = (*ro)->Check(true);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->problems.size(), 1u);
  EXPECT_NE(full->problems[0].find("seq 7): its body fails its checksum"), std::string::npos)
      << full->problems[0];
  EXPECT_EQ(full->rows_checked, 10);
  EXPECT_EQ(full->damaged_rows, 1);
}

TEST_F(StoreTest, MigrationToV3ChecksumsTheRowsAlreadyStored) {
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    std::vector<BatchWrite> b{MakeBatch(info.stream_id, 1, 5)};
    PendingRollups pending;
    ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
    ASSERT_TRUE(s->FlushRollups(&pending).ok());
    // Back to v2, as a collector before checksums left it.
    ASSERT_TRUE(s->db()->Exec("ALTER TABLE reports DROP COLUMN body_crc").ok());
    ASSERT_TRUE(s->db()->Exec("UPDATE meta SET value=2 WHERE key='schema_version'").ok());
  }
  auto s = Open();
  EXPECT_EQ(s->schema_version(), 3);
  auto full = s->Check(true);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->ok()) << full->problems.front();
  EXPECT_EQ(full->rows_checked, 5);
}

TEST_F(StoreTest, CheckFindsAWatermarkBelowItsStoredRows) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> b{MakeBatch(info.stream_id, 1, 5)};
  PendingRollups pending;
  ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
  ASSERT_TRUE(s->db()->Exec("UPDATE streams SET last_seq = 3").ok());
  auto full = s->Check(true);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->problems.size(), 1u);
  EXPECT_NE(full->problems[0].find("its watermark is seq 3 but seq 5 is stored"),
            std::string::npos)
      << full->problems[0];
}

TEST_F(StoreTest, ADamagedStoreIsRefusedAtOpenUnlessAllowed) {
  std::vector<std::string> bodies;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    std::vector<BatchWrite> b{MakeBatch(info.stream_id, 1, 2000, 20'000)};
    PendingRollups pending;
    ASSERT_TRUE(s->CommitBatches(b, kNow, &pending).ok());
    ASSERT_TRUE(s->FlushRollups(&pending).ok());
    ASSERT_TRUE(s->db()->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
  }
  {
    // Overwrite a page in the middle of the file.
    std::fstream f(dir_.File("store.db"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::int64_t>(f.tellg());
    f.seekp((size / 4096 / 2) * 4096);
    f << std::string(4096, '\x5a');
  }
  auto refused = Store::Open({.path = dir_.File("store.db"), .check_at_open = true});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kDataLoss);
  EXPECT_NE(refused.status().message().find("is damaged"), std::string::npos);
  EXPECT_NE(refused.status().message().find("deskpulse-collector check --db"), std::string::npos)
      << refused.status().message();
  auto allowed = Store::Open(
      {.path = dir_.File("store.db"), .check_at_open = true, .allow_damaged = true});
  EXPECT_TRUE(allowed.ok()) << allowed.status().ToString();
}

}  // namespace
}  // namespace deskpulse::collector
