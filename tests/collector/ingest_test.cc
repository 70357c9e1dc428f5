// The collector's ingest over real loopback sockets: the protocol, bad input,
// timeouts and draining.
#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <thread>

#include "agent/uplink/uplink.h"
#include "collector/ingest/server.h"
#include "collector/store/sqlite/sqlite_store.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/tls_mbedtls.h"
#include "deskpulse/common/tls_openssl.h"
#include "tests/fakes/raw_client.h"
#include "tests/fakes/temp_dir.h"
#include "tests/fakes/test_certs.h"

namespace deskpulse::collector {
namespace {

using deskpulse::testing::BatchEnvelope;
using deskpulse::testing::HelloEnvelope;
using deskpulse::testing::RawClient;
using namespace std::chrono_literals;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenStore({.db = db_path()});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    token_ = *(*store)->CreateToken("Northwind", NowMs());
    other_token_ = *(*store)->CreateToken("Contoso", NowMs());
    writer_ = std::make_unique<Writer>(std::move(store).value(), WriterOptions{});
    writer_->Start();
    IngestOptions opts;
    opts.host = "127.0.0.1";
    opts.port = 0;
    opts.idle_timeout = 3s;
    opts.frame_timeout = 1s;
    opts.handshake_timeout = 2s;
    opts.max_batch_reports = 50;
    Configure(&opts);
    server_ = std::make_unique<IngestServer>(io_, opts, *writer_);
    ASSERT_TRUE(server_->Listen().ok());
    server_->Start();
    io_thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
  }

  void TearDown() override { StopServer(); }

  /// Lets a derived fixture change the server's options (TLS, say).
  virtual void Configure(IngestOptions*) {}

  void StopServer() {
    if (!io_thread_.joinable()) return;
    std::promise<void> drained;
    asio::post(io_, [&] { server_->Drain([&] { drained.set_value(); }); });
    drained.get_future().wait_for(20s);
    io_.stop();
    io_thread_.join();
    writer_->Stop();
  }

  /// The server's counters, read on its own thread.
  IngestStats Stats() {
    std::promise<IngestStats> got;
    asio::post(io_, [&] { got.set_value(server_->stats()); });
    return got.get_future().get();
  }

  std::int64_t StoredRows() {
    auto s = OpenStore({.db = db_path(), .read_only = true});
    EXPECT_TRUE(s.ok());
    return *(*s)->CountRawReports();
  }

  std::string db_path() const { return dir_.File("ingest.db"); }
  std::uint16_t port() const { return server_->port(); }

  /// Connects and completes the handshake; returns the Welcome.
  v1::Welcome Handshake(RawClient& c, const std::string& agent) {
    EXPECT_TRUE(c.Send(HelloEnvelope(token_, agent)));
    auto w = c.Read();
    EXPECT_TRUE(w.has_value() && w->has_welcome())
        << (w ? (w->has_error() ? w->error().message() : std::string("another frame"))
              : std::string("nothing"));
    return w ? w->welcome() : v1::Welcome{};
  }

  /// Options for an uplink of `agent` to this collector, with a short backoff.
  agent::UplinkOptions UplinkFor(const std::string& agent) {
    agent::UplinkOptions o;
    o.collectors = {{"127.0.0.1", port()}};
    o.credential = token_;
    o.agent_id = agent;
    o.backoff_min = 10ms;
    return o;
  }

  static void ExpectError(RawClient& c, v1::ErrorCode code, const std::string& mentions) {
    auto e = c.Read();
    ASSERT_TRUE(e.has_value()) << "no frame before close";
    ASSERT_TRUE(e->has_error()) << "expected an error frame";
    EXPECT_EQ(e->error().code(), code) << e->error().message();
    EXPECT_NE(e->error().message().find(mentions), std::string::npos) << e->error().message();
    EXPECT_TRUE(c.WaitClosed());
  }

  deskpulse::testing::TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<IngestServer> server_;
  std::thread io_thread_;
  std::string token_;
  std::string other_token_;
};

TEST_F(IngestTest, AcksOnlyAfterCommitAndStoresResendsOnce) {
  RawClient c(port());
  ASSERT_TRUE(c.connected());
  const v1::Welcome w = Handshake(c, "agent-1");
  EXPECT_EQ(w.last_acked_seq(), 0u);
  EXPECT_EQ(w.limits().max_batch_reports(), 50u);
  ASSERT_TRUE(c.Send(BatchEnvelope(1, 10, NowMs())));
  auto ack = c.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  EXPECT_EQ(ack->ack().acked_through_seq(), 10u);
  ASSERT_TRUE(c.Send(BatchEnvelope(5, 12, NowMs())));  // overlaps: 5..10 are resends
  ack = c.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  EXPECT_EQ(ack->ack().acked_through_seq(), 12u);

  RawClient again(port());  // a reconnect resumes after the watermark
  EXPECT_EQ(Handshake(again, "agent-1").last_acked_seq(), 12u);
  StopServer();
  EXPECT_EQ(StoredRows(), 12);
}

