// One suite over the store interfaces, run against both backends: what the
// collector relies on holds the same on SQLite and on PostgreSQL.
#include <gtest/gtest.h>

#include <filesystem>

#include "collector/reports/health.h"
#include "collector/reports/scores.h"
#include "collector/signals/parse.h"
#include "collector/store/store.h"
#include "tests/collector/store_test_util.h"
#include "tests/fakes/store_backends.h"

namespace deskpulse::collector {
namespace {

using namespace testutil;
using deskpulse::testing::MakeBackend;
using deskpulse::testing::StoreBackend;

class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { backend_ = MakeBackend(GetParam()); }
  std::unique_ptr<Store> Open(StoreOptions options = {}) {
    auto s = backend_->Open(std::move(options));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<StoreBackend> backend_;
};

TEST_P(StoreConformance, MigratesFromEmptyToTheLatestVersionAndReopens) {
  {
    auto s = Open();
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->schema_version(), LatestSchemaVersion());
    EXPECT_EQ(s->backend(), GetParam());
  }
  auto again = Open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->schema_version(), LatestSchemaVersion());
  auto ro = Open({.db = {}, .read_only = true});
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(ro->schema_version(), LatestSchemaVersion());
}

TEST_P(StoreConformance, ReadOnlyOpenOfAnEmptyStoreFails) {
  auto ro = backend_->Open({.db = {}, .read_only = true});
  EXPECT_FALSE(ro.ok());
}

// A command that only uses a store never makes one: a typo in --db names the
// problem and leaves nothing behind.
TEST_P(StoreConformance, AStoreThatIsNotThereIsNotMadeUnlessAsked) {
  for (const bool read_only : {false, true}) {
    auto missing = backend_->Open({.db = {}, .read_only = read_only, .create_if_missing = false});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().ToString();
    EXPECT_NE(missing.status().message().find("deskpulse-collector serve"), std::string::npos)
        << missing.status().message();
  }
  if (GetParam() == "sqlite") {
    EXPECT_FALSE(std::filesystem::exists(backend_->db())) << "an empty file was left behind";
  }
  // Made once, it opens the same way.
  ASSERT_NE(Open(), nullptr);
  auto existing = backend_->Open({.db = {}, .create_if_missing = false});
  EXPECT_TRUE(existing.ok()) << existing.status().ToString();
}

TEST_P(StoreConformance, TokensAreStoredHashedAndDecideTheCustomer) {
  auto s = Open();
  auto t1 = s->CreateToken("Northwind", kNow);
  auto t2 = s->CreateToken("Contoso", kNow);
  ASSERT_TRUE(t1.ok() && t2.ok());
  EXPECT_NE(*t1, *t2);
  EXPECT_EQ(s->Authenticate(*t1)->name, "Northwind");
  EXPECT_EQ(s->Authenticate(*t2)->name, "Contoso");
  EXPECT_EQ(s->Authenticate("dpt_nope").status().code(), Code::kUnauthenticated);
  // Only the hash is stored.
  EXPECT_EQ(backend_->QueryInt("SELECT count(*) FROM tokens WHERE token_hash = '" + *t1 + "'"), 0);
  EXPECT_EQ(
      backend_->QueryInt("SELECT count(*) FROM tokens WHERE token_hash = '" + HashToken(*t1) + "'"),
      1);
  auto customers = s->ListCustomers();
  ASSERT_TRUE(customers.ok());
  ASSERT_EQ(customers->size(), 2u);
  EXPECT_EQ((*customers)[0].name, "Contoso");
  EXPECT_EQ(s->EnsureCustomer("", kNow).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, ResentReportsAreStoredOnce) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  EXPECT_EQ(info.last_acked_seq, 0u);
  std::vector<BatchWrite> first{MakeBatch(info, 1, 10)};
  ASSERT_TRUE(Commit(*s, first).ok());
  EXPECT_EQ(first[0].acked_through, 10u);
  EXPECT_EQ(first[0].duplicates, 0u);
  // The ack was lost: the agent resends 6..15.
  std::vector<BatchWrite> resend{MakeBatch(info, 6, 15)};
  ASSERT_TRUE(Commit(*s, resend).ok());
  EXPECT_EQ(resend[0].acked_through, 15u);
  EXPECT_EQ(resend[0].duplicates, 5u);
  // The same stream twice in one group: the second batch sees the first's mark.
  std::vector<BatchWrite> twice{MakeBatch(info, 14, 18), MakeBatch(info, 16, 20)};
  ASSERT_TRUE(Commit(*s, twice).ok());
  EXPECT_EQ(twice[0].duplicates, 2u);
  EXPECT_EQ(twice[1].duplicates, 3u);
  EXPECT_EQ(twice[1].acked_through, 20u);
  EXPECT_EQ(*s->CountRawReports(), 20);
  ASSERT_TRUE(s->FlushRollups().ok());
  ExpectRollupsMatchRawRows(*s);
}

// An idle collector's counters stand still: maintenance rounds with nothing
// committed since the last one write nothing and count nothing.
TEST_P(StoreConformance, AnIdleStoreDoesNoRollupWorkThatShowsInItsCounters) {
  auto s = Open({.db = {}, .rollup_flush_interval = std::chrono::milliseconds(0)});
  ASSERT_NE(s, nullptr);
  const auto rounds = [&] {
    for (int i = 0; i < 3 * kRollupSlices; ++i) s->Maintain(kNow);
  };
  rounds();
  EXPECT_EQ(s->stats().rollup_flushes, 0u);
  EXPECT_EQ(s->stats().rollup_backlog_reports, 0u);

  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> batch{MakeBatch(info, 1, 10)};
  ASSERT_TRUE(Commit(*s, batch).ok());
  EXPECT_EQ(s->stats().rollup_backlog_reports, 10u);
  rounds();
  const StoreStats busy = s->stats();
  EXPECT_GT(busy.rollup_flushes, 0u);
  EXPECT_EQ(busy.rollup_backlog_reports, 0u);
  ExpectRollupsMatchRawRows(*s);

  rounds();  // idle again
  EXPECT_EQ(s->stats().rollup_flushes, busy.rollup_flushes);
  EXPECT_EQ(s->stats().rollup_flush_failures, 0u);
}

// A stop is bounded: past its deadline the final flush leaves the rollups to
// the next start (or, on PostgreSQL, to any collector), and nothing is lost.
TEST_P(StoreConformance, AFlushPastItsDeadlineLeavesTheRollupsToTheNextStart) {
  {
    auto s = Open();
    ASSERT_NE(s, nullptr);
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    std::vector<BatchWrite> batch{MakeBatch(info, 1, 50)};
    ASSERT_TRUE(Commit(*s, batch).ok());
    const Status late = s->FlushRollups(std::chrono::steady_clock::now());
    EXPECT_EQ(late.code(), Code::kDeadlineExceeded) << late.ToString();
    EXPECT_NE(late.message().find("50 reports"), std::string::npos) << late.message();
    EXPECT_EQ(s->stats().rollup_backlog_reports, 50u);
  }
  auto next = Open();
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(next->FlushRollups().ok());
  EXPECT_EQ(*next->CountRawReports(), 50);
  ExpectRollupsMatchRawRows(*next);
  // With nothing left, a late deadline is no failure.
  EXPECT_TRUE(next->FlushRollups(std::chrono::steady_clock::now()).ok());
}

