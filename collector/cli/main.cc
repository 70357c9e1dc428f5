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

#include "collector/app/serve_config.h"
#include "collector/ingest/server.h"
#include "collector/ingest/writer.h"
#include "collector/reports/peripherals.h"
#include "collector/reports/scores.h"
#include "collector/store/store.h"
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

int Serve(const dc::ServeFlags& flags) {
  auto config = dc::LoadServeConfig(flags);
  if (!config.ok()) {
    std::cerr << "deskpulse-collector: " << config.status().message() << "\n";
    return dp::kExitUsage;
  }
  dc::ServeConfig& c = *config;
  if (auto s = dp::SetUpLogging("collector", c.log_level, c.log_file); !s.ok()) {
    std::cerr << "deskpulse-collector: " << s.message() << "\n";
    return dp::kExitUsage;
  }
  if (!flags.http.empty()) {
    spdlog::error("--http: the HTTP API and dashboard are not in this version yet");
    return dp::kExitUsage;
  }
  const std::string fds = dc::RaiseDescriptorLimit();
  auto store = dc::Store::Open(c.store);
  if (!store.ok()) {
    spdlog::error("store: {}", store.status().message());
    return dp::ExitCodeFor(store.status());
  }
  dc::Store* store_view = store->get();
  dc::Writer writer(std::move(store).value(), c.writer);
  writer.Start();

  asio::io_context io(1);
  dc::IngestServer server(io, c.ingest, writer);
  if (auto s = server.Listen(); !s.ok()) {
    spdlog::error("{}", s.message());
    writer.Stop();
    return dp::kExitNetwork;
  }
  server.Start();
  if (!flags.port_file.empty()) {
    std::ofstream(flags.port_file) << server.port() << "\n";
  }
  spdlog::info("listening on {}:{} ({}), store {}; {}, at most {} connections", c.ingest.host,
               server.port(), c.ingest.tls ? "TLS" : "plain TCP", c.store.path, fds,
               server.options().max_connections);

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
  spdlog::info("limits: {} connections refused at accept, {} not-yet-welcomed connections "
               "evicted, {} refusals answered late, {} peers locked out, {} reads paused for "
               "memory",
               is.connections_refused, is.pending_evicted, is.auth_delayed, is.auth_lockouts,
               is.read_pauses);
  if (is.streams_behind_agents > 0) {
    spdlog::error("{} streams were behind their agents: the store had lost {} acknowledged "
                  "reports (agents resent what they still held)",
                  is.streams_behind_agents, is.reports_forgotten);
  }
  if (const auto h = store_view->health(); h.damaged_rows > 0) {
    spdlog::error("{} damaged report rows were left out of the rollups", h.damaged_rows);
  }
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

int Check(const std::string& db, bool quick) {
  (void)dp::SetUpLogging("collector", "off");
  std::error_code ec;
  if (!std::filesystem::exists(db, ec)) return Fail(dp::NotFound("no store at " + db));
  auto store = dc::Store::Open({.path = db, .read_only = true});
  if (!store.ok()) {
    std::cout << db << ": cannot be opened: " << store.status().message() << "\n";
    return dp::kExitDamaged;
  }
  auto report = (*store)->Check(!quick);
  if (!report.ok()) {
    std::cout << db << ": the check failed: " << report.status().message() << "\n";
    return dp::kExitDamaged;
  }
  if (report->ok()) {
    std::cout << db << ": ok (" << (quick ? "quick check" : "full check") << "; "
              << report->rows_checked << " report rows checked)\n";
    return dp::kExitOk;
  }
  std::cout << db << ": DAMAGED\n";
  for (const auto& p : report->problems) std::cout << "  " << p << "\n";
  if (report->more_problems > 0) std::cout << "  ... and " << report->more_problems << " more\n";
  if (report->full) {
    std::cout << report->damaged_rows << " of " << report->rows_checked
              << " report rows are damaged\n";
  }
  std::cout << "Restore the store from a backup. To keep collecting into it meanwhile, start "
               "serve with --allow-damaged: damaged rows are left out of scores.\n";
  return dp::kExitDamaged;
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

static int Main(int argc, char** argv) {
  CLI::App app{"deskpulse-collector: receives DeskPulse agent reports, stores them and scores "
               "each customer's technical performance.",
               "deskpulse-collector"};
  app.set_version_flag("--version", std::string("deskpulse-collector ") + DESKPULSE_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 internal error, 2 bad usage or config, 3 store error, 4 network "
      "error, 5 not found, 6 credential refused, 8 the store is damaged.");

  dc::ServeFlags serve;
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
  s->add_flag("--allow-damaged", serve.allow_damaged,
              "serve even if the start-up check finds the store damaged");
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

  std::string check_db;
  bool check_quick = false;
  auto* ck = app.add_subcommand(
      "check", "Check the store for damage: SQLite's integrity check, every report's checksum, "
               "rollups and watermarks; exit 0 when sound, 8 when damaged");
  ck->add_option("--db", check_db, "SQLite database file")->required();
  ck->add_flag("--quick", check_quick, "only SQLite's quick check (what serve runs at start)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? dp::kExitOk : dp::kExitUsage;
  }
  if (s->parsed()) return Serve(serve);
  if (create->parsed()) return TokenCreate(token_db, customer);
  if (ck->parsed()) return Check(check_db, check_quick);
  if (sc->parsed()) return Scores(scores_db, json, window_days);
  if (pe->parsed()) {
    return Peripherals(periph_db, periph_customer, periph_catalog, periph_json, periph_days);
  }
  return dp::kExitUsage;
}

int main(int argc, char** argv) {
  return dp::GuardMain("deskpulse-collector", [&] { return Main(argc, argv); });
}
