// deskpulse-collector: receives agent reports, stores them, scores customers.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <asio.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "collector/ingest/server.h"
#include "collector/ingest/writer.h"
#include "collector/reports/peripherals.h"
#include "collector/reports/scores.h"
#include "collector/store/store.h"
#include "deskpulse/common/tls_openssl.h"
#include "deskpulse/common/catalog.h"
#include "deskpulse/common/config.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/host_port.h"
#include "deskpulse/common/logging.h"

namespace dp = deskpulse;
namespace dc = deskpulse::collector;

namespace {

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int Fail(const dp::Status& s) {
  spdlog::error("{}", s.message());
  return dp::ExitCodeFor(s);
}

struct ServeFlags {
  std::string db;
  std::string listen;
  std::string http;
  std::string config;
  std::string port_file;
  std::string tls_cert;
  std::string tls_key;
  bool plaintext = false;
  std::string log_level = "info";
  std::string log_file;
};

// Reads the [store], [ingest] and [log] tables; flags given on the command line win.
dp::Status LoadServeConfig(const ServeFlags& flags, dc::StoreOptions* store,
                           dc::IngestOptions* ingest, dc::WriterOptions* writer,
                           std::string* log_level, std::string* log_file) {
  std::string listen = "127.0.0.1:7741";
  dp::TlsOptions tls;
  bool plaintext = false;
  if (!flags.config.empty()) {
    DP_ASSIGN_OR_RETURN(auto cfg, dp::ConfigReader::FromFile(flags.config));
    std::int64_t v = 0;
    DP_RETURN_IF_ERROR(cfg.GetString("store.path", &store->path));
    v = store->raw_retention_days;
    DP_RETURN_IF_ERROR(cfg.GetInt("store.raw_retention_days", 1, 3650, &v));
    store->raw_retention_days = static_cast<int>(v);
    v = store->hourly_retention_days;
    DP_RETURN_IF_ERROR(cfg.GetInt("store.hourly_retention_days", 1, 3650, &v));
    store->hourly_retention_days = static_cast<int>(v);
    v = store->daily_retention_days;
    DP_RETURN_IF_ERROR(cfg.GetInt("store.daily_retention_days", 1, 3650, &v));
    store->daily_retention_days = static_cast<int>(v);
    v = writer->checkpoint_interval.count();
    DP_RETURN_IF_ERROR(cfg.GetInt("store.checkpoint_interval_ms", 10, 60'000, &v));
    writer->checkpoint_interval = std::chrono::milliseconds(v);

    DP_RETURN_IF_ERROR(cfg.GetString("ingest.listen", &listen));
    DP_RETURN_IF_ERROR(cfg.GetString("ingest.tls_cert_file", &tls.cert_file));
    DP_RETURN_IF_ERROR(cfg.GetString("ingest.tls_key_file", &tls.key_file));
    DP_RETURN_IF_ERROR(cfg.GetBool("ingest.plaintext", &plaintext));
    DP_RETURN_IF_ERROR(cfg.GetString("ingest.node_name", &ingest->node_name));
    v = ingest->max_frame_bytes;
    DP_RETURN_IF_ERROR(cfg.GetInt("ingest.max_frame_bytes", 1024, 64 << 20, &v));
    ingest->max_frame_bytes = static_cast<std::uint32_t>(v);
    v = ingest->max_batch_reports;
    DP_RETURN_IF_ERROR(cfg.GetInt("ingest.max_batch_reports", 1, 100000, &v));
    ingest->max_batch_reports = static_cast<std::uint32_t>(v);
    v = ingest->max_inflight_batches;
    DP_RETURN_IF_ERROR(cfg.GetInt("ingest.max_inflight_batches", 1, 1024, &v));
    ingest->max_inflight_batches = static_cast<int>(v);
    double secs = static_cast<double>(ingest->idle_timeout.count()) / 1000;
    DP_RETURN_IF_ERROR(cfg.GetDouble("ingest.idle_timeout_s", 0.1, 86400, &secs));
    ingest->idle_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(secs * 1000));
    secs = static_cast<double>(ingest->frame_timeout.count()) / 1000;
    DP_RETURN_IF_ERROR(cfg.GetDouble("ingest.frame_timeout_s", 0.1, 3600, &secs));
    ingest->frame_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(secs * 1000));
    double ms = static_cast<double>(writer->group_commit_window.count()) / 1000;
    DP_RETURN_IF_ERROR(cfg.GetDouble("ingest.group_commit_ms", 0, 1000, &ms));
    writer->group_commit_window = std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000));
    v = static_cast<std::int64_t>(writer->group_commit_reports);
    DP_RETURN_IF_ERROR(cfg.GetInt("ingest.group_commit_reports", 1, 1'000'000, &v));
    writer->group_commit_reports = static_cast<std::size_t>(v);