// The watermark is the store's: another instance on the same store (another
// collector, or this one after a restart) resumes from it and skips what the
// first stored.
TEST_P(StoreConformance, TheWatermarkIsTheStoresNotAnInstances) {
  auto a = Open();
  auto b = Open();
  const StreamInfo info = Register(*a, "Northwind", "agent-1");
  std::vector<BatchWrite> batch{MakeBatch(info, 1, 7)};
  ASSERT_TRUE(Commit(*a, batch).ok());
  const StreamInfo again = Register(*b, "Northwind", "agent-1");
  EXPECT_EQ(again.stream_id, info.stream_id);
  EXPECT_EQ(again.last_acked_seq, 7u);
  // An agent that flapped to b resends through a stale StreamInfo: still skipped.
  std::vector<BatchWrite> stale{MakeBatch(info, 5, 9)};
  ASSERT_TRUE(Commit(*b, stale).ok());
  EXPECT_EQ(stale[0].duplicates, 3u);
  EXPECT_EQ(stale[0].acked_through, 9u);
  // ...and back on a, whose earlier commit is older than b's.
  std::vector<BatchWrite> back{MakeBatch(info, 8, 12)};
  ASSERT_TRUE(Commit(*a, back).ok());
  EXPECT_EQ(back[0].duplicates, 2u);
  EXPECT_EQ(*a->CountRawReports(), 12);
  // A new epoch is a new stream, starting from 0.
  const StreamInfo epoch2 = Register(*b, "Northwind", "agent-1", 2);
  EXPECT_NE(epoch2.stream_id, info.stream_id);
  EXPECT_EQ(epoch2.last_acked_seq, 0u);
  auto streams = b->ListStreams();
  ASSERT_TRUE(streams.ok());
  ASSERT_EQ(streams->size(), 2u);
  EXPECT_EQ((*streams)[0].last_acked_seq, 12u);
}

TEST_P(StoreConformance, SameAgentIdUnderAnotherCustomerIsAnotherEndpoint) {
  auto s = Open();
  const StreamInfo a = Register(*s, "Northwind", "cloned-golden-image");
  const StreamInfo b = Register(*s, "Contoso", "cloned-golden-image");
  EXPECT_NE(a.endpoint_id, b.endpoint_id);
  EXPECT_NE(a.customer_id, b.customer_id);
}

TEST_P(StoreConformance, UnknownCredentialsAreRefusedOneByOne) {
  auto s = Open();
  auto token = s->CreateToken("Northwind", kNow);
  ASSERT_TRUE(token.ok());
  const std::vector<v1::Hello> hellos{MakeHello("a", *token), MakeHello("b", "dpt_forged"),
                                      MakeHello("c", *token)};
  auto results = s->AuthenticateAndRegister(hellos, kNow);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].status().code(), Code::kUnauthenticated);
  EXPECT_TRUE(results[2].ok());
}

