// /metrics' building blocks: the report totals behind the agent and SLO
// counters, and the families and text built from them (docs/metrics.md).
#include <gtest/gtest.h>

#include <string>

#include "collector/ingest/report_totals.h"
#include "collector/metrics/exposition.h"

namespace deskpulse::collector {
namespace {

namespace v1 = deskpulse::v1;

v1::Report WithHealth(std::uint64_t dropped, std::uint64_t corrupt, std::uint64_t restarts,
                      std::uint64_t rejected = 0) {
  v1::Report r;
  auto* h = r.mutable_agent_health();
  h->set_dropped_reports(dropped);
  h->set_corrupt_records(corrupt);
  h->set_restarts(restarts);
  h->set_rejected_reports(rejected);
  return r;
}

TEST(ReportTotals, AgentCountersAddTheirRiseFromEachEndpointsFirstReport) {
  ReportTotals t;
  EXPECT_FALSE(t.snapshot().agents_seen);
  t.Add(1, WithHealth(40, 2, 7));  // baseline: what happened before is not this collector's
  EXPECT_TRUE(t.snapshot().agents_seen);
  EXPECT_EQ(t.snapshot().agent_dropped_reports, 0u);
  t.Add(1, WithHealth(45, 2, 8, 1));
  t.Add(2, WithHealth(3, 0, 0));
  t.Add(2, WithHealth(10, 1, 0));
  const auto& s = t.snapshot();
  EXPECT_EQ(s.agent_dropped_reports, 5u + 7u);
  EXPECT_EQ(s.agent_corrupt_records, 1u);
  EXPECT_EQ(s.agent_restarts, 1u);
  EXPECT_EQ(s.agent_rejected_reports, 1u);
  EXPECT_EQ(t.endpoints(), 2u);
}

TEST(ReportTotals, AReinstalledAgentCountsFromZeroAndTheTotalsNeverFall) {
  ReportTotals t;
  t.Add(1, WithHealth(100, 0, 50));
  t.Add(1, WithHealth(120, 0, 51));
  t.Add(1, WithHealth(4, 0, 0));  // reinstalled: its counters began again
  EXPECT_EQ(t.snapshot().agent_dropped_reports, 20u + 4u);
  EXPECT_EQ(t.snapshot().agent_restarts, 1u);
  t.Add(1, WithHealth(6, 0, 1));
  EXPECT_EQ(t.snapshot().agent_dropped_reports, 26u);
  EXPECT_EQ(t.snapshot().agent_restarts, 2u);
}

TEST(ReportTotals, DowntimeIsUnplannedOutagesFrozenDisplaysAndCrashes) {
  ReportTotals t;
  v1::Report r;
  auto* s = r.mutable_stability();
  s->set_session_s(3600);
  auto* planned = s->add_session_events();
  planned->set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
  planned->set_planned(true);
  planned->set_downtime_ms(600'000);  // a maintenance window: not downtime
  auto* outage = s->add_session_events();
  outage->set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
  outage->set_downtime_ms(4'000);
  auto* stall = s->add_stalls();
  stall->set_duration_ms(1'000);
  stall->set_frozen_ms(2'500);  // frozen longer than the outage itself
  auto* closed = s->add_stalls();
  closed->set_duration_ms(500);  // closed while stalled: its duration counts
  auto* crash = s->add_crashes();
  crash->set_downtime_ms(12'000);
  s->add_crashes();  // no downtime known: none counted
  t.Add(1, r);
  EXPECT_TRUE(t.snapshot().sessions_seen);
  EXPECT_FALSE(t.snapshot().agents_seen);
  EXPECT_DOUBLE_EQ(t.snapshot().session_seconds, 3600);
  EXPECT_DOUBLE_EQ(t.snapshot().downtime_seconds, 4 + 2.5 + 0.5 + 12);
}

TEST(ReportTotals, SlowWindowsAreThoseAboveTheTargetAtP95) {
  ReportTotals t(100);
  v1::Report r;
  auto add = [&r](std::uint32_t rtt_us, std::uint32_t window_s) {
    auto* w = r.add_sessions();
    w->set_rtt_p95_us(rtt_us);
    w->set_window_s(window_s);
  };
  add(100'000, 60);  // exactly at the target: within it
  add(100'001, 30);
  add(250'000, 10);
  add(400'000, 0);                     // no time: nothing to count, as in the rollups
  r.add_sessions()->set_window_s(60);  // no RTT measured
  t.Add(1, r);
  EXPECT_TRUE(t.snapshot().windows_seen);
  EXPECT_DOUBLE_EQ(t.snapshot().window_seconds, 100);
  EXPECT_DOUBLE_EQ(t.snapshot().slow_window_seconds, 40);
}

bool HasFamily(const metrics::Families& f, const std::string& name) {
  for (const auto& fam : f) {
    if (fam.name == name) return true;
  }
  return false;
}

TEST(Exposition, FamiliesWithoutDataAreLeftOut) {
  metrics::IngestSnapshot snap;
  metrics::Families f;
  metrics::AddIngest(snap, &f);
  EXPECT_TRUE(HasFamily(f, "deskpulse_store_reports_stored_total"));  // a true 0
  EXPECT_TRUE(HasFamily(f, "deskpulse_ingest_ack_duration_seconds"));
  EXPECT_FALSE(HasFamily(f, "deskpulse_agent_restarts_total"));
  EXPECT_FALSE(HasFamily(f, "deskpulse_session_seconds_total"));
  EXPECT_FALSE(HasFamily(f, "deskpulse_session_window_seconds_total"));

  snap.writer.totals.agents_seen = true;
  snap.writer.totals.windows_seen = true;
  metrics::Families g;
  metrics::AddIngest(snap, &g);
  EXPECT_TRUE(HasFamily(g, "deskpulse_agent_restarts_total"));
  EXPECT_TRUE(HasFamily(g, "deskpulse_session_slow_window_seconds_total"));
  EXPECT_FALSE(HasFamily(g, "deskpulse_session_downtime_seconds_total"));
}

TEST(Exposition, CustomerGaugesOnlyWhereTheFigureExists) {
  CustomerHealth scored;
  scored.technical.customer = {1, "Contoso \"Legal\"\n<b>"};
  scored.technical.score.tps = 71.5;
  scored.technical.window.endpoints = 40;
  scored.health.lhi = 64.25;
  scored.health.tps_trend.change_30d = -10;
  CustomerHealth silent;
  silent.technical.customer = {2, "Tailspin Toys"};
  metrics::Families f;
  metrics::AddCustomers({scored, silent}, 1'700'000'000'000, &f);
  const std::string text = metrics::Render(f);
  EXPECT_NE(text.find("deskpulse_customer_tps{customer=\"Contoso \\\"Legal\\\"\\n<b>\"} 71.5"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("deskpulse_customer_tps_change_30d{customer=\"Contoso \\\"Legal\\\"\\n<b>\"} -10"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          "deskpulse_customer_endpoints_reporting{customer=\"Contoso \\\"Legal\\\"\\n<b>\"} 40"),
      std::string::npos)
      << text;
  EXPECT_EQ(text.find("Tailspin"), std::string::npos) << text;
  EXPECT_NE(text.find("deskpulse_health_assessed_timestamp_seconds 1700000000"), std::string::npos)
      << text;

  metrics::Families none;
  metrics::AddCustomers({silent}, 1, &none);
  EXPECT_FALSE(HasFamily(none, "deskpulse_customer_tps"));
  EXPECT_FALSE(HasFamily(none, "deskpulse_customer_lhi"));
  EXPECT_FALSE(HasFamily(none, "deskpulse_customer_tps_change_30d"));
}

TEST(Exposition, HistogramsHaveTheIngestBarAsABucket) {
  prometheus::Histogram h(LatencyBucketsSeconds());
  h.Observe(0.049);
  h.Observe(0.051);
  metrics::IngestSnapshot snap;
  snap.ack_seconds = h.Collect();
  metrics::Families f;
  metrics::AddIngest(snap, &f);
  const std::string text = metrics::Render(f);
  EXPECT_NE(text.find("deskpulse_ingest_ack_duration_seconds_bucket{le=\"0.05\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("deskpulse_ingest_ack_duration_seconds_bucket{le=\"+Inf\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("deskpulse_ingest_ack_duration_seconds_count 2"), std::string::npos);
}

}  // namespace
}  // namespace deskpulse::collector