    DP_RETURN_IF_ERROR(cfg.GetString("log.level", log_level));
    DP_RETURN_IF_ERROR(cfg.GetString("log.file", log_file));
    DP_RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  }
  if (!flags.db.empty()) store->path = flags.db;
  if (!flags.listen.empty()) listen = flags.listen;
  if (flags.log_level != "info") *log_level = flags.log_level;
  if (!flags.log_file.empty()) *log_file = flags.log_file;
  if (store->path.empty()) return dp::InvalidArgument("--db (or store.path) is required");
  DP_ASSIGN_OR_RETURN(auto hp, dp::ParseHostPort(listen, "--listen"));
  ingest->host = hp.host;
  ingest->port = hp.port;

  // TLS unless told otherwise; plain TCP only on loopback or when asked for.
  if (!flags.tls_cert.empty()) tls.cert_file = flags.tls_cert;
  if (!flags.tls_key.empty()) tls.key_file = flags.tls_key;
  plaintext = plaintext || flags.plaintext;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return dp::InvalidArgument("--tls-cert and --tls-key go together");
  }
  if (!tls.cert_file.empty()) {
    if (plaintext) return dp::InvalidArgument("--plaintext contradicts --tls-cert/--tls-key");
    DP_ASSIGN_OR_RETURN(ingest->tls, dp::MakeServerTlsContext(tls));
  } else if (!plaintext && !dp::IsLoopbackHost(ingest->host)) {
    return dp::InvalidArgument(
        "--listen " + listen + " is not a loopback address: agents' credentials would cross the "
        "network in clear. Give --tls-cert and --tls-key, or --plaintext to allow that "
        "explicitly");
  }
  return dp::Status::Ok();
}

