#include "collector/metrics/exposition.h"

#include <fmt/format.h>
#include <prometheus/text_serializer.h>

#include <sstream>
#include <utility>

namespace deskpulse::collector::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

ClientMetric Value(MetricType type, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

void Add(Families* out, std::string name, std::string help, MetricType type, double v) {
  out->push_back(MetricFamily{std::move(name), std::move(help), type, {Value(type, v)}});
}

void Counter(Families* out, std::string name, std::string help, std::uint64_t v) {
  Add(out, std::move(name), std::move(help), MetricType::Counter, static_cast<double>(v));
}

void Gauge(Families* out, std::string name, std::string help, double v) {
  Add(out, std::move(name), std::move(help), MetricType::Gauge, v);
}

}  // namespace

void AddHttp(const http::ServerStats& s, Families* out) {
  Counter(out, "deskpulse_http_connections_accepted_total", "HTTP connections accepted.",
          s.connections_accepted);
  Counter(out, "deskpulse_http_connections_refused_total",
          "HTTP connections closed at accept: over a cap with nothing idle to close.",
          s.connections_refused);
  Counter(out, "deskpulse_http_connections_evicted_total",
          "Idle HTTP connections closed to make room for new ones.", s.connections_evicted);
  Counter(out, "deskpulse_http_tls_failures_total", "Failed TLS handshakes on the HTTP port.",
          s.tls_failures);
  MetricFamily timeouts{"deskpulse_http_timeouts_total",
                        "HTTP connections closed for a missed deadline, by phase.",
                        MetricType::Counter,
                        {}};
  const std::pair<const char*, std::uint64_t> phases[] = {{"handshake", s.handshake_timeouts},
                                                          {"head", s.head_timeouts},
                                                          {"body", s.body_timeouts},
                                                          {"idle", s.idle_closes},
                                                          {"write", s.write_timeouts}};
  for (const auto& [phase, n] : phases) {
    timeouts.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(n), {{"phase", phase}}));
  }
  out->push_back(std::move(timeouts));
  Counter(out, "deskpulse_http_requests_total", "HTTP requests whose head was read.", s.requests);
  Counter(out, "deskpulse_http_bad_requests_total",
          "HTTP requests refused by the server itself: malformed or over a limit.", s.bad_requests);
  MetricFamily responses{"deskpulse_http_responses_total",
                         "HTTP responses, by status class.",
                         MetricType::Counter,
                         {}};
  for (int c = 1; c <= 5; ++c) {
    responses.metric.push_back(Value(MetricType::Counter, static_cast<double>(s.responses[c]),
                                     {{"code", fmt::format("{}xx", c)}}));
  }
  out->push_back(std::move(responses));
  Gauge(out, "deskpulse_http_connections_open", "HTTP connections open.",
        static_cast<double>(s.connections_open));
  Gauge(out, "deskpulse_http_connections_max", "The cap on HTTP connections.",
        static_cast<double>(s.max_connections));
  Gauge(out, "deskpulse_http_body_bytes", "Request bodies held in memory.",
        static_cast<double>(s.body_bytes_held));
}

