#pragma once

// /metrics (docs/metrics.md): the collector's figures as Prometheus metric
// families, and their text format, on prometheus-cpp's data model and
// serializer. Built at scrape time from snapshots, so a series with no data
// is left out rather than exported as 0.

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <string>
#include <vector>

#include "collector/http/server.h"
#include "collector/ingest/server.h"
#include "collector/ingest/writer.h"
#include "collector/reports/health.h"

namespace deskpulse::collector::metrics {

using Families = std::vector<prometheus::MetricFamily>;

/// What the ingest side shows at one moment.
struct IngestSnapshot {
  IngestStats ingest;
  WriterStats writer;
  std::size_t queued_reports = 0;
  prometheus::ClientMetric ack_seconds, commit_seconds;  // histograms
};

/// Ingest and store counters, the latency histograms, the agents'
/// self-health totals and the SLO counters.
void AddIngest(const IngestSnapshot& s, Families* out);

/// The per-customer summary gauges (TPS, LHI, endpoints reporting, TPS change
/// over 30 days) from the health book, assessed at `assessed_ms`.
void AddCustomers(const std::vector<CustomerHealth>& customers, std::int64_t assessed_ms,
                  Families* out);

/// The webhooks' counters (only when webhooks are configured).
struct WebhookCounts {
  std::uint64_t queued = 0, delivered = 0, failed_attempts = 0, abandoned = 0;
};
void AddWebhooks(const WebhookCounts& w, Families* out);

/// The HTTP server's counters (the API, the dashboard, /metrics).
void AddHttp(const http::ServerStats& s, Families* out);

/// deskpulse_build_info.
void AddBuildInfo(Families* out);

/// The text exposition format (version 0.0.4).
std::string Render(const Families& families);
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace deskpulse::collector::metrics