int Serve(const ServeFlags& flags) {
  dc::StoreOptions store_opts;
  dc::IngestOptions ingest_opts;
  dc::WriterOptions writer_opts;
  std::string level = "info";
  std::string log_file;
  if (auto s = LoadServeConfig(flags, &store_opts, &ingest_opts, &writer_opts, &level, &log_file);
      !s.ok()) {
    std::cerr << "deskpulse-collector: " << s.message() << "\n";
    return dp::kExitUsage;
  }
  if (auto s = dp::SetUpLogging("collector", level, log_file); !s.ok()) {
    std::cerr << "deskpulse-collector: " << s.message() << "\n";
    return dp::kExitUsage;
  }
  if (!flags.http.empty()) {
    spdlog::error("--http: the HTTP API and dashboard are not in this version yet");
    return dp::kExitUsage;
  }
  auto store = dc::Store::Open(store_opts);
  if (!store.ok()) {
    spdlog::error("store: {}", store.status().message());
    return dp::ExitCodeFor(store.status());
  }
  dc::Writer writer(std::move(store).value(), writer_opts);
  writer.Start();

  asio::io_context io(1);
  dc::IngestServer server(io, ingest_opts, writer);
  if (auto s = server.Listen(); !s.ok()) {
    spdlog::error("{}", s.message());
    writer.Stop();
    return dp::kExitNetwork;
  }
  server.Start();
  if (!flags.port_file.empty()) {
    std::ofstream(flags.port_file) << server.port() << "\n";
  }
  spdlog::info("listening on {}:{} ({}), store {}", ingest_opts.host, server.port(),
               ingest_opts.tls ? "TLS" : "plain TCP", store_opts.path);

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: draining {} connections", sig, server.stats().connections_open);
    server.Drain([&io] { io.stop(); });
  });
  io.run();
  writer.Stop();
  const auto ws = writer.stats();
  const auto& is = server.stats();
  spdlog::info("stopped: {} reports stored in {} commits ({} duplicates skipped), {} connections, "
               "{} protocol errors, {} refused credentials, {} timeouts, {} failed TLS "
               "handshakes",
               ws.reports_stored, ws.commits, ws.duplicates, is.connections_accepted,
               is.protocol_errors, is.auth_failures, is.timeouts, is.tls_failures);
  if (is.ack_us.TotalWeight() > 0) {
    spdlog::info("ack latency at the collector (batch received → ack sent): p50 {:.1f} ms "
                 "p99 {:.1f} ms max {:.1f} ms",
                 is.ack_us.Quantile(0.5) / 1000, is.ack_us.Quantile(0.99) / 1000,
                 is.ack_us.Quantile(1) / 1000);
  }
  if (ws.commits > 0) {
    spdlog::info("writer: commit p50 {:.1f} ms p99 {:.1f} ms max {:.1f} ms; {:.0f} reports per "
                 "group (p50); rollup flush p50 {:.1f} ms max {:.1f} ms",
                 ws.commit_us.Quantile(0.5) / 1000, ws.commit_us.Quantile(0.99) / 1000,
                 ws.commit_us.Quantile(1) / 1000, ws.group_reports.Quantile(0.5),
                 ws.flush_us.Quantile(0.5) / 1000, ws.flush_us.Quantile(1) / 1000);
  }
  spdlog::default_logger()->flush();
  return ws.commit_failures > 0 ? dp::kExitStore : dp::kExitOk;
}

int TokenCreate(const std::string& db, const std::string& customer) {
  (void)dp::SetUpLogging("collector", "warn");
  auto store = dc::Store::Open({.path = db});
  if (!store.ok()) return Fail(store.status());
  auto token = (*store)->CreateToken(customer, NowMs());
  if (!token.ok()) return Fail(token.status());
  std::cout << *token << "\n";
  return dp::kExitOk;
}

int Scores(const std::string& db, bool json, int window_days) {
  (void)dp::SetUpLogging("collector", "warn");
  auto store = dc::Store::Open({.path = db, .read_only = true});
  if (!store.ok()) return Fail(store.status());
  dp::scoring::Policy policy;
  policy.window_days = window_days;
  const std::int64_t now = NowMs();
  auto scores = dc::ScoreAllCustomers(**store, policy, now);
  if (!scores.ok()) return Fail(scores.status());
  if (json) {
    const std::int64_t to = dc::FloorTo(now, dc::kDayMs) + dc::kDayMs;
    std::cout << dc::ScoresToJson(*scores, policy, to - window_days * dc::kDayMs, to).dump(2)
              << "\n";
  } else {
    std::cout << dc::FormatScoreTable(*scores);
  }
  return dp::kExitOk;
}

constexpr const char* kDefaultCatalog = "/usr/share/deskpulse/catalog.sqlite";