void AddIngest(const IngestSnapshot& s, Families* out) {
  const IngestStats& i = s.ingest;
  Counter(out, "deskpulse_ingest_connections_accepted_total", "Agent connections accepted.",
          i.connections_accepted);
  Counter(out, "deskpulse_ingest_connections_refused_total",
          "Agent connections closed at accept: over a cap, or a locked-out peer.",
          i.connections_refused);
  Counter(out, "deskpulse_ingest_pending_evicted_total",
          "Not-yet-welcomed connections closed to make room.", i.pending_evicted);
  Counter(out, "deskpulse_ingest_protocol_errors_total",
          "Connections closed for a protocol violation.", i.protocol_errors);
  Counter(out, "deskpulse_ingest_store_unavailable_total",
          "Agent connections closed because the store could not commit (nothing "
          "acknowledged; agents resend).",
          i.store_unavailable);
  Counter(out, "deskpulse_ingest_auth_failures_total", "Refused agent credentials.",
          i.auth_failures);
  Counter(out, "deskpulse_ingest_auth_lockouts_total",
          "Peers locked out after repeated failed logins.", i.auth_lockouts);
  Counter(out, "deskpulse_ingest_timeouts_total", "Connections closed for a missed deadline.",
          i.timeouts);
  Counter(out, "deskpulse_ingest_tls_failures_total", "Failed TLS handshakes.", i.tls_failures);
  Counter(out, "deskpulse_ingest_read_pauses_total", "Reads held back by the buffered-bytes cap.",
          i.read_pauses);
  Counter(out, "deskpulse_ingest_streams_behind_agents_total",
          "Agent streams acknowledged further than the store holds (the store lost "
          "acknowledged reports).",
          i.streams_behind_agents);
  Counter(out, "deskpulse_ingest_reports_forgotten_total",
          "Acknowledged reports the store no longer held when their agent came back.",
          i.reports_forgotten);
  Gauge(out, "deskpulse_ingest_connections_open", "Agent connections open.",
        static_cast<double>(i.connections_open));
  Gauge(out, "deskpulse_ingest_connections_pending", "Agent connections not yet welcomed.",
        static_cast<double>(i.connections_pending));
  Gauge(out, "deskpulse_ingest_connections_max", "The cap on agent connections in force.",
        static_cast<double>(i.max_connections));
  Gauge(out, "deskpulse_ingest_buffered_bytes",
        "Frame bytes held in memory across all connections.",
        static_cast<double>(i.buffered_bytes));
  Gauge(out, "deskpulse_ingest_queued_reports", "Reports waiting for the writer's next commit.",
        static_cast<double>(s.queued_reports));
  out->push_back(MetricFamily{"deskpulse_ingest_ack_duration_seconds",
                              "A batch fully received until its acknowledgement is handed to "
                              "the socket (its commit included).",
                              MetricType::Histogram,
                              {s.ack_seconds}});

  const WriterStats& w = s.writer;
  Counter(out, "deskpulse_store_reports_stored_total", "Reports committed to the store.",
          w.reports_stored);
  Counter(out, "deskpulse_store_reports_duplicate_total",
          "Resent reports the store already held (skipped, acknowledged again).", w.duplicates);
  Counter(out, "deskpulse_store_commits_total", "Group commits.", w.commits);
  Counter(out, "deskpulse_store_commit_failures_total", "Group commits that failed.",
          w.commit_failures);
  out->push_back(MetricFamily{"deskpulse_store_commit_duration_seconds",
                              "One group commit, begin to durable commit.",
                              MetricType::Histogram,
                              {s.commit_seconds}});
  const StoreStats& st = w.store;
  Counter(out, "deskpulse_store_rollup_flushes_total", "Rollup flush transactions.",
          st.rollup_flushes);
  Counter(out, "deskpulse_store_rollup_flush_failures_total", "Rollup flushes that failed.",
          st.rollup_flush_failures);
  Gauge(out, "deskpulse_store_rollup_backlog_reports",
        "Reports this collector committed whose rollups are not written yet (scores do not "
        "show them yet).",
        st.rollup_backlog_reports);
  Counter(out, "deskpulse_store_damaged_rows_total",
          "Raw report rows whose checksum failed when read back (left out of rollups).",
          st.damaged_rows);
  Counter(out, "deskpulse_store_reports_replayed_total",
          "Reports rolled up from stored rows rather than from memory.", st.reports_replayed);
  Counter(out, "deskpulse_store_retention_passes_total", "Retention passes.", st.retention_passes);

  const ReportTotalsSnapshot& t = w.totals;
  if (t.agents_seen) {
    Counter(out, "deskpulse_agent_spool_dropped_reports_total",
            "Reports agents dropped oldest-first because their spool was full (the rise of "
            "their own counters seen in stored reports).",
            t.agent_dropped_reports);
    Counter(out, "deskpulse_agent_spool_corrupt_records_total",
            "Damaged spool records agents skipped.", t.agent_corrupt_records);
    Counter(out, "deskpulse_agent_rejected_reports_total",
            "Reports agents dropped after the collector refused them one by one.",
            t.agent_rejected_reports);
    Counter(out, "deskpulse_agent_restarts_total", "Agent restarts.", t.agent_restarts);
  }
  if (t.sessions_seen) {
    Add(out, "deskpulse_session_seconds_total",
        "Remote-session time in stored reports (the availability SLO's denominator).",
        MetricType::Counter, t.session_seconds);
    Add(out, "deskpulse_session_downtime_seconds_total",
        "Unplanned downtime within it: outages, frozen displays, crashes.", MetricType::Counter,
        t.downtime_seconds);
  }
  if (t.windows_seen) {
    Add(out, "deskpulse_session_window_seconds_total",
        "Session-window time with a measured RTT (the latency SLO's denominator).",
        MetricType::Counter, t.window_seconds);
    Add(out, "deskpulse_session_slow_window_seconds_total",
        "Session-window time whose RTT p95 was above the 100 ms target.", MetricType::Counter,
        t.slow_window_seconds);
  }
}

