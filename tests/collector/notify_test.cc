// Webhooks' pure parts (docs/metrics.md, "Webhooks"): configuration checks,
// risk events, idempotency keys, signatures, backoff, and the conditions.
#include <gtest/gtest.h>

#include <random>

#include "collector/notify/events.h"

namespace deskpulse::collector::notify {
namespace {

WebhookOptions Hook(std::string url) {
  WebhookOptions w;
  w.name = "crm";
  w.url = std::move(url);
  w.secret = "0123456789abcdef0123";
  return w;
}

TEST(Webhooks, HttpsAnywhereHttpOnlyToLoopbackUnlessAllowed) {
  EXPECT_TRUE(CheckWebhook(Hook("https://hooks.example.net/deskpulse"), false).ok());
  EXPECT_TRUE(CheckWebhook(Hook("http://127.0.0.1:9000/hook"), false).ok());
  EXPECT_TRUE(CheckWebhook(Hook("http://[::1]:9000/hook"), false).ok());
  const Status clear = CheckWebhook(Hook("http://hooks.example.net/x"), false);
  EXPECT_EQ(clear.code(), Code::kInvalidArgument);
  EXPECT_NE(clear.message().find("webhooks.crm.url"), std::string::npos) << clear.message();
  EXPECT_NE(clear.message().find("allow_plaintext"), std::string::npos) << clear.message();
  EXPECT_TRUE(CheckWebhook(Hook("http://hooks.example.net/x"), true).ok());
  EXPECT_FALSE(CheckWebhook(Hook("ftp://hooks.example.net/x"), true).ok());
  EXPECT_FALSE(CheckWebhook(Hook("not a url"), true).ok());
  WebhookOptions weak = Hook("https://hooks.example.net/");
  weak.secret = "short";
  const Status s = CheckWebhook(weak, false);
  EXPECT_NE(s.message().find("secret_file"), std::string::npos) << s.message();
}

TEST(Webhooks, SignatureIsHmacSha256OfTimeAndBody) {
  // Python: hmac.new(secret, b'1700000000.{"id":"x"}', hashlib.sha256).hexdigest()
  EXPECT_EQ(Sign("0123456789abcdef0123", 1'700'000'000, R"({"id":"x"})"),
            "t=1700000000,v1=eca71b470483f0d060aec399147e3b5af9eb2966549176f806edc17af9e1e332");
}

CustomerHealth WithChange(std::string from, std::string to) {
  CustomerHealth c;
  c.technical.customer = {7, "Contoso <b>Legal</b>"};
  c.technical.score.tps = 71.5;
  c.health.lhi = 38.25;
  c.risk_change = RiskEvent{.customer_id = 7,
                            .at_ms = 1'700'000'000'123,
                            .from_risk = std::move(from),
                            .to_risk = std::move(to),
                            .reasons = {"NPS 8 < 20"}};
  return c;
}

TEST(Webhooks, OnlyARiseOfChurnRiskIsAnEvent) {
  EXPECT_FALSE(RiskRaised(CustomerHealth{}).has_value());
  EXPECT_FALSE(RiskRaised(WithChange("high", "medium")).has_value());
  EXPECT_FALSE(RiskRaised(WithChange("low", "unknown")).has_value());
  EXPECT_FALSE(RiskRaised(WithChange("unknown", "low")).has_value()) << "first data, at low";
  EXPECT_TRUE(RiskRaised(WithChange("unknown", "medium")).has_value());
  auto e = RiskRaised(WithChange("low", "high"));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "churn_risk.raised");
  EXPECT_EQ(e->key, "churn_risk.raised:7:1700000000123");
  EXPECT_EQ(e->payload["id"], e->key);
  EXPECT_EQ(e->payload["customer"]["name"], "Contoso <b>Legal</b>");
  EXPECT_EQ(e->payload["risk"]["from"], "low");
  EXPECT_EQ(e->payload["risk"]["to"], "high");
  EXPECT_EQ(e->payload["risk"]["reasons"][0], "NPS 8 < 20");
  EXPECT_EQ(e->payload["lhi"], 38.25);
}

TEST(Webhooks, EachWebhookTakesTheTypesItAsksFor) {
  auto e = RiskRaised(WithChange("medium", "high"));
  ASSERT_TRUE(e.has_value());
  WebhookOptions all = Hook("https://a.example/");
  WebhookOptions conditions = Hook("https://b.example/");
  conditions.name = "pager";
  conditions.events = {"condition.started"};
  const auto d = DeliveriesFor(*e, {all, conditions});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].webhook, "crm");
  EXPECT_EQ(d[0].event_key, e->key);
  EXPECT_EQ(nlohmann::json::parse(d[0].payload), e->payload);
}