TEST_F(IngestTest, GarbageFrameGetsMalformedErrorAndOthersAreServed) {
  RawClient good(port());
  Handshake(good, "good");
  RawClient bad(port());
  ASSERT_TRUE(bad.SendBytes(std::string("\x00\x00\x00\x05", 4) + "\xff\xff\xff\xff\xff"));
  ExpectError(bad, v1::ERROR_CODE_MALFORMED_FRAME, "not a deskpulse.v1.Envelope");
  ASSERT_TRUE(good.Send(BatchEnvelope(1, 3, NowMs())));
  auto ack = good.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  EXPECT_EQ(ack->ack().acked_through_seq(), 3u);
}

TEST_F(IngestTest, LengthOfTwoToThe31IsRefusedByItsHeader) {
  // Before the Hello is accepted only small frames are taken ...
  RawClient c(port());
  ASSERT_TRUE(c.SendBytes(std::string("\x80\x00\x00\x00", 4)));
  ExpectError(c, v1::ERROR_CODE_FRAME_TOO_LARGE,
              "over the limit of 8192 bytes until a Hello is accepted");
  // ... and after it, frames up to the full limit.
  RawClient welcomed(port());
  Handshake(welcomed, "agent-big-frame");
  ASSERT_TRUE(welcomed.SendBytes(std::string("\x80\x00\x00\x00", 4)));
  ExpectError(welcomed, v1::ERROR_CODE_FRAME_TOO_LARGE, "over the limit of 1048576 bytes");
}