void AddCustomers(const std::vector<CustomerHealth>& customers, std::int64_t assessed_ms,
                  Families* out) {
  Gauge(out, "deskpulse_health_assessed_timestamp_seconds",
        "When the health book last assessed every customer.",
        static_cast<double>(assessed_ms) / 1000);
  MetricFamily tps{"deskpulse_customer_tps",
                   "Technical performance score, 0-100, over the scoring window.",
                   MetricType::Gauge,
                   {}};
  MetricFamily lhi{"deskpulse_customer_lhi", "Loyalty health index, 0-100.", MetricType::Gauge, {}};
  MetricFamily change{"deskpulse_customer_tps_change_30d",
                      "TPS now minus TPS 30 days ago, from the daily snapshots.",
                      MetricType::Gauge,
                      {}};
  MetricFamily endpoints{"deskpulse_customer_endpoints_reporting",
                         "Endpoints that reported within the scoring window.",
                         MetricType::Gauge,
                         {}};
  for (const CustomerHealth& c : customers) {
    std::vector<ClientMetric::Label> label = {{"customer", c.technical.customer.name}};
    if (c.technical.score.tps)
      tps.metric.push_back(Value(MetricType::Gauge, *c.technical.score.tps, label));
    if (c.health.lhi) lhi.metric.push_back(Value(MetricType::Gauge, *c.health.lhi, label));
    if (c.health.tps_trend.change_30d) {
      change.metric.push_back(Value(MetricType::Gauge, *c.health.tps_trend.change_30d, label));
    }
    if (c.technical.window.endpoints > 0) {
      endpoints.metric.push_back(
          Value(MetricType::Gauge, static_cast<double>(c.technical.window.endpoints), label));
    }
  }
  for (MetricFamily* f : {&tps, &lhi, &change, &endpoints}) {
    if (!f->metric.empty()) out->push_back(std::move(*f));
  }
}

void AddWebhooks(const WebhookCounts& w, Families* out) {
  Counter(out, "deskpulse_webhook_events_queued_total",
          "Webhook deliveries this collector queued (one per event and webhook).", w.queued);
  Counter(out, "deskpulse_webhook_deliveries_total", "Webhook deliveries answered 2xx.",
          w.delivered);
  Counter(out, "deskpulse_webhook_failed_attempts_total",
          "Webhook delivery attempts that failed (retried with backoff).", w.failed_attempts);
  Counter(out, "deskpulse_webhook_abandoned_total",
          "Webhook deliveries given up after give_up_after_s of failures.", w.abandoned);
}

void AddBuildInfo(Families* out) {
  out->push_back(MetricFamily{
      "deskpulse_build_info",
      "The collector's build: always 1.",
      MetricType::Gauge,
      {Value(MetricType::Gauge, 1, {{"version", DESKPULSE_VERSION}, {"protocol", "v1"}})}});
}

std::string Render(const Families& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace deskpulse::collector::metrics
