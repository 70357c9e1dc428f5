#include "collector/app/serve.h"

#include <spdlog/spdlog.h>

#include <asio.hpp>
#include <csignal>
#include <fstream>
#include <future>
#include <iostream>

#include "collector/api/server.h"
#include "collector/ingest/server.h"
#include "collector/ingest/writer.h"
#include "collector/metrics/exposition.h"
#include "collector/notify/notifier.h"
#include "collector/store/store.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector {
namespace {

void LogHttpTotals(const http::ServerStats& h) {
  spdlog::info(
      "http: {} connections, {} requests ({} 2xx, {} 4xx, {} 5xx), {} refused by the server "
      "(malformed or over a limit), {} timeouts ({} TLS handshake, {} head, {} body, {} "
      "write), {} failed TLS handshakes, {} idle connections evicted, {} refused at accept",
      h.connections_accepted, h.requests, h.responses[2], h.responses[4], h.responses[5],
      h.bad_requests, h.handshake_timeouts + h.head_timeouts + h.body_timeouts + h.write_timeouts,
      h.handshake_timeouts, h.head_timeouts, h.body_timeouts, h.write_timeouts, h.tls_failures,
      h.connections_evicted, h.connections_refused);
}

void LogTotals(const WriterStats& ws, const StoreStats& st, const IngestStats& is) {
  spdlog::info(
      "stopped: {} reports stored in {} commits ({} duplicates skipped), {} connections, "
      "{} protocol errors, {} refused credentials, {} timeouts, {} failed TLS "
      "handshakes",
      ws.reports_stored, ws.commits, ws.duplicates, is.connections_accepted, is.protocol_errors,
      is.auth_failures, is.timeouts, is.tls_failures);
  if (ws.commit_failures > 0 || is.store_unavailable > 0) {
    // Nothing was acknowledged that was not committed: what failed was resent.
    const bool failing = ws.store_failing || ws.final_flush_failed;
    spdlog::log(failing ? spdlog::level::err : spdlog::level::warn,
                "the store failed for a while: {} commits failed and {} connections were closed "
                "with STORE_UNAVAILABLE (nothing acknowledged was lost; agents resent the "
                "rest); {}",
                ws.commit_failures, is.store_unavailable,
                failing ? "it was still failing at stop (exit status 3)"
                        : "it recovered: every later commit succeeded");
  }
  spdlog::info(
      "limits: {} connections refused at accept, {} not-yet-welcomed connections "
      "evicted, {} refusals answered late, {} peers locked out, {} reads paused for "
      "memory",
      is.connections_refused, is.pending_evicted, is.auth_delayed, is.auth_lockouts,
      is.read_pauses);
  if (is.streams_behind_agents > 0) {
    spdlog::error(
        "{} streams were behind their agents: the store had lost {} acknowledged "
        "reports (agents resent what they still held)",
        is.streams_behind_agents, is.reports_forgotten);
  }
  if (st.damaged_rows > 0) {
    spdlog::error("{} damaged report rows were left out of the rollups", st.damaged_rows);
  }
  if (is.ack_us.TotalWeight() > 0) {
    spdlog::info(
        "ack latency at the collector (batch received → ack sent): p50 {:.1f} ms "
        "p99 {:.1f} ms max {:.1f} ms",
        is.ack_us.Quantile(0.5) / 1000, is.ack_us.Quantile(0.99) / 1000,
        is.ack_us.Quantile(1) / 1000);
  }
  if (ws.commits > 0) {
    spdlog::info(
        "writer: commit p50 {:.1f} ms p99 {:.1f} ms max {:.1f} ms; {:.0f} reports per "
        "group (p50); rollup flush p50 {:.1f} ms max {:.1f} ms; {} reports rolled up "
        "from stored rows",
        ws.commit_us.Quantile(0.5) / 1000, ws.commit_us.Quantile(0.99) / 1000,
        ws.commit_us.Quantile(1) / 1000, ws.group_reports.Quantile(0.5),
        st.flush_us.Quantile(0.5) / 1000, st.flush_us.Quantile(1) / 1000, st.reports_replayed);
  }
}

/// The ingest side at one moment, taken from another thread: the ingest
/// counters are the io thread's, so they are copied there. None while that
/// thread is not running (at shutdown): absent rather than stale.
std::optional<metrics::IngestSnapshot> SnapshotIngest(asio::io_context& io,
                                                      const IngestServer& server,
                                                      const Writer& writer) {
  auto stats = std::make_shared<std::promise<IngestStats>>();
  auto got = stats->get_future();
  asio::post(io, [stats, &server] { stats->set_value(server.stats()); });
  if (got.wait_for(std::chrono::seconds(2)) != std::future_status::ready) return std::nullopt;
  return metrics::IngestSnapshot{.ingest = got.get(),
                                 .writer = writer.stats(),
                                 .queued_reports = writer.queued_reports(),
                                 .ack_seconds = server.ack_seconds(),
                                 .commit_seconds = writer.commit_seconds()};
}

/// What the webhooks' conditions are judged on.
std::optional<notify::ConditionInputs> ConditionInputsOf(
    const std::optional<metrics::IngestSnapshot>& snap) {
  if (!snap) return std::nullopt;
  notify::ConditionInputs in;
  in.commit_failures = snap->writer.commit_failures;
  in.streams_behind_agents = snap->ingest.streams_behind_agents;
  if (snap->writer.totals.agents_seen) {
    in.agent_dropped_reports = snap->writer.totals.agent_dropped_reports;
  }
  in.acks = snap->ack_seconds.histogram.sample_count;
  for (const auto& b : snap->ack_seconds.histogram.bucket) {
    if (b.upper_bound == 0.05) in.acks_within_bar = b.cumulative_count;
  }
  return in;
}

/// Queues a webhook event for every customer whose churn risk the book
/// just recorded rising (on the book's thread, with its store).
void QueueRiskEvents(notify::Notifier& notifier, Store& store,
                     const std::vector<CustomerHealth>& customers) {
  std::vector<WebhookDelivery> deliveries;
  for (const CustomerHealth& c : customers) {
    if (auto e = notify::RiskRaised(c)) {
      auto d = notify::DeliveriesFor(*e, notifier.options().webhooks);
      deliveries.insert(deliveries.end(), d.begin(), d.end());
    }
  }
  if (deliveries.empty()) return;
  auto added = store.EnqueueDeliveries(deliveries, api::NowMs());
  if (!added.ok()) {
    spdlog::error("webhooks: queuing {} risk events failed: {}", deliveries.size(),
                  added.status().message());
    return;
  }
  notifier.CountQueued(*added);
  notifier.Wake();
}

}  // namespace