TEST_F(IngestTest, OversizedHostFactsAreRefusedNamingTheField) {
  // 900 KB of hostname cannot even be sent before the Hello is accepted.
  RawClient huge(port());
  auto hello = HelloEnvelope(token_, "agent-huge");
  hello.mutable_hello()->mutable_host()->set_hostname(std::string(900'000, 'h'));
  std::string frame;
  ASSERT_TRUE(AppendFrame(hello, &frame).ok());
  // The length prefix and a little: it is refused on its length alone.
  ASSERT_TRUE(huge.SendBytes(frame.substr(0, 100)));
  ExpectError(huge, v1::ERROR_CODE_FRAME_TOO_LARGE, "until a Hello is accepted");
  // One that fits the frame still has to fit each field.
  RawClient long_name(port());
  hello.mutable_hello()->mutable_host()->set_hostname(std::string(300, 'h'));
  ASSERT_TRUE(long_name.Send(hello));
  ExpectError(long_name, v1::ERROR_CODE_PROTOCOL_VIOLATION,
              "host.hostname is 300 bytes, over the limit of 255");
  RawClient long_site(port());
  hello.mutable_hello()->mutable_host()->set_hostname("ok");
  hello.mutable_hello()->mutable_host()->set_site(std::string(129, 's'));
  ASSERT_TRUE(long_site.Send(hello));
  ExpectError(long_site, v1::ERROR_CODE_PROTOCOL_VIOLATION, "host.site is 129 bytes");
  StopServer();
  auto s = OpenStore({.db = db_path(), .read_only = true});
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->get()->ListStreams()->empty()) << "nothing of a refused Hello is stored";
}

TEST_F(IngestTest, SeqOfTwoToThe63IsABadReport) {
  RawClient c(port());
  Handshake(c, "agent-seq");
  ASSERT_TRUE(c.Send(BatchEnvelope(1, 2, NowMs())));
  auto ack = c.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  ASSERT_TRUE(c.Send(BatchEnvelope(std::uint64_t{1} << 63, std::uint64_t{1} << 63, NowMs())));
  ExpectError(c, v1::ERROR_CODE_BAD_REPORT, "seq 9223372036854775808 is outside 1 .. 2^63 - 1");
  // The stream still takes what follows: its watermark did not wrap.
  RawClient again(port());
  EXPECT_EQ(Handshake(again, "agent-seq").last_acked_seq(), 2u);
  ASSERT_TRUE(again.Send(BatchEnvelope(3, 3, NowMs())));
  ack = again.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  EXPECT_EQ(ack->ack().acked_through_seq(), 3u);
}

TEST_F(IngestTest, OversizedReportFieldIsABadReportNamingIt) {
  RawClient c(port());
  Handshake(c, "agent-fields");
  auto batch = BatchEnvelope(1, 3, NowMs());
  v1::Report r;
  ASSERT_TRUE(r.ParseFromString(batch.batch().reports(1)));
  r.add_peripherals()->set_name(std::string(600, 'n'));
  r.add_peripherals()->set_name(std::string(513, 'n'));
  batch.mutable_batch()->set_reports(1, r.SerializeAsString());
  ASSERT_TRUE(c.Send(batch));
  ExpectError(c, v1::ERROR_CODE_BAD_REPORT,
              "report #1 (seq 2): peripherals[0].name is 600 bytes, over the limit of 512");
  StopServer();
  EXPECT_EQ(StoredRows(), 0);
}

TEST_F(IngestTest, HelloAcknowledgedAboveTheStoreIsCounted) {
  // An agent that was acknowledged through 50 finds a store with nothing:
  // the store lost acknowledged reports.
  RawClient c(port());
  auto hello = HelloEnvelope(token_, "agent-remembers");
  hello.mutable_hello()->set_acked_through_seq(50);
  ASSERT_TRUE(c.Send(hello));
  auto w = c.Read();
  ASSERT_TRUE(w && w->has_welcome());
  EXPECT_EQ(w->welcome().last_acked_seq(), 0u);
  EXPECT_EQ(Stats().streams_behind_agents, 1u);
  EXPECT_EQ(Stats().reports_forgotten, 50u);
}

TEST_F(IngestTest, UnknownTokenIsRefused) {
  RawClient c(port());
  ASSERT_TRUE(c.Send(HelloEnvelope("dpt_not-a-real-token", "agent-x")));
  ExpectError(c, v1::ERROR_CODE_UNAUTHENTICATED, "unknown or revoked enrollment token");
  EXPECT_EQ(Stats().auth_failures, 1u);
}

TEST_F(IngestTest, BatchBeforeHelloIsAProtocolViolation) {
  RawClient c(port());
  ASSERT_TRUE(c.Send(BatchEnvelope(1, 1, NowMs())));
  ExpectError(c, v1::ERROR_CODE_PROTOCOL_VIOLATION, "before the Welcome");
}

TEST_F(IngestTest, WrongProtocolVersionIsNamed) {
  RawClient c(port());
  auto hello = HelloEnvelope(token_, "agent-v9");
  hello.mutable_hello()->set_protocol_version(9);
  ASSERT_TRUE(c.Send(hello));
  ExpectError(c, v1::ERROR_CODE_PROTOCOL_VERSION, "protocol_version 9");
}

TEST_F(IngestTest, OutOfOrderBatchIsRejectedWhole) {
  RawClient c(port());
  Handshake(c, "agent-ooo");
  auto batch = BatchEnvelope(1, 3, NowMs());
  batch.mutable_batch()->mutable_reports()->SwapElements(0, 2);  // 3, 2, 1
  ASSERT_TRUE(c.Send(batch));
  ExpectError(c, v1::ERROR_CODE_BAD_REPORT, "nothing of this batch was stored");
  StopServer();
  EXPECT_EQ(StoredRows(), 0);
}

TEST_F(IngestTest, UndecodableReportIsRejectedWhole) {
  RawClient c(port());
  Handshake(c, "agent-bad-report");
  auto batch = BatchEnvelope(1, 2, NowMs());
  batch.mutable_batch()->add_reports(std::string("\xff\xff\xff", 3));
  ASSERT_TRUE(c.Send(batch));
  ExpectError(c, v1::ERROR_CODE_BAD_REPORT, "report #2");
}

TEST_F(IngestTest, OversizeBatchNamesTheLimit) {
  RawClient c(port());
  Handshake(c, "agent-big");
  ASSERT_TRUE(c.Send(BatchEnvelope(1, 51, NowMs())));
  ExpectError(c, v1::ERROR_CODE_BATCH_TOO_LARGE, "limit of 50");
}

TEST_F(IngestTest, SlowClientTimesOutWhileAnotherIsServed) {
  RawClient slow(port());
  std::string hello;
  ASSERT_TRUE(AppendFrame(HelloEnvelope(token_, "slowpoke"), &hello).ok());
  ASSERT_TRUE(slow.SendBytes(hello.substr(0, 1)));  // the frame has started

  RawClient good(port());
  Handshake(good, "well-behaved");
  for (std::uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(good.Send(BatchEnvelope(i * 10 + 1, i * 10 + 10, NowMs())));
    auto ack = good.Read();
    ASSERT_TRUE(ack && ack->has_ack());
    EXPECT_EQ(ack->ack().acked_through_seq(), i * 10 + 10);
  }
  // One more byte every 300 ms cannot finish the frame within the 1 s frame timeout.
  for (std::size_t i = 1; i < 3; ++i) {
    std::this_thread::sleep_for(300ms);
    slow.SendBytes(hello.substr(i, 1));
  }
  ExpectError(slow, v1::ERROR_CODE_TIMEOUT, "frame not completed within 1 s");
  EXPECT_EQ(Stats().timeouts, 1u);
}

TEST_F(IngestTest, SilentConnectionHitsTheHandshakeTimeout) {
  RawClient c(port());
  ExpectError(c, v1::ERROR_CODE_TIMEOUT, "no Hello accepted within 2 s of connecting");
}

TEST_F(IngestTest, WelcomedConnectionHitsTheIdleTimeout) {
  RawClient c(port());
  Handshake(c, "agent-idle");
  ExpectError(c, v1::ERROR_CODE_TIMEOUT, "no frame within 3 s (idle timeout)");
}

TEST_F(IngestTest, DrainAcksWhatWasSentThenSaysGoodbye) {
  RawClient c(port());
  Handshake(c, "agent-drain");
  ASSERT_TRUE(c.Send(BatchEnvelope(1, 20, NowMs())));
  auto ack = c.Read();
  ASSERT_TRUE(ack && ack->has_ack());
  std::promise<void> drained;
  asio::post(io_, [&] { server_->Drain([&] { drained.set_value(); }); });
  auto bye = c.Read();
  ASSERT_TRUE(bye && bye->has_error());
  EXPECT_EQ(bye->error().code(), v1::ERROR_CODE_SHUTTING_DOWN);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(drained.get_future().wait_for(10s), std::future_status::ready);
  RawClient late(port());
  EXPECT_FALSE(late.connected() && late.Read(500ms).has_value());
}

/// The simulator's and agent's queue, in memory.
class MemoryQueue : public agent::ReportQueue {
 public:
  /// Reports first..last; `pad` bytes of text in each make them bigger.
  void Add(std::uint64_t first, std::uint64_t last, std::size_t pad = 0) {
    for (std::uint64_t s = first; s <= last; ++s) {
      v1::Report r;
      r.set_seq(s);
      r.set_observed_at_unix_ms(NowMs());
      // Padding within the wire's field limits (512 bytes a reason).
      for (std::size_t left = pad; left > 0;) {
        const std::size_t n = std::min<std::size_t>(left, 500);
        auto* u = r.add_unavailable();
        u->set_measurement("padding");
        u->set_reason(std::string(n, static_cast<char>('a' + s % 26)));
        left -= n;
      }
      q_.emplace_back(s, r.SerializeAsString());
    }
  }
  /// Report `seq` breaks the collector's field limits.
  void Spoil(std::uint64_t seq) {
    for (auto& [s, bytes] : q_) {
      if (s != seq) continue;
      v1::Report r;
      r.ParseFromString(bytes);
      r.add_unavailable()->set_reason(std::string(600, 'x'));
      bytes = r.SerializeAsString();
    }
  }
  void Reject(std::uint64_t seq) override {
    rejected.push_back(seq);
    Acknowledge(seq);
  }
  std::vector<std::uint64_t> rejected;
  void Peek(std::uint64_t after, std::size_t max,
            std::vector<std::pair<std::uint64_t, std::string>>* out) override {
    for (const auto& e : q_) {
      if (out->size() >= max) break;
      if (e.first > after) out->push_back(e);
    }
  }
  void Acknowledge(std::uint64_t seq) override {
    while (!q_.empty() && q_.front().first <= seq) q_.pop_front();
  }
  bool empty() const { return q_.empty(); }

 private:
  std::deque<std::pair<std::uint64_t, std::string>> q_;
};

/// Runs `uplink` until everything in `queue` is acknowledged (or 20 s pass).
void RunUntilDrained(asio::io_context& io, agent::Uplink& uplink, const MemoryQueue& queue) {
  asio::co_spawn(io, uplink.Run(), asio::detached);
  asio::steady_timer poll(io);
  std::function<void()> check = [&] {
    if (queue.empty()) return uplink.Stop();
    poll.expires_after(5ms);
    poll.async_wait([&](auto) { check(); });
  };
  check();
  io.run_for(20s);
}

TEST_F(IngestTest, UplinkResumesAfterTheCollectorsWatermark) {
  asio::io_context client_io;
  agent::UplinkOptions o = UplinkFor("uplink-agent");
  o.max_batch_reports = 7;

  MemoryQueue first;
  first.Add(1, 30);
  agent::Uplink a(client_io.get_executor(), o, first, 1);
  RunUntilDrained(client_io, a, first);
  EXPECT_EQ(a.acked_through(), 30u);

  // The same agent again (say after a restart) still holding 21..45: the
  // collector already has 21..30, so only 31..45 are new.
  client_io.restart();
  MemoryQueue second;
  second.Add(21, 45);
  agent::Uplink b(client_io.get_executor(), o, second, 2);
  RunUntilDrained(client_io, b, second);
  EXPECT_EQ(b.acked_through(), 45u);
  EXPECT_EQ(b.stats().reports_sent, 15u);
  StopServer();
  EXPECT_EQ(StoredRows(), 45);
}

// Given several collectors, uplinks start at random ones and move on from one
// that is down: every endpoint ends up on the live one with everything acked.
TEST_F(IngestTest, UplinksSpreadOverCollectorsAndFailOverFromADeadOne) {
  asio::io_context client_io;
  // A port nobody listens on: bound, then closed.
  std::uint16_t dead_port = 0;
  {
    asio::ip::tcp::acceptor probe(client_io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = probe.local_endpoint().port();
  }
  std::vector<std::unique_ptr<MemoryQueue>> queues;
  std::vector<std::unique_ptr<agent::Uplink>> uplinks;
  int started_on_dead = 0;
  for (int i = 0; i < 8; ++i) {
    agent::UplinkOptions o = UplinkFor("failover-" + std::to_string(i));
    o.collectors = {{"127.0.0.1", dead_port}, {"127.0.0.1", port()}};
    o.backoff_min = 20ms;
    o.backoff_max = 100ms;
    queues.push_back(std::make_unique<MemoryQueue>());
    queues.back()->Add(1, 10);
    uplinks.push_back(
        std::make_unique<agent::Uplink>(client_io.get_executor(), o, *queues.back(), 100 + i));
    if (uplinks.back()->collector().port == dead_port) ++started_on_dead;
  }
  EXPECT_GT(started_on_dead, 0) << "the start is random: some begin on the dead one";
  EXPECT_LT(started_on_dead, 8) << "...and some on the live one";
  for (auto& u : uplinks) asio::co_spawn(client_io, u->Run(), asio::detached);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    client_io.run_for(50ms);
    bool all = true;
    for (auto& u : uplinks) all = all && u->acked_through() == 10;
    if (all) break;
  }
  for (auto& u : uplinks) {
    EXPECT_EQ(u->acked_through(), 10u);
    EXPECT_EQ(u->collector().port, port());
    u->Stop();
  }
  client_io.run_for(100ms);
  std::uint64_t failovers = 0;
  for (auto& u : uplinks) failovers += u->failovers();
  EXPECT_GE(failovers, static_cast<std::uint64_t>(started_on_dead));
  StopServer();
  EXPECT_EQ(StoredRows(), 80);
}

TEST_F(IngestTest, UplinkRetriesARefusedCredentialSlowlyAndResumesOnceAccepted) {
  asio::io_context client_io;
  agent::UplinkOptions o = UplinkFor("refused-agent");
  o.credential = "dpt_restored-later";
  o.refused_backoff_min = 400ms;
  o.refused_backoff_max = 800ms;
  MemoryQueue q;
  q.Add(1, 3);
  agent::Uplink a(client_io.get_executor(), o, q, 1);
  asio::co_spawn(client_io, a.Run(), asio::detached);
  client_io.run_for(1500ms);
  EXPECT_TRUE(a.refused());
  EXPECT_NE(a.stats().last_error.find("UNAUTHENTICATED"), std::string::npos)
      << a.stats().last_error;
  // Slowly: a few attempts in 1.5 s, not hundreds at the normal 10 ms backoff.
  EXPECT_GE(a.stats().refused, 1u);
  EXPECT_LE(a.stats().refused, 5u);
  EXPECT_EQ(a.acked_through(), 0u);

  // The credential is restored on the collector's store: the agent gets in.
  {
    auto store = SqliteStore::Open({.db = db_path()});
    ASSERT_TRUE(store.ok());
    auto tx = (*store)->db()->Prepare(
        "INSERT INTO tokens(token_hash, customer_id, created_ms) SELECT ?, customer_id, 0 "
        "FROM customers WHERE name='Northwind'");
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(tx->Bind(1, HashToken(o.credential)).Run().ok());
  }
  RunUntilDrained(client_io, a, q);
  EXPECT_EQ(a.acked_through(), 3u) << a.stats().last_error;
  EXPECT_FALSE(a.refused());
  StopServer();
  EXPECT_EQ(StoredRows(), 3);
}

TEST_F(IngestTest, UplinkDropsTheOneReportTheCollectorRefusesAndSendsTheRest) {
  asio::io_context client_io;
  agent::UplinkOptions o = UplinkFor("one-bad-report");
  o.max_batch_reports = 10;
  MemoryQueue q;
  q.Add(1, 30);
  q.Spoil(17);
  agent::Uplink a(client_io.get_executor(), o, q, 1);
  RunUntilDrained(client_io, a, q);
  EXPECT_EQ(a.acked_through(), 30u) << a.stats().last_error;
  EXPECT_EQ(q.rejected, (std::vector<std::uint64_t>{17}));
  EXPECT_EQ(a.stats().reports_rejected, 1u);
  EXPECT_GE(a.stats().batches_split, 1u);
  StopServer();
  EXPECT_EQ(StoredRows(), 29);
  auto s = OpenStore({.db = db_path(), .read_only = true});
  ASSERT_TRUE(s.ok());
  std::vector<std::int64_t> seqs;
  ASSERT_TRUE((*s)->ForEachRawReport([&](const RawReport& r) { seqs.push_back(r.seq); }).ok());
  EXPECT_EQ(std::count(seqs.begin(), seqs.end(), 17), 0);
}

}  // namespace
}  // namespace deskpulse::collector