TEST(Webhooks, BackoffDoublesWithJitterUpToItsCap) {
  WebhookOptions w = Hook("https://a.example/");
  w.retry_initial = std::chrono::milliseconds(1'000);
  w.retry_max = std::chrono::milliseconds(60'000);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) {
    const auto first = Backoff(w, 1, rng).count();
    EXPECT_GE(first, 500);
    EXPECT_LE(first, 1'000);
    const auto third = Backoff(w, 3, rng).count();
    EXPECT_GE(third, 2'000);
    EXPECT_LE(third, 4'000);
    const auto late = Backoff(w, 40, rng).count();
    EXPECT_GE(late, 30'000);
    EXPECT_LE(late, 60'000);
  }
}

TEST(Conditions, StartOnceWhenTheyFirstHoldAndEndAfterAQuietSpell) {
  ConditionTracker t(std::chrono::minutes(5));
  ConditionInputs in;
  in.agent_dropped_reports = 10;
  EXPECT_TRUE(t.Update(in, 0, "c1").empty()) << "the first call is the baseline";
  in.commit_failures = 2;
  auto e = t.Update(in, 15'000, "c1");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].type, "condition.started");
  EXPECT_EQ(e[0].payload["condition"]["name"], "store_commits_failing");
  EXPECT_EQ(e[0].key, "condition.started:store_commits_failing:c1:15000");
  in.commit_failures = 3;  // still failing: no second event
  EXPECT_TRUE(t.Update(in, 30'000, "c1").empty());
  EXPECT_EQ(t.active(), std::vector<std::string>{"store_commits_failing"});
  // Quiet for less than 5 minutes, then failing again: the same condition.
  EXPECT_TRUE(t.Update(in, 200'000, "c1").empty());
  in.commit_failures = 4;
  EXPECT_TRUE(t.Update(in, 250'000, "c1").empty());
  // Quiet for 5 minutes: it ends; failing again is a new start.
  EXPECT_TRUE(t.Update(in, 550'000, "c1").empty());
  EXPECT_TRUE(t.active().empty());
  in.commit_failures = 5;
  EXPECT_EQ(t.Update(in, 565'000, "c1").size(), 1u);
}

TEST(Conditions, AgentsDroppingLostAcknowledgementsAndSlowAcks) {
  ConditionTracker t;
  ConditionInputs in;
  EXPECT_TRUE(t.Update(in, 0, "c1").empty());
  in.agent_dropped_reports = 50;  // the first agent report: a baseline, not a rise
  EXPECT_TRUE(t.Update(in, 1, "c1").empty());
  in.agent_dropped_reports = 51;
  in.streams_behind_agents = 1;
  auto e = t.Update(in, 2, "c1");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].payload["condition"]["name"], "acknowledged_reports_lost");
  EXPECT_EQ(e[1].payload["condition"]["name"], "agents_dropping_reports");

  ConditionTracker acks;
  ConditionInputs a;
  EXPECT_TRUE(acks.Update(a, 0, "c1").empty());
  a.acks = 99;  // too few to judge
  a.acks_within_bar = 0;
  EXPECT_TRUE(acks.Update(a, 1, "c1").empty());
  a.acks = 299;  // 200 more, 198 within the bar: exactly 99%, within
  a.acks_within_bar = 198;
  EXPECT_TRUE(acks.Update(a, 2, "c1").empty());
  a.acks = 499;  // 200 more, 197 within: below 99%
  a.acks_within_bar = 395;
  auto slow = acks.Update(a, 3, "c1");
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_EQ(slow[0].payload["condition"]["name"], "ack_latency_high");
}

}  // namespace
}  // namespace deskpulse::collector::notify