// A crash after commit, before the rollups were written: the next instance
// rolls the committed rows up, and the rollups equal a recomputation.
TEST_P(StoreConformance, RollupsCommittedButNotFlushedAreRecoveredAfterACrash) {
  std::int64_t customer = 0;
  {
    auto s = Open();
    const StreamInfo info = Register(*s, "Northwind", "agent-1");
    customer = info.customer_id;
    std::vector<BatchWrite> b1{MakeBatch(info, 1, 4, 40'000)};
    ASSERT_TRUE(Commit(*s, b1).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    std::vector<BatchWrite> b2{MakeBatch(info, 5, 10, 40'000)};
    ASSERT_TRUE(Commit(*s, b2).ok());
    // Gone here: rows 5..10 are durable, their rollups are not.
  }
  auto s = Open({.db = {}, .collector_lease = std::chrono::milliseconds(0)});
  ASSERT_TRUE(s->FlushRollups().ok());
  auto w = s->LoadWindow(customer, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 10);
  EXPECT_EQ(w->boot_ms.TotalWeight(), 10u);
  EXPECT_EQ(w->endpoints, 1);
  ExpectRollupsMatchRawRows(*s);
}

// A commit that fails changes nothing: not the watermark, not the rollups
// (whose in-memory share of the failed batch is discarded).
TEST_P(StoreConformance, AFailedCommitChangesNothingAndRollupsReplay) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> ok{MakeBatch(info, 1, 3)};
  ASSERT_TRUE(Commit(*s, ok).ok());
  backend_->FailReportInserts(true);
  std::vector<BatchWrite> blocked{MakeBatch(info, 4, 6)};
  EXPECT_FALSE(Commit(*s, blocked).ok());
  backend_->FailReportInserts(false);
  std::vector<BatchWrite> retry{MakeBatch(info, 4, 6)};
  ASSERT_TRUE(Commit(*s, retry).ok());
  EXPECT_EQ(retry[0].duplicates, 0u);
  EXPECT_EQ(retry[0].acked_through, 6u);
  EXPECT_EQ(*s->CountRawReports(), 6);
  ASSERT_TRUE(s->FlushRollups().ok());
  auto w = s->LoadWindow(info.customer_id, kNow - 30 * kDayMs, kNow + kDayMs);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reports, 6);
  ExpectRollupsMatchRawRows(*s);
}

TEST_P(StoreConformance, RetentionDropsOldRawReportsOnlyOnceRolledUp) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> old{MakeBatch(info, 1, 5)};
  ASSERT_TRUE(Commit(*s, old, kNow - 20 * kDayMs).ok());
  std::vector<BatchWrite> recent{MakeBatch(info, 6, 8)};
  ASSERT_TRUE(Commit(*s, recent).ok());
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(*s->CountRawReports(), 8);  // nothing rolled up yet: nothing deleted
  ASSERT_TRUE(s->FlushRollups().ok());
  ASSERT_TRUE(s->ApplyRetention(kNow).ok());
  EXPECT_EQ(*s->CountRawReports(), 3);  // the 20-day-old rows are past 14 days
  auto w = s->LoadWindow(info.customer_id, kNow - 30 * kDayMs, kNow + kDayMs);
  EXPECT_EQ(w->reports, 8);  // rollups keep them
  // Hourly rollups go after 93 days, daily ones after 400.
  ASSERT_TRUE(s->ApplyRetention(kNow + 100 * kDayMs).ok());
  auto rows = s->LoadRollupRows();
  ASSERT_TRUE(rows.ok());
  for (const auto& r : *rows) EXPECT_EQ(r.grain, Grain::kDay);
  EXPECT_FALSE(rows->empty());
}

// A device instance keeps the catalog verdict its agent attached, as of its
// latest observation.
TEST_P(StoreConformance, DeviceInstancesKeepTheAgentsLatestState) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  BatchWrite b;
  b.stream = info;
  for (std::uint64_t seq = 1; seq <= 2; ++seq) {
    IncomingReport in = MakeReport(seq, kNow - 3600'000 + static_cast<std::int64_t>(seq));
    auto* p = in.report.add_peripherals();
    p->set_bus(v1::PERIPHERAL_BUS_USB);
    p->set_vendor_id(0x046d);
    p->set_product_id(0x082d);
    p->add_interface_classes(0x0e);
    p->add_interface_classes(0x01);
    p->set_serial_hash("00112233");
    p->set_name(R"(HD "Pro" Webcam \ C920, 1080p)");
    p->set_state(seq == 1 ? v1::DEVICE_STATE_NO_DRIVER : v1::DEVICE_STATE_WORKING);
    if (seq == 2) {
      p->add_drivers("uvcvideo");
      p->add_drivers("snd-usb-audio");
      p->mutable_catalog()->set_verdict(v1::COMPATIBILITY_VERDICT_SUPPORTED);
      p->mutable_catalog()->set_source("kernel");
      p->mutable_catalog()->set_catalog_version("1-abc");
    }
    in.bytes = in.report.SerializeAsString();
    b.reports.push_back(std::move(in));
  }
  std::vector<BatchWrite> batches{std::move(b)};
  ASSERT_TRUE(Commit(*s, batches).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  auto got = s->LoadPeripheralInstances(info.customer_id, kNow - kDayMs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  const auto& inst = (*got)[0];
  EXPECT_EQ(inst.observations, 2);
  EXPECT_EQ(inst.fail_observations, 1);
  EXPECT_EQ(inst.last.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(inst.last.name(), R"(HD "Pro" Webcam \ C920, 1080p)");
  ASSERT_EQ(inst.last.drivers_size(), 2);
  EXPECT_EQ(inst.last.drivers(1), "snd-usb-audio");
  ASSERT_EQ(inst.last.interface_classes_size(), 2);
  EXPECT_EQ(inst.last.interface_classes(0), 0x0eu);
  ASSERT_TRUE(inst.last.has_catalog());
  EXPECT_EQ(inst.last.catalog().source(), "kernel");
  EXPECT_EQ(inst.last.catalog().catalog_version(), "1-abc");
}

// One endpoint's device instances are its own, and only within its customer.
TEST_P(StoreConformance, AnEndpointsDeviceInstancesAreItsOwn) {
  auto s = Open();
  const StreamInfo a = Register(*s, "Northwind", "agent-1");
  const StreamInfo b = Register(*s, "Northwind", "agent-2");
  const StreamInfo other = Register(*s, "Contoso", "agent-3");
  std::vector<BatchWrite> batches;
  std::uint32_t product = 0x1000;
  for (const StreamInfo* info : {&a, &b, &other}) {
    BatchWrite w;
    w.stream = *info;
    IncomingReport in = MakeReport(1, kNow - 3600'000);
    for (int d = 0; d < (info == &b ? 2 : 1); ++d) {
      auto* p = in.report.add_peripherals();
      p->set_bus(v1::PERIPHERAL_BUS_USB);
      p->set_vendor_id(0x04a9);
      p->set_product_id(++product);
      p->set_serial_hash("s" + std::to_string(product));
      p->set_state(v1::DEVICE_STATE_WORKING);
    }
    in.bytes = in.report.SerializeAsString();
    w.reports.push_back(std::move(in));
    batches.push_back(std::move(w));
  }
  ASSERT_TRUE(Commit(*s, batches).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  auto all = s->LoadPeripheralInstances(a.customer_id, kNow - kDayMs);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->size(), 3u);
  auto got = s->LoadEndpointPeripheralInstances(a.customer_id, b.endpoint_id, kNow - kDayMs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 2u);
  for (const auto& inst : *got) EXPECT_EQ(inst.endpoint_id, b.endpoint_id);
  EXPECT_EQ((*got)[0].last.product_id(), 0x1002u);
  EXPECT_EQ((*got)[1].last.product_id(), 0x1003u);
  // Another customer's endpoint is not found through this one.
  got = s->LoadEndpointPeripheralInstances(a.customer_id, other.endpoint_id, kNow - kDayMs);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  // Nor a device last seen before the window.
  got = s->LoadEndpointPeripheralInstances(a.customer_id, a.endpoint_id, kNow);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

TEST_P(StoreConformance, CheckFindsAWatermarkBelowItsStoredRows) {
  auto s = Open();
  const StreamInfo info = Register(*s, "Northwind", "agent-1");
  std::vector<BatchWrite> b{MakeBatch(info, 1, 5)};
  ASSERT_TRUE(Commit(*s, b).ok());
  auto clean = s->Check(true);
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  EXPECT_TRUE(clean->ok());
  EXPECT_EQ(clean->rows_checked, 5);
  backend_->SetWatermark(info.stream_id, 3);
  auto full = s->Check(true);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->problems.size(), 1u);
  EXPECT_NE(full->problems[0].find("its watermark is seq 3 but seq 5 is stored"), std::string::npos)
      << full->problems[0];
}

// The fleet-wide read gives each customer what the per-customer one does.
TEST_P(StoreConformance, AllCustomersWindowsEqualEachCustomersWindow) {
  auto s = Open();
  std::vector<BatchWrite> batches;
  for (int e = 0; e < 5; ++e) {
    const StreamInfo info =
        Register(*s, "customer-" + std::to_string(e % 3), "agent-" + std::to_string(e));
    BatchWrite b = MakeBatch(info, 1, 6 + e, 20'000 + 7'000 * e);
    for (std::size_t i = 0; i < b.reports.size() && e % 3 == 1; ++i) {
      // Customer 1's endpoints have a working and a failing device.
      auto& r = b.reports[i].report;
      for (int d = 0; d < 2; ++d) {
        auto* p = r.add_peripherals();
        p->set_bus(v1::PERIPHERAL_BUS_USB);
        p->set_vendor_id(0x04f9);
        p->set_product_id(0x0042 + d);
        p->set_name("device " + std::to_string(d));
        p->set_state(d == 0 ? v1::DEVICE_STATE_WORKING : v1::DEVICE_STATE_NO_DRIVER);
      }
      b.reports[i].bytes = r.SerializeAsString();
    }
    batches.push_back(std::move(b));
  }
  Register(*s, "customer-quiet", "agent-q");  // an endpoint, no reports
  ASSERT_TRUE(Commit(*s, batches).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  const std::int64_t from = kNow - 30 * kDayMs;
  const std::int64_t to = kNow + kDayMs;
  auto all = s->LoadWindows(from, to);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  auto customers = s->ListCustomers();
  ASSERT_TRUE(customers.ok());
  ASSERT_EQ(customers->size(), 4u);
  for (const auto& c : *customers) {
    SCOPED_TRACE(c.name);
    auto one = s->LoadWindow(c.id, from, to);
    ASSERT_TRUE(one.ok());
    const auto found = all->find(c.id);
    const scoring::WindowRollup w = found == all->end() ? scoring::WindowRollup{} : found->second;
    EXPECT_EQ(w.endpoints, one->endpoints);
    EXPECT_EQ(w.reports, one->reports);
    EXPECT_EQ(w.boot_ms.Encode(), one->boot_ms.Encode());
    EXPECT_EQ(w.latency.Encode(), one->latency.Encode());
    EXPECT_EQ(w.latency_windows, one->latency_windows);
    EXPECT_EQ(w.peripherals_working, one->peripherals_working);
    EXPECT_EQ(w.peripherals_failed, one->peripherals_failed);
    EXPECT_EQ(w.peripheral_reconnects, one->peripheral_reconnects);
    if (c.name == "customer-1") {
      EXPECT_EQ(w.peripherals_failed, 2);  // one failing device on each of two endpoints
      EXPECT_EQ(w.peripherals_working, 2);
    }
    if (c.name == "customer-quiet") {
      EXPECT_EQ(w.reports, 0);
    }
  }
  EXPECT_EQ((*all)[(*customers)[0].id].reports + (*all)[(*customers)[1].id].reports +
                (*all)[(*customers)[2].id].reports + (*all)[(*customers)[3].id].reports,
            6 + 7 + 8 + 9 + 10);
}

TEST_P(StoreConformance, EndpointsListWithTheirSiteRollupsAndLatestReport) {
  auto s = Open();
  const StreamInfo a1 = Register(*s, "Alpha", "a1");
  const StreamInfo a2 = Register(*s, "Alpha", "b2");
  const StreamInfo b1 = Register(*s, "Beta", "c1");
  std::vector<BatchWrite> batches{MakeBatch(a1, 1, 6, 30'000), MakeBatch(a2, 1, 3, 60'000),
                                  MakeBatch(b1, 1, 2)};
  ASSERT_TRUE(Commit(*s, batches).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  // A late report observed before the newest one does not replace it.
  BatchWrite late;
  late.stream = a1;
  late.reports.push_back(MakeReport(7, kNow - 2 * kHourMs));
  {
    // with a session window of a known display protocol
    auto* w = late.reports[0].report.add_sessions();
    w->set_protocol(v1::DISPLAY_PROTOCOL_ICA);
    w->set_window_start_unix_ms(kNow - 2 * kHourMs);
    w->set_window_s(60);
    w->set_rtt_p95_us(90'000);
    late.reports[0].bytes = late.reports[0].report.SerializeAsString();
  }
  std::vector<BatchWrite> more{std::move(late)};
  ASSERT_TRUE(Commit(*s, more).ok());
  ASSERT_TRUE(s->FlushRollups().ok());

  auto list = s->ListEndpoints(a1.customer_id);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, a1.endpoint_id);
  EXPECT_EQ((*list)[0].agent_id, "a1");
  EXPECT_EQ((*list)[0].hostname, "tc-a1");
  EXPECT_EQ((*list)[0].site, "site-a");
  EXPECT_EQ((*list)[1].site, "site-b");
  EXPECT_EQ((*list)[0].last_seen_ms, kNow - kHourMs + std::int64_t{6} * 1000);
  EXPECT_FALSE((*list)[0].latest_report.has_value());  // only LoadEndpoint reads it

  auto one = s->LoadEndpoint(a1.customer_id, a1.endpoint_id);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_TRUE(one->has_value());
  ASSERT_TRUE((*one)->latest_report.has_value());
  EXPECT_EQ((*one)->latest_report->seq(), 6u);
  EXPECT_EQ((*one)->latest_report->observed_at_unix_ms(), (*one)->last_seen_ms);
  // Another customer's endpoint is not this customer's.
  auto other = s->LoadEndpoint(a1.customer_id, b1.endpoint_id);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());

  const std::int64_t from = kNow - 30 * kDayMs;
  const std::int64_t to = kNow + kDayMs;
  auto windows = s->LoadEndpointWindows(a1.customer_id, from, to);
  ASSERT_TRUE(windows.ok()) << windows.status().ToString();
  ASSERT_EQ(windows->size(), 2u);
  EXPECT_EQ((*windows)[a1.endpoint_id].reports, 7);
  EXPECT_EQ((*windows)[a2.endpoint_id].reports, 3);
  auto customer = s->LoadWindow(a1.customer_id, from, to);
  ASSERT_TRUE(customer.ok());
  // Latency by protocol, at both levels.
  ASSERT_EQ((*windows)[a1.endpoint_id].latency_by_protocol.size(), 1u);
  EXPECT_EQ((*windows)[a1.endpoint_id].latency_by_protocol[v1::DISPLAY_PROTOCOL_ICA].TotalWeight(),
            60u);
  EXPECT_TRUE((*windows)[a2.endpoint_id].latency_by_protocol.empty());
  EXPECT_EQ(customer->latency_by_protocol[v1::DISPLAY_PROTOCOL_ICA].TotalWeight(), 60u);
  ExpectRollupsMatchRawRows(*s);
  SparseHistogram boots = (*windows)[a1.endpoint_id].boot_ms;
  boots.Merge((*windows)[a2.endpoint_id].boot_ms);
  EXPECT_EQ(boots.Encode(), customer->boot_ms.Encode());

  auto days = s->LoadEndpointDays(a1.customer_id, a2.endpoint_id, from, to);
  ASSERT_TRUE(days.ok()) << days.status().ToString();
  std::int64_t reports = 0;
  for (const auto& [day, w] : *days) {
    EXPECT_EQ(day % kDayMs, 0);
    reports += w.reports;
  }
  EXPECT_EQ(reports, 3);
  auto none = s->LoadEndpointDays(b1.customer_id, a2.endpoint_id, from, to);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  // The customer's own days agree with its window, and count who reported.
  auto customer_days = s->LoadCustomerDays(a1.customer_id, from, to);
  ASSERT_TRUE(customer_days.ok()) << customer_days.status().ToString();
  std::int64_t customer_reports = 0;
  for (const auto& [day, w] : *customer_days) {
    EXPECT_EQ(day % kDayMs, 0);
    EXPECT_GE(w.endpoints, 1);
    EXPECT_LE(w.endpoints, 2);
    customer_reports += w.reports;
  }
  EXPECT_EQ(customer_reports, customer->reports);
  // One metric's cells, endpoint by endpoint.
  auto cells = s->LoadEndpointDayCells(a1.customer_id, Metric::kReports, from, to);
  ASSERT_TRUE(cells.ok()) << cells.status().ToString();
  ASSERT_EQ(cells->size(), 2u);
  std::int64_t a2_reports = 0;
  for (const auto& [day, c] : (*cells)[a2.endpoint_id]) a2_reports += c.count;
  EXPECT_EQ(a2_reports, 3);
  auto latency = s->LoadEndpointDayCells(a1.customer_id, Metric::kLatency, from, to);
  ASSERT_TRUE(latency.ok());
  ASSERT_EQ(latency->size(), 2u);
  std::uint64_t weight = 0;
  for (const auto& [endpoint, days_of] : *latency) {
    for (const auto& [day, c] : days_of) weight += c.hist.TotalWeight();
  }
  EXPECT_EQ(weight, customer->latency.TotalWeight());
  auto beta = s->LoadEndpointDayCells(b1.customer_id, Metric::kReports, from, to);
  ASSERT_TRUE(beta.ok());
  ASSERT_EQ(beta->size(), 1u);  // its own endpoint only
  EXPECT_TRUE(beta->contains(b1.endpoint_id));
}

TEST_P(StoreConformance, ScoresRankCustomersFromStoredRollups) {
  auto s = Open();
  const StreamInfo fast = Register(*s, "Fast", "a");
  const StreamInfo slow = Register(*s, "Slow", "b");
  std::vector<BatchWrite> b{MakeBatch(fast, 1, 5, 20'000), MakeBatch(slow, 1, 5, 110'000)};
  ASSERT_TRUE(Commit(*s, b).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  auto scores = ScoreAllCustomers(*s, scoring::Policy{}, kNow);
  ASSERT_TRUE(scores.ok());
  ASSERT_EQ(scores->size(), 2u);
  EXPECT_EQ((*scores)[0].customer.name, "Fast");
  EXPECT_DOUBLE_EQ(*(*scores)[0].score.boot.score, 100);
  EXPECT_DOUBLE_EQ(*(*scores)[1].score.boot.score, 0);
  EXPECT_LT(*(*scores)[1].score.tps, *(*scores)[0].score.tps);
}

SignalBatch Parsed(SignalKind kind, const std::string& csv) {
  ParseOutcome o = ParseSignals(kind, SignalFormat::kCsv, csv);
  EXPECT_TRUE(o.batch.has_value()) << o.Summary();
  return o.batch ? std::move(*o.batch) : SignalBatch{};
}

std::int64_t CustomerId(Store& s, const std::string& name) {
  auto customers = s.ListCustomers();
  if (!customers.ok()) {
    ADD_FAILURE() << customers.status().ToString();
    return 0;
  }
  for (const Customer& c : *customers) {
    if (c.name == name) return c.id;
  }
  ADD_FAILURE() << "no customer " << name;
  return 0;
}

TEST_P(StoreConformance, SignalImportsReplaceByKeyAndTheSameFileIsANoOp) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  ASSERT_TRUE(s->CreateToken("Contoso", kNow).ok());
  const std::string first =
      "customer,ticket_id,opened,first_response,resolved,severity\n"
      "Northwind,T1,2026-11-20T09:00:00Z,,,2\n"
      "Northwind,T2,2026-11-20T10:00:00Z,2026-11-20T10:20:00Z,2026-11-20T12:00:00Z,3\n"
      "Contoso,T1,2026-11-20T11:00:00Z,,,3\n";
  auto r = s->ImportSignals(Parsed(SignalKind::kTickets, first), kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->already_imported);
  EXPECT_EQ(r->rows, 3u);
  const std::int64_t northwind = CustomerId(*s, "Northwind");
  auto loaded = s->LoadSignals(northwind);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->signals.tickets.size(), 2u);
  const scoring::Ticket& t2 = loaded->signals.tickets[1];
  EXPECT_EQ(t2.id, "T2");
  EXPECT_EQ(t2.severity, "3");
  ASSERT_TRUE(t2.first_response_ms.has_value());
  EXPECT_EQ(*t2.first_response_ms - t2.opened_ms, 20 * 60'000);
  EXPECT_FALSE(loaded->signals.tickets[0].resolved_ms.has_value());

  // The same bytes again: nothing stored, and it says so.
  auto again = s->ImportSignals(Parsed(SignalKind::kTickets, first), kNow + 1000);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->already_imported);
  EXPECT_EQ(s->LoadSignals(northwind)->signals, loaded->signals);

  // A later file: T1 answered and resolved replaces T1; T3 is new.
  const std::string later =
      "customer,ticket_id,opened,first_response,resolved,severity\n"
      "Northwind,T1,2026-11-20T09:00:00Z,2026-11-20T09:05:00Z,2026-11-20T09:45:00Z,1\n"
      "Northwind,T3,2026-11-21T09:00:00Z,,,4\n";
  ASSERT_TRUE(s->ImportSignals(Parsed(SignalKind::kTickets, later), kNow + 2000).ok());
  auto now = s->LoadSignals(northwind);
  ASSERT_EQ(now->signals.tickets.size(), 3u);
  EXPECT_EQ(now->signals.tickets[0].severity, "1");
  EXPECT_TRUE(now->signals.tickets[0].resolved_ms.has_value());
  EXPECT_EQ(now->signals.tickets[1], t2);
  EXPECT_EQ(s->LoadSignals(CustomerId(*s, "Contoso"))->signals.tickets.size(), 1u);

  // The import log: the two files, newest first; the repeat is not logged.
  auto log = s->ListImports(10);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ((*log)[0].kind, SignalKind::kTickets);
  EXPECT_EQ((*log)[0].imported_ms, kNow + 2000);
  EXPECT_EQ((*log)[0].rows, 2);
  EXPECT_EQ((*log)[0].content_sha256, Sha256Hex(later));
  EXPECT_EQ((*log)[1].imported_ms, kNow);
  EXPECT_EQ((*log)[1].rows, 3);
  EXPECT_EQ(s->ListImports(1)->size(), 1u);
}

TEST_P(StoreConformance, AnImportNamingAnUnknownCustomerStoresNothing) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  const std::string typo =
      "customer,date\n"
      "Northwind,2026-10-01\n"
      "Nrothwind,2026-10-02\n";
  auto r = s->ImportSignals(Parsed(SignalKind::kReviews, typo), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("line 3, field customer: 'Nrothwind'"), std::string::npos)
      << r.status().message();
  EXPECT_TRUE(s->LoadSignals(CustomerId(*s, "Northwind"))->signals.review_dates_ms.empty());
  EXPECT_EQ(backend_->QueryInt("SELECT count(*) FROM signal_imports"), 0);
  // Fixed, the file imports.
  const std::string fixed = "customer,date\nNorthwind,2026-10-01\nNorthwind,2026-10-02\n";
  ASSERT_TRUE(s->ImportSignals(Parsed(SignalKind::kReviews, fixed), kNow).ok());
  EXPECT_EQ(s->LoadSignals(CustomerId(*s, "Northwind"))->signals.review_dates_ms.size(), 2u);
}

TEST_P(StoreConformance, EveryKindOfSignalReadsBackAsImported) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  ASSERT_TRUE(s->ImportSignals(Parsed(SignalKind::kSurveys,
                                      "customer,date,nps,ces,ves,respondents\n"
                                      "Northwind,2026-06-01,12.5,,6,30\n"
                                      "Northwind,2026-11-01,-40,4.25,,7\n"),
                               kNow)
                  .ok());
  ASSERT_TRUE(s->ImportSignals(
                   Parsed(SignalKind::kContracts,
                          "customer,tier,annual_value,start,renewal,renewal_status,"
                          "expected_savings,realised_savings,sla_boot_s,sla_boot_pct,sla_rtt_ms,"
                          "sla_rtt_pct,sla_peripherals_pct,sla_availability_pct\n"
                          "Northwind,S,1250000.5,2024-03-01,2027-03-01,renewed,100000,,30,95,"
                          "100,99,,99.9\n"),
                   kNow)
                  .ok());
  ASSERT_TRUE(
      s->ImportSignals(Parsed(SignalKind::kReviews, "customer,date\nNorthwind,2026-09-15\n"), kNow)
          .ok());
  auto got = s->LoadSignals(CustomerId(*s, "Northwind"));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const scoring::BusinessSignals& b = got->signals;
  ASSERT_EQ(b.surveys.size(), 2u);
  EXPECT_EQ(b.surveys[0].nps, 12.5);
  EXPECT_FALSE(b.surveys[0].ces.has_value());
  EXPECT_EQ(b.surveys[0].ves, 6);
  EXPECT_EQ(b.surveys[1].nps, -40);
  EXPECT_EQ(b.surveys[1].ces, 4.25);
  EXPECT_EQ(b.surveys[1].respondents, 7);
  ASSERT_TRUE(b.contract.has_value());
  EXPECT_EQ(b.contract->tier, 'S');
  EXPECT_EQ(b.contract->annual_value, 1250000.5);
  EXPECT_EQ(b.contract->renewal_status, scoring::RenewalStatus::kRenewed);
  EXPECT_EQ(b.contract->expected_savings, 100000);
  EXPECT_FALSE(b.contract->realised_savings.has_value());
  EXPECT_EQ(got->sla, (SlaTargets{.boot_s = 30,
                                  .boot_pct = 95,
                                  .rtt_ms = 100,
                                  .rtt_pct = 99,
                                  .peripherals_pct = std::nullopt,
                                  .availability_pct = 99.9}));
  ASSERT_EQ(b.review_dates_ms.size(), 1u);
  // A customer with nothing imported has nothing, not defaults.
  ASSERT_TRUE(s->CreateToken("Contoso", kNow).ok());
  EXPECT_EQ(s->LoadSignals(CustomerId(*s, "Contoso"))->signals, scoring::BusinessSignals{});
}

TEST_P(StoreConformance, HealthKeepsOneSnapshotADayAndRecordsRiskChanges) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  const std::int64_t id = CustomerId(*s, "Northwind");
  const std::int64_t day = kNow / kDayMs * kDayMs;
  auto snap = [&](std::int64_t d, const char* risk, std::optional<double> lhi) {
    HealthSnapshot h;
    h.customer_id = id;
    h.day_ms = d;
    h.tps = 80;
    h.lhi = lhi;
    h.coverage = 0.6;
    h.risk = risk;
    return h;
  };
  // The first assessment is not a change.
  auto first = s->RecordHealth(snap(day - kDayMs, "low", 72.5), {}, kNow - kDayMs);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(first->has_value());
  auto worse =
      s->RecordHealth(snap(day, "medium", 55), {"LHI 55.0 < 60", "Value 30: poor band"}, kNow);
  ASSERT_TRUE(worse.ok()) << worse.status().ToString();
  ASSERT_TRUE(worse->has_value());
  EXPECT_EQ((*worse)->from_risk, "low");
  EXPECT_EQ((*worse)->to_risk, "medium");
  // Recorded again the same day with the same risk: the snapshot is
  // replaced, no new event.
  auto again = s->RecordHealth(snap(day, "medium", 54), {"LHI 54.0 < 60"}, kNow + 1000);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto worst = s->RecordHealth(snap(day, "high", 38), {"LHI 38.0 < 40"}, kNow + 2000);
  ASSERT_TRUE(worst.ok());
  ASSERT_TRUE(worst->has_value());
  EXPECT_EQ((*worst)->from_risk, "medium");

  auto history = s->LoadHistory(id, day - 10 * kDayMs);
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0], snap(day - kDayMs, "low", 72.5));
  EXPECT_EQ((*history)[1], snap(day, "high", 38));
  EXPECT_EQ(s->LoadHistory(id, day)->size(), 1u);
  auto events = s->LoadRiskEvents(id);
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].reasons,
            (std::vector<std::string>{"LHI 55.0 < 60", "Value 30: poor band"}));
  EXPECT_EQ((*events)[0].at_ms, kNow);
  EXPECT_EQ((*events)[1].to_risk, "high");
}