namespace deskpulse::collector {
namespace {

/// A collector with a small frame limit: the uplink sizes its batches by it.
class SmallFrameTest : public IngestTest {
 protected:
  void Configure(IngestOptions* opts) override {
    opts->max_frame_bytes = 16 * 1024;
    opts->max_batch_reports = 100;
  }
};

TEST_F(SmallFrameTest, UplinkFitsBatchesToTheFrameLimitAndDropsAReportThatNeverFits) {
  asio::io_context client_io;
  agent::UplinkOptions o = UplinkFor("small-frames");
  MemoryQueue q;
  q.Add(1, 40, 3000);  // ~3 KB each: five to a 16 KB frame
  q.Add(41, 41, 20000);
  q.Add(42, 45, 100);
  agent::Uplink a(client_io.get_executor(), o, q, 1);
  RunUntilDrained(client_io, a, q);
  EXPECT_EQ(a.acked_through(), 45u) << a.stats().last_error;
  EXPECT_EQ(a.stats().errors_received, 0u) << "no FRAME_TOO_LARGE: batches fit the limit";
  EXPECT_GE(a.stats().batches_sent, 8u);
  EXPECT_EQ(q.rejected, (std::vector<std::uint64_t>{41}));
  StopServer();
  EXPECT_EQ(StoredRows(), 44);
}

/// Small caps, to hit each one with a handful of connections.
class LimitsTest : public IngestTest {
 protected:
  void Configure(IngestOptions* opts) override {
    opts->max_pending_per_peer = 4;
    opts->max_pending_connections = 6;
    opts->auth.failures_before_delay = 3;
    opts->auth.delay = 50ms;
    opts->auth.failures_before_lockout = 8;
    opts->auth.lockout = 60s;
  }
};

TEST_F(LimitsTest, PeerOverItsPendingCapIsRefusedWhileOthersAreServed) {
  std::vector<std::unique_ptr<RawClient>> silent;
  silent.reserve(4);
  for (int i = 0; i < 4; ++i) silent.push_back(std::make_unique<RawClient>(port(), "127.0.0.2"));
  ASSERT_TRUE(silent.back()->SendBytes(std::string(1, '\0')));  // all four are accepted
  RawClient fifth(port(), "127.0.0.2");
  EXPECT_FALSE(fifth.Read(2s).has_value()) << "refused before any frame";
  EXPECT_TRUE(fifth.WaitClosed(2s));
  RawClient good(port(), "127.0.0.1");
  EXPECT_EQ(Handshake(good, "good-agent").last_acked_seq(), 0u);
  EXPECT_GE(Stats().connections_refused, 1u);
}

TEST_F(LimitsTest, FullPendingPoolEvictsTheHeaviestPeersOldest) {
  std::vector<std::unique_ptr<RawClient>> heavy, light;
  for (int i = 0; i < 4; ++i) heavy.push_back(std::make_unique<RawClient>(port(), "127.0.0.2"));
  for (int i = 0; i < 2; ++i) light.push_back(std::make_unique<RawClient>(port(), "127.0.0.3"));
  // Let the server accept all six before the seventh arrives.
  for (int i = 0; i < 100 && Stats().connections_pending < 6; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(Stats().connections_pending, 6u);
  RawClient good(port(), "127.0.0.1");
  EXPECT_EQ(Handshake(good, "good-agent").last_acked_seq(), 0u);
  EXPECT_TRUE(heavy.front()->WaitClosed(2s)) << "the heaviest peer's oldest made room";
  EXPECT_EQ(Stats().pending_evicted, 1u);
  EXPECT_FALSE(light.front()->WaitClosed(200ms)) << "the light peer keeps its connections";
}

TEST_F(LimitsTest, RepeatedFailedLoginsAreSlowedThenLockedOut) {
  for (int i = 0; i < 8; ++i) {
    RawClient c(port(), "127.0.0.4");
    ASSERT_TRUE(c.Send(HelloEnvelope("dpt_guess-" + std::to_string(i), "guesser")));
    ExpectError(c, v1::ERROR_CODE_UNAUTHENTICATED, "unknown or revoked");
  }
  EXPECT_EQ(Stats().auth_failures, 8u);
  EXPECT_EQ(Stats().auth_delayed, 5u);  // the 4th onwards
  EXPECT_EQ(Stats().auth_lockouts, 1u);
  // Locked out: reset at accept, not even a Hello is read. The reset may
  // arrive before the Hello is sent, so the send itself may fail.
  const std::uint64_t refused = Stats().connections_refused;
  RawClient locked(port(), "127.0.0.4");
  (void)locked.Send(HelloEnvelope(token_, "now-with-a-good-token"));
  EXPECT_FALSE(locked.Read(2s).has_value());
  EXPECT_EQ(Stats().connections_refused, refused + 1);
  // Other peers are served as before.
  RawClient good(port(), "127.0.0.1");
  EXPECT_EQ(Handshake(good, "good-agent").last_acked_seq(), 0u);
}

/// Memory for frames is capped: a second large frame waits for the first.
class BufferedBytesTest : public IngestTest {
 protected:
  void Configure(IngestOptions* opts) override {
    opts->max_buffered_bytes = 1u << 20;
    opts->frame_timeout = 10s;
  }
};

TEST_F(BufferedBytesTest, ReadsPauseAtTheCapAndResumeWhenMemoryIsReleased) {
  RawClient a(port()), b(port());
  Handshake(a, "agent-a");
  Handshake(b, "agent-b");
  // Two batches of ~600 KB: the second is budgeted only once the first is done.
  auto big = [](std::uint64_t seq) {
    auto env = BatchEnvelope(seq, seq, NowMs());
    v1::Report r;
    r.ParseFromString(env.batch().reports(0));
    for (int i = 0; i < 160; ++i) {  // ~4 KB each, within every field's limit
      auto* p = r.add_peripherals();
      for (int j = 0; j < 32; ++j) p->add_drivers(std::string(60, 'd'));
      p->set_name(std::string(500, 'n'));
      p->set_reason(std::string(500, 'r'));
      p->set_ieee1284_id(std::string(1000, 'i'));
    }
    env.mutable_batch()->set_reports(0, r.SerializeAsString());
    std::string out;
    EXPECT_TRUE(AppendFrame(env, &out).ok());
    return out;
  };
  const std::string fa = big(1), fb = big(1);
  ASSERT_GT(fa.size(), 600'000u);
  ASSERT_TRUE(a.SendBytes(fa.substr(0, fa.size() - 1)));  // all but the last byte
  for (int i = 0; i < 200 && Stats().buffered_bytes == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(b.SendBytes(fb));
  for (int i = 0; i < 200 && Stats().read_pauses == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(Stats().read_pauses, 1u) << "b waits while a's frame holds the memory";
  ASSERT_TRUE(a.SendBytes(fa.substr(fa.size() - 1)));
  auto ack_a = a.Read();
  ASSERT_TRUE(ack_a && ack_a->has_ack());
  auto ack_b = b.Read();
  ASSERT_TRUE(ack_b && ack_b->has_ack()) << "b resumes once a's batch is committed";
  StopServer();
  EXPECT_EQ(StoredRows(), 2);
}

}  // namespace
}  // namespace deskpulse::collector

namespace deskpulse::collector {
namespace {

/// The agent's TLS client: OpenSSL (the simulator's) or Mbed TLS (the agent's).
using ClientFactory = Result<std::shared_ptr<TlsClient>> (*)(const TlsOptions&);

struct TlsClientCase {
  const char* name;
  ClientFactory make;
};

void PrintTo(const TlsClientCase& c, std::ostream* os) { *os << c.name; }

std::string CaseName(const ::testing::TestParamInfo<TlsClientCase>& c) { return c.param.name; }

class TlsIngestTest : public IngestTest, public ::testing::WithParamInterface<TlsClientCase> {
 protected:
  void Configure(IngestOptions* opts) override {
    cert_ = deskpulse::testing::WriteSelfSignedCert(dir_.File(""), "collector", ServerNames());
    auto ctx = MakeServerTlsContext({.cert_file = cert_.cert_file, .key_file = cert_.key_file});
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    opts->tls = *ctx;
  }

  agent::UplinkOptions ClientOptions(const std::string& ca_file, const std::string& agent,
                                     const std::string& host = "127.0.0.1") {
    agent::UplinkOptions o = UplinkFor(agent);
    o.collectors = {{host, port()}};
    o.connect_timeout = 2s;
    auto client = GetParam().make({.ca_file = ca_file});
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    if (client.ok()) o.tls = *client;
    return o;
  }

  /// The subjectAltNames of the collector's certificate.
  virtual std::string ServerNames() const { return "IP:127.0.0.1,DNS:localhost"; }

  /// Runs an uplink that must not get through; returns its last error.
  std::string RunRefused(agent::UplinkOptions options) {
    asio::io_context client_io;
    MemoryQueue q;
    q.Add(1, 3);
    agent::Uplink u(client_io.get_executor(), std::move(options), q, 1);
    asio::co_spawn(client_io, u.Run(), asio::detached);
    asio::steady_timer stop(client_io, 1500ms);
    stop.async_wait([&](auto) { u.Stop(); });
    client_io.run_for(10s);
    EXPECT_EQ(u.acked_through(), 0u);
    EXPECT_EQ(u.stats().connects, 0u);
    return u.stats().last_error;
  }

  deskpulse::testing::TestCert cert_;
};

TEST_P(TlsIngestTest, UplinkOverTlsIsAcknowledged) {
  asio::io_context client_io;
  MemoryQueue q;
  q.Add(1, 25);
  agent::Uplink u(client_io.get_executor(), ClientOptions(cert_.cert_file, "tls-agent"), q, 1);
  RunUntilDrained(client_io, u, q);
  EXPECT_EQ(u.acked_through(), 25u) << u.stats().last_error;
  StopServer();
  EXPECT_EQ(StoredRows(), 25);
}

TEST_P(TlsIngestTest, DnsNameIsVerifiedAndBatchesLargerThanARecordArriveWhole) {
  // "localhost": SNI plus the certificate's DNS name. 40 reports of 3 KB make
  // batches that span several 16 KB TLS records.
  asio::io_context client_io;
  MemoryQueue q;
  q.Add(1, 40, 3000);
  agent::Uplink u(client_io.get_executor(),
                  ClientOptions(cert_.cert_file, "dns-agent", "localhost"), q, 1);
  RunUntilDrained(client_io, u, q);
  EXPECT_EQ(u.acked_through(), 40u) << u.stats().last_error;
  StopServer();
  EXPECT_EQ(StoredRows(), 40);
}

TEST_P(TlsIngestTest, PlainClientIsClosedAndOthersAreServed) {
  RawClient plain(port());
  ASSERT_TRUE(plain.Send(HelloEnvelope(token_, "plain-agent")));
  EXPECT_TRUE(plain.WaitClosed());
  asio::io_context client_io;
  MemoryQueue q;
  q.Add(1, 3);
  agent::Uplink u(client_io.get_executor(), ClientOptions(cert_.cert_file, "tls-agent"), q, 1);
  RunUntilDrained(client_io, u, q);
  EXPECT_EQ(u.acked_through(), 3u);
  EXPECT_EQ(Stats().tls_failures, 1u);
}

TEST_P(TlsIngestTest, CollectorWithAnUntrustedCertificateIsRefused) {
  const auto other = deskpulse::testing::WriteSelfSignedCert(dir_.File(""), "impostor-ca");
  const std::string error = RunRefused(ClientOptions(other.cert_file, "careful-agent"));
  EXPECT_NE(error.find("certificate verif"), std::string::npos) << error;
  StopServer();
  EXPECT_EQ(StoredRows(), 0);
}

TEST_P(TlsIngestTest, BadCaFilesAreNamed) {
  auto missing = GetParam().make({.ca_file = "/nonexistent/ca.pem"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/ca.pem"), std::string::npos);
  const std::string empty = dir_.File("not-a-cert.pem");
  std::FILE* f = std::fopen(empty.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("-----BEGIN NOTHING-----\nnot base64\n", f);
  std::fclose(f);
  auto none = GetParam().make({.ca_file = empty});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no PEM certificate in it"), std::string::npos)
      << none.status().message();
}

INSTANTIATE_TEST_SUITE_P(Clients, TlsIngestTest,
                         ::testing::Values(TlsClientCase{"OpenSsl", &MakeOpenSslClient},
                                           TlsClientCase{"MbedTls", &MakeMbedTlsClient}),
                         CaseName);

/// The collector's certificate is trusted but names neither 127.0.0.1 nor localhost.
class TlsWrongNameTest : public TlsIngestTest {
 protected:
  std::string ServerNames() const override { return "IP:10.9.9.9,DNS:collector.example"; }
};

TEST_P(TlsWrongNameTest, CertificateForAnotherAddressOrNameIsRefused) {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    const std::string error = RunRefused(ClientOptions(cert_.cert_file, "careful-agent", host));
    EXPECT_NE(error.find("certificate verif"), std::string::npos) << host << ": " << error;
  }
  StopServer();
  EXPECT_EQ(StoredRows(), 0);
}

INSTANTIATE_TEST_SUITE_P(Clients, TlsWrongNameTest,
                         ::testing::Values(TlsClientCase{"OpenSsl", &MakeOpenSslClient},
                                           TlsClientCase{"MbedTls", &MakeMbedTlsClient}),
                         CaseName);

TEST(TlsContext, BadFilesAreNamed) {
  auto s = MakeServerTlsContext({.cert_file = "/nonexistent/c.pem", .key_file = "/x/k.pem"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/nonexistent/c.pem"), std::string::npos);
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("collector.example"));
}

}  // namespace
}  // namespace deskpulse::collector