int Peripherals(const std::string& db, const std::string& customer, std::string catalog_path,
                bool json, int window_days) {
  (void)dp::SetUpLogging("collector", "warn");
  const bool explicit_catalog = !catalog_path.empty();
  if (!explicit_catalog) catalog_path = kDefaultCatalog;
  std::optional<dp::catalog::Reader> catalog;
  if (explicit_catalog || std::filesystem::exists(catalog_path)) {
    auto opened = dp::catalog::Reader::Open(catalog_path, dp::LinkedSqliteApi());
    if (!opened.ok()) return Fail(opened.status());
    catalog.emplace(std::move(*opened));
  } else {
    spdlog::warn("no catalog at {}: devices without an endpoint's verdict stay unclassified "
                 "(build one with: deskpulse-catalog build --out {})",
                 catalog_path, catalog_path);
  }
  auto store = dc::Store::Open({.path = db, .read_only = true});
  if (!store.ok()) return Fail(store.status());
  dp::scoring::Policy policy;
  policy.window_days = window_days;
  auto report = dc::AnalysePeripherals(**store, customer, policy, NowMs(),
                                       catalog ? &*catalog : nullptr);
  if (!report.ok()) return Fail(report.status());
  if (json) {
    std::cout << dc::PeripheralsToJson(*report).dump(2, ' ', false,
                                                     nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << dc::FormatPeripherals(*report);
  }
  return dp::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"deskpulse-collector: receives DeskPulse agent reports, stores them and scores "
               "each customer's technical performance.",
               "deskpulse-collector"};
  app.set_version_flag("--version", std::string("deskpulse-collector ") + DESKPULSE_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 internal error, 2 bad usage or config, 3 store error, 4 network "
      "error, 5 not found, 6 credential refused.");

  ServeFlags serve;
  auto* s = app.add_subcommand("serve", "Receive reports from agents until SIGTERM");
  s->add_option("--db", serve.db, "SQLite database file (created if missing)");
  s->add_option("--listen", serve.listen, "HOST:PORT for agents (default 127.0.0.1:7741)");
  s->add_option("--http", serve.http, "HOST:PORT for the HTTP API (not in this version)");
  s->add_option("--config", serve.config, "TOML config file; flags override it")
      ->check(CLI::ExistingFile);
  s->add_option("--port-file", serve.port_file, "write the bound port here (for --listen :0)");
  s->add_option("--tls-cert", serve.tls_cert, "PEM certificate chain: agents connect over TLS");
  s->add_option("--tls-key", serve.tls_key, "PEM private key of --tls-cert");
  s->add_flag("--plaintext", serve.plaintext,
              "accept plain TCP on a non-loopback address (loopback is always allowed)");
  s->add_option("--log-level", serve.log_level, "trace, debug, info, warn, error");
  s->add_option("--log-file", serve.log_file, "also write the log to this file");

  auto* token = app.add_subcommand("token", "Manage enrollment tokens");
  token->require_subcommand(1);
  std::string token_db;
  std::string customer;
  auto* create = token->add_subcommand("create", "Create a token for a customer; prints it");
  create->add_option("--db", token_db, "SQLite database file")->required();
  create->add_option("--customer", customer, "customer name (created if new)")->required();

  std::string scores_db;
  bool json = false;
  int window_days = 30;
  auto* sc = app.add_subcommand("scores", "Print each customer's technical performance score");
  sc->add_option("--db", scores_db, "SQLite database file")->required();
  sc->add_flag("--json", json, "JSON instead of a table");
  sc->add_option("--window-days", window_days, "days scored, ending today (default 30)")
      ->check(CLI::Range(1, 400));

  std::string periph_db, periph_customer, periph_catalog;
  bool periph_json = false;
  int periph_days = 30;
  auto* pe = app.add_subcommand(
      "peripherals", "A customer's peripheral compatibility: failing device models, ranked");
  pe->add_option("--db", periph_db, "SQLite database file")->required();
  pe->add_option("--customer", periph_customer, "customer name")->required();
  pe->add_option("--catalog", periph_catalog,
                 std::string("catalog for devices that arrive without a verdict (default ") +
                     kDefaultCatalog + ")");
  pe->add_flag("--json", periph_json, "JSON instead of a table");
  pe->add_option("--window-days", periph_days, "days analysed, ending today (default 30)")
      ->check(CLI::Range(1, 400));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? dp::kExitOk : dp::kExitUsage;
  }
  if (s->parsed()) return Serve(serve);
  if (create->parsed()) return TokenCreate(token_db, customer);
  if (sc->parsed()) return Scores(scores_db, json, window_days);
  if (pe->parsed()) {
    return Peripherals(periph_db, periph_customer, periph_catalog, periph_json, periph_days);
  }
  return dp::kExitUsage;
}