TEST_P(StoreConformance, ABatchOfHealthRecordsIsOneRoundInOrder) {
  auto s = Open();
  for (const char* name : {"Northwind", "Contoso", "Fabrikam"}) {
    ASSERT_TRUE(s->CreateToken(name, kNow).ok());
  }
  const std::int64_t north = CustomerId(*s, "Northwind");
  const std::int64_t contoso = CustomerId(*s, "Contoso");
  const std::int64_t fabrikam = CustomerId(*s, "Fabrikam");
  const std::int64_t day = kNow / kDayMs * kDayMs;
  auto record = [&](std::int64_t id, std::int64_t d, const char* risk, double lhi,
                    std::vector<std::string> reasons = {}) {
    HealthRecord r;
    r.snapshot = {
        .customer_id = id, .day_ms = d, .tps = 70, .lhi = lhi, .coverage = 1, .risk = risk};
    r.reasons = std::move(reasons);
    return r;
  };
  const std::vector<HealthRecord> yesterday = {record(north, day - kDayMs, "low", 90),
                                               record(contoso, day - kDayMs, "low", 70)};
  auto first = s->RecordHealthBatch(yesterday, kNow - kDayMs);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, (std::vector<std::optional<RiskEvent>>{std::nullopt, std::nullopt}));

  // Northwind holds, Contoso worsens, Fabrikam is new (not a change), and
  // Fabrikam recorded again in the same round sees its first record.
  const std::vector<HealthRecord> today = {
      record(north, day, "low", 91), record(contoso, day, "high", 35, {"LHI 35.0 < 40"}),
      record(fabrikam, day, "low", 65), record(fabrikam, day, "medium", 55, {"LHI 55.0 < 60"})};
  auto round = s->RecordHealthBatch(today, kNow);
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  ASSERT_EQ(round->size(), 4u);
  EXPECT_FALSE((*round)[0].has_value());
  ASSERT_TRUE((*round)[1].has_value());
  EXPECT_EQ((*round)[1]->customer_id, contoso);
  EXPECT_EQ((*round)[1]->from_risk, "low");
  EXPECT_EQ((*round)[1]->to_risk, "high");
  EXPECT_EQ((*round)[1]->reasons, std::vector<std::string>{"LHI 35.0 < 40"});
  EXPECT_FALSE((*round)[2].has_value());
  ASSERT_TRUE((*round)[3].has_value());
  EXPECT_EQ((*round)[3]->from_risk, "low");
  EXPECT_EQ((*round)[3]->to_risk, "medium");

  EXPECT_EQ(*s->LoadHistory(north, day), std::vector<HealthSnapshot>{today[0].snapshot});
  EXPECT_EQ(*s->LoadHistory(contoso, day - kDayMs),
            (std::vector<HealthSnapshot>{yesterday[1].snapshot, today[1].snapshot}));
  EXPECT_EQ(*s->LoadHistory(fabrikam, 0), std::vector<HealthSnapshot>{today[3].snapshot});
  EXPECT_TRUE(s->LoadRiskEvents(north)->empty());
  EXPECT_EQ(s->LoadRiskEvents(contoso)->size(), 1u);
  EXPECT_EQ(s->LoadRiskEvents(fabrikam)->size(), 1u);
  // An empty round is no error and stores nothing.
  auto none = s->RecordHealthBatch({}, kNow + 1);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreConformance, AnOverrideReplacesTheFactorsEarlierOne) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  const std::int64_t id = CustomerId(*s, "Northwind");
  ASSERT_TRUE(s->SetOverride(id,
                             {.factor = scoring::Factor::kValue,
                              .value = 40,
                              .reason = "first",
                              .expires_ms = kNow + kDayMs},
                             kNow)
                  .ok());
  ASSERT_TRUE(s->SetOverride(id,
                             {.factor = scoring::Factor::kBrand,
                              .value = 90,
                              .reason = "press award",
                              .expires_ms = kNow + 2 * kDayMs},
                             kNow + 1)
                  .ok());
  ASSERT_TRUE(s->SetOverride(id,
                             {.factor = scoring::Factor::kValue,
                              .value = 70,
                              .reason = "expansion signed",
                              .expires_ms = kNow + 30 * kDayMs},
                             kNow + 2)
                  .ok());
  auto got = s->LoadSignals(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->signals.overrides.size(), 2u);
  EXPECT_EQ(got->signals.overrides[0].factor, scoring::Factor::kBrand);
  EXPECT_EQ(got->signals.overrides[1], (scoring::Override{.factor = scoring::Factor::kValue,
                                                          .value = 70,
                                                          .reason = "expansion signed",
                                                          .expires_ms = kNow + 30 * kDayMs}));
}

