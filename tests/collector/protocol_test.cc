// The collector's protocol rules for one connection, without sockets: frames
// in, actions out (collector/ingest/protocol.h).
#include "collector/ingest/protocol.h"

#include <gtest/gtest.h>

namespace deskpulse::collector {
namespace {

namespace v1 = deskpulse::v1;

std::string HelloFrame(std::uint64_t acked = 0, std::uint32_t version = 1,
                       const std::string& credential = "dpt_x") {
  v1::Envelope env;
  auto* h = env.mutable_hello();
  h->set_protocol_version(static_cast<v1::ProtocolVersion>(version));
  h->set_agent_id("agent-1");
  h->set_epoch(3);
  h->set_credential(credential);
  h->set_acked_through_seq(acked);
  return env.SerializeAsString();
}

std::string BatchFrame(const std::vector<std::uint64_t>& seqs) {
  v1::Envelope env;
  env.mutable_batch();  // present even when empty
  for (auto seq : seqs) {
    v1::Report r;
    r.set_seq(seq);
    r.set_observed_at_unix_ms(1'795'000'000'000);
    env.mutable_batch()->add_reports(r.SerializeAsString());
  }
  return env.SerializeAsString();
}

ProtocolSession Welcomed(std::uint64_t store_seq = 0) {
  ProtocolSession p({.node_name = "c1", .max_frame_bytes = 65536, .max_batch_reports = 3});
  EXPECT_TRUE(p.OnFrame(HelloFrame()).submit_hello.has_value());
  EXPECT_TRUE(p.OnRegistered(StreamInfo{7, 8, 9, store_seq}).welcomed);
  return p;
}

TEST(Protocol, HelloIsSubmittedThenWelcomedWithTheStoresWatermarkAndLimits) {
  ProtocolSession p({.node_name = "c1", .max_frame_bytes = 65536, .max_batch_reports = 50});
  auto a = p.OnFrame(HelloFrame(/*acked=*/5));
  ASSERT_TRUE(a.submit_hello.has_value());
  EXPECT_EQ(a.submit_hello->agent_id(), "agent-1");
  EXPECT_FALSE(a.closes());
  EXPECT_FALSE(p.welcomed());
  auto w = p.OnRegistered(StreamInfo{7, 8, 9, 5});
  ASSERT_EQ(w.send.size(), 1u);
  const auto& welcome = w.send[0].welcome();
  EXPECT_EQ(welcome.last_acked_seq(), 5u);
  EXPECT_EQ(welcome.collector_node(), "c1");
  EXPECT_EQ(welcome.limits().max_frame_bytes(), 65536u);
  EXPECT_EQ(welcome.limits().max_batch_reports(), 50u);
  EXPECT_TRUE(w.welcomed);
  EXPECT_EQ(w.reports_forgotten, 0u);
  EXPECT_TRUE(p.welcomed());
  EXPECT_EQ(p.stream().stream_id, 9);
}

TEST(Protocol, AStoreBehindTheAgentIsReported) {
  ProtocolSession p(ProtocolLimits{});
  (void)p.OnFrame(HelloFrame(/*acked=*/12));
  auto w = p.OnRegistered(StreamInfo{1, 2, 3, 5});
  EXPECT_EQ(w.reports_forgotten, 7u);
  EXPECT_EQ(w.send.at(0).welcome().last_acked_seq(), 5u) << "resume from what the store holds";
}

TEST(Protocol, OrderAndVersionViolationsCloseWithTheirCode) {
  {
    ProtocolSession p(ProtocolLimits{});
    auto a = p.OnFrame(BatchFrame({1}));
    EXPECT_EQ(a.close_code, v1::ERROR_CODE_PROTOCOL_VIOLATION);
    EXPECT_NE(a.close_message.find("before the Welcome"), std::string::npos);
  }
  {
    ProtocolSession p = Welcomed();
    auto a = p.OnFrame(HelloFrame());
    EXPECT_EQ(a.close_code, v1::ERROR_CODE_PROTOCOL_VIOLATION);
    EXPECT_EQ(a.close_message, "Hello sent twice");
  }
  {
    ProtocolSession p(ProtocolLimits{});
    EXPECT_EQ(p.OnFrame(HelloFrame(0, 2)).close_code, v1::ERROR_CODE_PROTOCOL_VERSION);
  }
  {
    ProtocolSession p(ProtocolLimits{});
    EXPECT_EQ(p.OnFrame("\xff\xff garbage").close_code, v1::ERROR_CODE_MALFORMED_FRAME);
    EXPECT_EQ(ProtocolSession(ProtocolLimits{}).OnFrame("").close_code,
              v1::ERROR_CODE_MALFORMED_FRAME)
        << "an empty envelope carries no message";
  }
}

TEST(Protocol, RefusedCredentialsAreMarkedForTheThrottle) {
  ProtocolSession p(ProtocolLimits{});
  auto none = p.OnFrame(HelloFrame(0, 1, ""));
  EXPECT_TRUE(none.credential_refused);
  EXPECT_EQ(none.close_code, v1::ERROR_CODE_UNAUTHENTICATED);
  ProtocolSession q(ProtocolLimits{});
  (void)q.OnFrame(HelloFrame());
  auto refused = q.OnRegistered(Status(Code::kUnauthenticated, "unknown or revoked token"));
  EXPECT_TRUE(refused.credential_refused);
  EXPECT_FALSE(q.welcomed());
  ProtocolSession r(ProtocolLimits{});
  (void)r.OnFrame(HelloFrame());
  auto down = r.OnRegistered(Status(Code::kUnavailable, "disk gone"));
  EXPECT_FALSE(down.credential_refused);
  EXPECT_EQ(down.close_code, v1::ERROR_CODE_STORE_UNAVAILABLE);
}

TEST(Protocol, BatchesAreCheckedWholeBeforeAnythingIsSubmitted) {
  ProtocolSession p = Welcomed();
  auto too_many = p.OnFrame(BatchFrame({1, 2, 3, 4}));
  EXPECT_EQ(too_many.close_code, v1::ERROR_CODE_BATCH_TOO_LARGE);
  EXPECT_FALSE(too_many.submit_batch.has_value());
  ProtocolSession q = Welcomed();
  auto backwards = q.OnFrame(BatchFrame({1, 3, 2}));
  EXPECT_EQ(backwards.close_code, v1::ERROR_CODE_BAD_REPORT);
  EXPECT_NE(backwards.close_message.find("report #2 has seq 2 after 3"), std::string::npos)
      << backwards.close_message;
  EXPECT_EQ(q.inflight(), 0);
  ProtocolSession e = Welcomed();
  EXPECT_EQ(e.OnFrame(BatchFrame({})).close_code, v1::ERROR_CODE_BAD_REPORT);
}

TEST(Protocol, ACommittedBatchIsAcknowledgedAFailedOneClosesUnacknowledged) {
  ProtocolSession p = Welcomed(4);
  auto a = p.OnFrame(BatchFrame({5, 6}));
  ASSERT_TRUE(a.submit_batch.has_value());
  EXPECT_EQ(a.submit_batch->size(), 2u);
  EXPECT_EQ((*a.submit_batch)[1].report.seq(), 6u);
  EXPECT_EQ(p.inflight(), 1);
  auto ack = p.OnCommitted(BatchOutcome{6, 2, 0});
  ASSERT_EQ(ack.send.size(), 1u);
  EXPECT_EQ(ack.send[0].ack().acked_through_seq(), 6u);
  EXPECT_EQ(p.inflight(), 0);
  (void)p.OnFrame(BatchFrame({7}));
  auto failed = p.OnCommitted(Status(Code::kIo, "disk full"));
  EXPECT_EQ(failed.close_code, v1::ERROR_CODE_STORE_UNAVAILABLE);
  EXPECT_TRUE(failed.send.empty()) << "nothing is acknowledged that was not committed";
}

}  // namespace
}  // namespace deskpulse::collector