int RunServe(const ServeFlags& flags) {
  auto config = LoadServeConfig(flags);
  if (!config.ok()) {
    std::cerr << "deskpulse-collector: " << config.status().message() << "\n";
    return kExitUsage;
  }
  ServeConfig& c = *config;
  if (auto s = SetUpLogging("collector", c.log_level, c.log_file); !s.ok()) {
    std::cerr << "deskpulse-collector: " << s.message() << "\n";
    return kExitUsage;
  }
  const std::string fds = RaiseDescriptorLimit();
  auto store = OpenStore(c.store);
  if (!store.ok()) {
    spdlog::error("store: {}", store.status().message());
    return ExitCodeFor(store.status());
  }
  const std::string store_name = (*store)->name();
  Writer writer(std::move(store).value(), c.writer);
  writer.Start();

  asio::io_context io(1);
  // Caught from here on: a SIGTERM that comes as soon as the port file is
  // written waits for the handler below instead of killing the process.
  asio::signal_set signals(io, SIGTERM, SIGINT);
  IngestServer server(io, c.ingest, writer);
  if (auto s = server.Listen(); !s.ok()) {
    spdlog::error("{}", s.message());
    writer.Stop();
    return kExitNetwork;
  }
  server.Start();
  // Webhooks: their own thread and store connection; never on ingest's.
  std::unique_ptr<notify::Notifier> notifier;
  if (c.notify) {
    notify::NotifierOptions n = *c.notify;
    n.collector = fmt::format("{}:{}", c.ingest.node_name, server.port());
    notifier = std::make_unique<notify::Notifier>(std::move(n), c.store, [&io, &server, &writer] {
      return ConditionInputsOf(SnapshotIngest(io, server, writer));
    });
    if (auto s = notifier->Start(); !s.ok()) {
      spdlog::error("webhooks: {}", s.message());
      server.Drain([&io] { io.stop(); });
      io.run();
      writer.Stop();
      return ExitCodeFor(s);
    }
    spdlog::info("webhooks: delivering to {}", [&] {
      std::string names;
      for (const auto& w : notifier->options().webhooks)
        names += (names.empty() ? "" : ", ") + w.name;
      return names;
    }());
  }
  std::unique_ptr<api::ApiServer> http;
  if (c.api) {
    HealthOptions health;  // the published defaults (docs/scoring.md)
    api::ApiOptions api_options = *c.api;
    api_options.ingest_metrics = [&io, &server, &writer, &notifier] {
      metrics::Families out;
      if (auto snap = SnapshotIngest(io, server, writer)) metrics::AddIngest(*snap, &out);
      if (notifier) {
        const notify::NotifierStats n = notifier->stats();
        metrics::AddWebhooks({.queued = n.queued,
                              .delivered = n.delivered,
                              .failed_attempts = n.failed_attempts,
                              .abandoned = n.abandoned},
                             &out);
      }
      return out;
    };
    if (notifier) {
      api_options.on_recorded = [&notifier](Store& book_store,
                                            const std::vector<CustomerHealth>& customers) {
        QueueRiskEvents(*notifier, book_store, customers);
      };
    }
    http = std::make_unique<api::ApiServer>(std::move(api_options), c.store, health);
    if (auto s = http->Start(); !s.ok()) {
      spdlog::error("{}", s.message());
      server.Drain([&io] { io.stop(); });
      io.run();
      writer.Stop();
      return kExitNetwork;
    }
    spdlog::info("JSON API on {}://{}:{}/api/v1 (health assessed every {} s)",
                 c.api->tls ? "https" : "http", c.api->host, http->port(),
                 c.api->refresh_interval.count() / 1000);
    if (!flags.http_port_file.empty()) {
      std::ofstream(flags.http_port_file) << http->port() << "\n";
    }
  }
  if (!flags.port_file.empty()) std::ofstream(flags.port_file) << server.port() << "\n";
  spdlog::info("listening on {}:{} ({}), store {}; {}, at most {} connections", c.ingest.host,
               server.port(), c.ingest.tls ? "TLS" : "plain TCP", store_name, fds,
               server.options().max_connections);

  signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: draining {} connections", sig, server.stats().connections_open);
    server.Drain([&io] { io.stop(); });
  });
  io.run();
  if (http) {
    http->Stop();  // the book first: it wakes the notifier
    LogHttpTotals(http->stats());
  }
  if (notifier) notifier->Stop();
  writer.Stop();
  const auto ws = writer.stats();
  LogTotals(ws, ws.store, server.stats());
  spdlog::default_logger()->flush();
  // 3: the store was failing when serve stopped (its last commit, or the
  // final rollup flush); failures it recovered from are in the log.
  return ws.store_failing || ws.final_flush_failed ? kExitStore : kExitOk;
}

}  // namespace deskpulse::collector