// The vendor's book on both backends: at-risk first with its reasons, a
// snapshot a day, a risk change recorded once.
TEST_P(StoreConformance, HealthRanksTheBookAndRecordsRiskChanges) {
  auto s = Open();
  for (const char* c : {"Northwind", "Contoso", "Fabrikam"}) {
    const StreamInfo info = Register(*s, c, std::string("agent-") + c);
    std::vector<BatchWrite> b{MakeBatch(info, 1, 30, 20'000)};  // 20 s boots: good
    ASSERT_TRUE(Commit(*s, b).ok());
  }
  ASSERT_TRUE(s->FlushRollups().ok());
  ASSERT_TRUE(s->ImportSignals(Parsed(SignalKind::kSurveys,
                                      "customer,date,nps,ces,ves,respondents\n"
                                      "Northwind,2026-11-01,55,6,6,40\n"
                                      "Contoso,2026-11-01,5,5,5,12\n"),
                               kNow)
                  .ok());
  HealthOptions options;
  // The tests' clock: surveys of 2026-11-01 are a few days old.
  auto book = AssessAllCustomers(*s, options, kNow);
  ASSERT_TRUE(book.ok()) << book.status().ToString();
  ASSERT_EQ(book->size(), 3u);
  EXPECT_EQ((*book)[0].technical.customer.name, "Contoso");  // NPS 5: high
  EXPECT_EQ((*book)[0].health.risk, scoring::Risk::kHigh);
  ASSERT_FALSE((*book)[0].health.risk_reasons.empty());
  EXPECT_NE((*book)[0].health.risk_reasons[0].find("NPS 5 < 20"), std::string::npos);
  // Fabrikam has telemetry only: coverage 32%, LHI its TPS.
  const CustomerHealth& fabrikam =
      (*book)[1].technical.customer.name == "Fabrikam" ? (*book)[1] : (*book)[2];
  EXPECT_NEAR(fabrikam.health.coverage, 0.32, 1e-9);
  ASSERT_TRUE(fabrikam.health.lhi.has_value());
  EXPECT_NEAR(*fabrikam.health.lhi, *fabrikam.technical.score.tps, 1e-9);
  for (const CustomerHealth& c : *book) EXPECT_FALSE(c.risk_change.has_value());

  // Contoso's next survey is better: the same day's assessment records the
  // change once, with the new risk, and replaces the day's snapshot.
  ASSERT_TRUE(s->ImportSignals(Parsed(SignalKind::kSurveys,
                                      "customer,date,nps,ces,ves,respondents\n"
                                      "Contoso,2026-11-10,45,6,6,15\n"),
                               kNow + 1000)
                  .ok());
  auto again = AssessAllCustomers(*s, options, kNow + 2000);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  int changes = 0;
  for (const CustomerHealth& c : *again) {
    if (!c.risk_change) continue;
    ++changes;
    EXPECT_EQ(c.technical.customer.name, "Contoso");
    EXPECT_EQ(c.risk_change->from_risk, "high");
  }
  EXPECT_EQ(changes, 1);
  const std::int64_t contoso = CustomerId(*s, "Contoso");
  EXPECT_EQ(s->LoadRiskEvents(contoso)->size(), 1u);
  EXPECT_EQ(s->LoadHistory(contoso, 0)->size(), 1u);
  const nlohmann::json j = HealthToJson(*again, options, kNow + 2000);
  EXPECT_EQ(j["customers"].size(), 3u);
  EXPECT_EQ(j["score_version"], "lhi-v1");
}

// The technical drivers' sources (which site, pool or protocol loses the
// points) come from a cache shared by the health book and the API's detail:
// reused while fresh, read again from the endpoint rollups once stale, and
// with a round's budget spent, the stale entry is used rather than read.
TEST_P(StoreConformance, LossSourcesAreReusedWhileFreshAndReadAgainWhenStale) {
  auto s = Open();
  const StreamInfo slow = Register(*s, "Alpha", "a1");  // site-a, 90 s boots
  const StreamInfo fast = Register(*s, "Alpha", "b1");  // site-b, 20 s boots
  std::vector<BatchWrite> b{MakeBatch(slow, 1, 30, 90'000), MakeBatch(fast, 1, 30, 20'000)};
  ASSERT_TRUE(Commit(*s, b).ok());
  ASSERT_TRUE(s->FlushRollups().ok());
  constexpr std::int64_t kMaxAge = 60'000;
  SourceCache cache(kMaxAge);
  HealthOptions o;
  o.record = false;
  o.source_cache = &cache;
  auto assess = [&](std::int64_t now) {
    auto book = AssessAllCustomers(*s, o, now);
    EXPECT_TRUE(book.ok()) << book.status().ToString();
    EXPECT_EQ(book.ok() ? book->size() : 0u, 1u);
    return book.ok() && book->size() == 1 ? (*book)[0] : CustomerHealth{};
  };
  auto boot_source = [](const CustomerHealth& h) {
    return h.technical.score.boot.source ? h.technical.score.boot.source->name : "(none)";
  };

  const CustomerHealth first = assess(kNow);
  EXPECT_EQ(boot_source(first), "site-a");
  EXPECT_EQ(first.sources_ms, kNow);
  EXPECT_EQ(CustomerHealthToJson(first)["sources_unix_ms"], kNow);
  const std::int64_t alpha = first.technical.customer.id;
  ASSERT_TRUE(cache.Find(alpha).has_value());
  EXPECT_EQ(cache.Find(alpha)->computed_ms, kNow);

  // An entry the rollups cannot have made shows whether it was reused.
  SourceCache::Entry planted = *cache.Find(alpha);
  planted.boot->name = "site-planted";
  cache.Put(alpha, planted);
  const CustomerHealth fresh = assess(kNow + kMaxAge - 1);
  EXPECT_EQ(boot_source(fresh), "site-planted");
  EXPECT_EQ(fresh.sources_ms, kNow);

  const CustomerHealth stale = assess(kNow + kMaxAge);
  EXPECT_EQ(boot_source(stale), "site-a");
  EXPECT_EQ(stale.sources_ms, kNow + kMaxAge);
  EXPECT_EQ(cache.Find(alpha)->computed_ms, kNow + kMaxAge);

  // A round's budget: the stale entry is read again while it lasts, used
  // once it is spent.
  cache.Put(alpha, planted);
  std::size_t budget = 0;
  o.source_budget = &budget;
  EXPECT_EQ(boot_source(assess(kNow + 3 * kMaxAge)), "site-planted");
  budget = 1;
  EXPECT_EQ(boot_source(assess(kNow + 3 * kMaxAge)), "site-a");
  EXPECT_EQ(budget, 0u);
  // Without a cache, sources are read at every assessment.
  o.source_cache = nullptr;
  o.source_budget = nullptr;
  EXPECT_EQ(assess(kNow + 3 * kMaxAge + 5).sources_ms, kNow + 3 * kMaxAge + 5);
}

TEST_P(StoreConformance, WebhookDeliveriesAreQueuedOnceLeasedRetriedAndFinished) {
  auto a = Open();
  auto b = Open();  // a second collector sharing the store
  auto d = [](std::string webhook, std::string key) {
    WebhookDelivery w;
    w.webhook = std::move(webhook);
    w.event_key = std::move(key);
    w.payload = "{\"id\":\"" + w.event_key + "\"}";
    return w;
  };
  constexpr std::int64_t kT = 1'700'000'000'000;
  auto added =
      a->EnqueueDeliveries({d("crm", "risk:1"), d("crm", "risk:2"), d("pager", "risk:1")}, kT);
  ASSERT_TRUE(added.ok()) << added.status().message();
  EXPECT_EQ(*added, 3u);
  // The same event again, from either collector: held once.
  auto again = b->EnqueueDeliveries({d("crm", "risk:1")}, kT + 5);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);

  // A claim leases: the other collector gets the rest, then nothing.
  auto first = a->ClaimDeliveries("crm", kT, 30'000, 1);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].event_key, "risk:1");
  EXPECT_EQ((*first)[0].payload, "{\"id\":\"risk:1\"}");
  EXPECT_EQ((*first)[0].attempts, 1);
  auto second = b->ClaimDeliveries("crm", kT, 30'000, 10);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].event_key, "risk:2");
  EXPECT_TRUE(a->ClaimDeliveries("crm", kT + 1, 30'000, 10)->empty());

  // Delivered: never again, and queuing it again is still a no-op.
  ASSERT_TRUE(a->CompleteDelivery((*first)[0].id, kT + 10).ok());
  EXPECT_EQ(*b->EnqueueDeliveries({d("crm", "risk:1")}, kT + 20), 0u);
  // Failed: due again when told, counted as a second attempt.
  ASSERT_TRUE(b->FailDelivery((*second)[0].id, "HTTP 503", kT + 2'000, false).ok());
  EXPECT_TRUE(a->ClaimDeliveries("crm", kT + 1'999, 30'000, 10)->empty());
  auto retry = a->ClaimDeliveries("crm", kT + 2'000, 30'000, 10);
  ASSERT_TRUE(retry.ok());
  ASSERT_EQ(retry->size(), 1u);
  EXPECT_EQ((*retry)[0].attempts, 2);
  EXPECT_EQ((*retry)[0].last_error, "HTTP 503");
  // A lease that ran out (its collector died mid-delivery) is claimed again.
  auto relet = b->ClaimDeliveries("crm", kT + 2'000 + 30'000, 30'000, 10);
  ASSERT_TRUE(relet.ok());
  ASSERT_EQ(relet->size(), 1u);
  EXPECT_EQ((*relet)[0].attempts, 3);
  // Abandoned: never again.
  ASSERT_TRUE(b->FailDelivery((*relet)[0].id, "gave up after 24 h", kT + 40'000, true).ok());
  EXPECT_TRUE(a->ClaimDeliveries("crm", kT + 86'400'000, 30'000, 10)->empty());
  EXPECT_EQ(a->FailDelivery((*first)[0].id, "late", kT, false).code(), Code::kNotFound)
      << "a delivered one cannot fail";
  EXPECT_EQ(a->CompleteDelivery(999'999, kT).code(), Code::kNotFound);

  // Each webhook has its own queue.
  auto pager = b->ClaimDeliveries("pager", kT, 30'000, 10);
  ASSERT_TRUE(pager.ok());
  ASSERT_EQ(pager->size(), 1u);
  EXPECT_EQ((*pager)[0].event_key, "risk:1");

  auto listed = a->ListDeliveries("crm");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].delivered_ms, kT + 10);
  EXPECT_FALSE((*listed)[0].abandoned_ms.has_value());
  EXPECT_EQ((*listed)[1].abandoned_ms, kT + 40'000);
  EXPECT_EQ((*listed)[1].last_error, "gave up after 24 h");

  // Pruning forgets the finished ones only.
  auto pruned = b->PruneDeliveries(kT + 50'000);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 2u);
  EXPECT_TRUE(a->ListDeliveries("crm")->empty());
  EXPECT_EQ(a->ListDeliveries("pager")->size(), 1u);
}

TEST_P(StoreConformance, ApiTokensAreHashedScopedAndRevocable) {
  auto s = Open();
  ASSERT_TRUE(s->CreateToken("Northwind", kNow).ok());
  const std::int64_t northwind = CustomerId(*s, "Northwind");
  auto vendor = s->CreateApiToken(ApiRole::kVendor, std::nullopt, kNow);
  ASSERT_TRUE(vendor.ok()) << vendor.status().ToString();
  EXPECT_EQ(vendor->second.rfind("dpa_", 0), 0u);
  auto admin = s->CreateApiToken(ApiRole::kCustomerAdmin, northwind, kNow + 1);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  ASSERT_TRUE(admin->first.customer.has_value());
  EXPECT_EQ(admin->first.customer->name, "Northwind");
  // A grant that makes no sense is refused, naming the flag.
  EXPECT_EQ(s->CreateApiToken(ApiRole::kCustomerAdmin, std::nullopt, kNow).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->CreateApiToken(ApiRole::kVendor, northwind, kNow).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->CreateApiToken(ApiRole::kCustomerAdmin, 999'999, kNow).status().code(),
            Code::kNotFound);
  // Only hashes are stored.
  EXPECT_EQ(backend_->QueryInt("SELECT count(*) FROM api_tokens WHERE token_hash = '" +
                               vendor->second + "'"),
            0);
  auto who = s->AuthenticateApiToken(admin->second);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(*who, admin->first);
  EXPECT_EQ(s->AuthenticateApiToken(vendor->second)->role, ApiRole::kVendor);
  EXPECT_EQ(s->AuthenticateApiToken("dpa_nope").status().code(), Code::kUnauthenticated);

  ASSERT_TRUE(s->RevokeApiToken(admin->first.id, kNow + 5).ok());
  ASSERT_TRUE(s->RevokeApiToken(admin->first.id, kNow + 9).ok());  // keeps the first time
  EXPECT_EQ(s->AuthenticateApiToken(admin->second).status().code(), Code::kUnauthenticated);
  EXPECT_EQ(s->RevokeApiToken(424242, kNow).code(), Code::kNotFound);
  auto list = s->ListApiTokens();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0], vendor->first);
  EXPECT_EQ((*list)[1].revoked_ms, kNow + 5);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& param) { return param.param; });

// ---- both backends side by side

// The same input gives the same answers from every read query.
TEST(StoreBackends, EqualInputGivesEqualReadResults) {
  auto sqlite_backend = MakeBackend("sqlite");
  auto pg_backend = MakeBackend("postgresql");
  auto a = sqlite_backend->Open();
  auto b = pg_backend->Open();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*a)->schema_version(), (*b)->schema_version());
  for (Store* s : {a->get(), b->get()}) {
    std::vector<BatchWrite> batches;
    for (int e = 0; e < 6; ++e) {
      const StreamInfo info =
          Register(*s, e % 2 ? "Northwind" : "Contoso", "agent-" + std::to_string(e));
      batches.push_back(MakeBatch(info, 1, 40, 20'000 + 9'000 * e));
    }
    ASSERT_TRUE(Commit(*s, batches).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    // A second round over the same buckets, of several customers at once:
    // histograms merge into the stored ones.
    std::vector<BatchWrite> more;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      more.push_back(MakeBatch(batches[i].stream, 35, 70, 31'000 + 1'000 * i));
    }
    ASSERT_TRUE(Commit(*s, more, kNow + 3 * kHourMs).ok());
    ASSERT_TRUE(s->FlushRollups().ok());
    ExpectRollupsMatchRawRows(*s);
  }
  EXPECT_EQ(*(*a)->ListCustomers(), *(*b)->ListCustomers());
  EXPECT_EQ(*(*a)->ListStreams(), *(*b)->ListStreams());
  EXPECT_EQ(*(*a)->CountRawReports(), *(*b)->CountRawReports());
  const auto rollup_diff = DiffRollups(*(*a)->LoadRollupRows(), *(*b)->LoadRollupRows());
  EXPECT_TRUE(rollup_diff.empty()) << rollup_diff.front();
  EXPECT_FALSE(Describe(*(*a)->LoadRollupRows()).empty());
  const auto customers = (*a)->ListCustomers();
  ASSERT_TRUE(customers.ok());
  for (const auto& c : *customers) {
    auto wa = (*a)->LoadWindow(c.id, kNow - 30 * kDayMs, kNow + kDayMs);
    auto wb = (*b)->LoadWindow(c.id, kNow - 30 * kDayMs, kNow + kDayMs);
    ASSERT_TRUE(wa.ok() && wb.ok());
    EXPECT_EQ(wa->reports, wb->reports);
    EXPECT_EQ(wa->endpoints, wb->endpoints);
    EXPECT_EQ(wa->boot_ms.Encode(), wb->boot_ms.Encode());
    EXPECT_EQ(wa->latency.Encode(), wb->latency.Encode());
    EXPECT_EQ(wa->latency_windows, wb->latency_windows);
  }
  auto sa = ScoreAllCustomers(**a, scoring::Policy{}, kNow);
  auto sb = ScoreAllCustomers(**b, scoring::Policy{}, kNow);
  ASSERT_TRUE(sa.ok() && sb.ok());
  const std::int64_t to = FloorTo(kNow, kDayMs) + kDayMs;
  EXPECT_EQ(ScoresToJson(*sa, scoring::Policy{}, to - 30 * kDayMs, to),
            ScoresToJson(*sb, scoring::Policy{}, to - 30 * kDayMs, to));
}

}  // namespace
}  // namespace deskpulse::collector
