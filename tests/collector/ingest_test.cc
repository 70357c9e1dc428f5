// The collector's ingest over real loopback sockets: the protocol, bad input,
// timeouts and draining.
#include "collector/ingest/server.h"

#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <thread>

#include "agent/uplink/uplink.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/tls_mbedtls.h"
#include "deskpulse/common/tls_openssl.h"
#include "tests/fakes/raw_client.h"
#include "tests/fakes/test_certs.h"
#include "tests/fakes/temp_dir.h"

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
    auto store = Store::Open({.path = db_path()});
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

  std::int64_t StoredRows() {
    auto s = Store::Open({.path = db_path(), .read_only = true});
    EXPECT_TRUE(s.ok());
    return *(*s)->CountRawReports();
  }

  std::string db_path() const { return dir_.File("ingest.db"); }
  std::uint16_t port() const { return server_->port(); }

  /// Connects and completes the handshake; returns the Welcome.
  v1::Welcome Handshake(RawClient& c, const std::string& agent) {
    EXPECT_TRUE(c.Send(HelloEnvelope(token_, agent)));
    auto w = c.Read();
    EXPECT_TRUE(w.has_value() && w->has_welcome()) << (w ? (w->has_error() ? w->error().message() : std::string("another frame")) : std::string("nothing"));
    return w ? w->welcome() : v1::Welcome{};
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
  RawClient c(port());
  ASSERT_TRUE(c.SendBytes(std::string("\x80\x00\x00\x00", 4)));
  ExpectError(c, v1::ERROR_CODE_FRAME_TOO_LARGE, "over the limit of 1048576 bytes");
}

TEST_F(IngestTest, UnknownTokenIsRefused) {
  RawClient c(port());
  ASSERT_TRUE(c.Send(HelloEnvelope("dpt_not-a-real-token", "agent-x")));
  ExpectError(c, v1::ERROR_CODE_UNAUTHENTICATED, "unknown or revoked enrollment token");
  EXPECT_EQ(server_->stats().auth_failures, 1u);
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
  EXPECT_EQ(server_->stats().timeouts, 1u);
}

TEST_F(IngestTest, SilentConnectionHitsTheIdleTimeout) {
  RawClient c(port());
  ExpectError(c, v1::ERROR_CODE_TIMEOUT, "idle timeout");
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
      if (pad > 0) {
        auto* u = r.add_unavailable();
        u->set_measurement("padding");
        u->set_reason(std::string(pad, static_cast<char>('a' + s % 26)));
      }
      q_.emplace_back(s, r.SerializeAsString());
    }
  }
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
  agent::UplinkOptions o;
  o.collector = {"127.0.0.1", port()};
  o.credential = token_;
  o.agent_id = "uplink-agent";
  o.max_batch_reports = 7;
  o.backoff_min = 10ms;

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

TEST_F(IngestTest, UplinkStopsRetryingARefusedCredential) {
  asio::io_context client_io;
  agent::UplinkOptions o;
  o.collector = {"127.0.0.1", port()};
  o.credential = "dpt_wrong";
  o.agent_id = "refused-agent";
  MemoryQueue q;
  q.Add(1, 3);
  agent::Uplink a(client_io.get_executor(), o, q, 1);
  asio::co_spawn(client_io, a.Run(), asio::detached);
  client_io.run_for(10s);
  EXPECT_TRUE(a.refused());
  EXPECT_NE(a.stats().last_error.find("UNAUTHENTICATED"), std::string::npos)
      << a.stats().last_error;
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
    agent::UplinkOptions o;
    o.collector = {host, port()};
    o.credential = token_;
    o.agent_id = agent;
    o.backoff_min = 10ms;
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
  agent::Uplink u(client_io.get_executor(), ClientOptions(cert_.cert_file, "dns-agent", "localhost"),
                  q, 1);
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
  EXPECT_EQ(server_->stats().tls_failures, 1u);
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
