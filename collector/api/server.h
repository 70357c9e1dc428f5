#pragma once

// The JSON API over HTTP (docs/api.md) on the collector's HTTP server
// (collector/http): its own thread and io_context, its own store connection,
// the health book's thread and a worker for imports beside it, so API calls
// never run on the ingest threads and a long import holds up no other call.
// It also serves the dashboard and /metrics (docs/metrics.md).

#include <asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "collector/api/auth_limit.h"
#include "collector/api/book.h"
#include "collector/http/server.h"
#include "collector/metrics/exposition.h"
#include "collector/reports/health.h"
#include "collector/store/store.h"
#include "deskpulse/common/status.h"

namespace deskpulse::collector::api {

struct ApiOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: a free port (see ApiServer::port())
  /// Set: HTTPS with the same context (certificate, key, TLS 1.2+) as ingest.
  std::shared_ptr<asio::ssl::context> tls;
  /// A body over its route's limit is refused once its head is read, unread:
  /// a vendor import's, and any other route's (a small JSON document).
  std::size_t max_import_bytes = 16u << 20;
  std::size_t max_body_bytes = 64u << 10;
  /// Imports waiting behind the one being committed; past it, 503.
  std::size_t max_waiting_imports = 2;
  /// Connections, deadlines and limits (max_connections 256, 32 per peer).
  http::ServerOptions http;
  /// How often the health book assesses every customer (and records the
  /// day's snapshots); imports and overrides make it assess again at once.
  std::chrono::milliseconds refresh_interval{60'000};
  /// How often every customer's snapshot of the day is recorded again (a
  /// change of risk is recorded at once).
  std::chrono::milliseconds record_interval{3'600'000};
  FailedAuthLimiter::Options failed_auth;
  /// The peripheral catalog for devices that arrive without an endpoint's
  /// verdict (OpenCollectorCatalog): "" looks at catalog::kDefaultPath.
  std::string catalog;
  /// The ingest side's families for /metrics (serve's; called on the API
  /// thread). Unset: /metrics has the health book's and the build's only.
  std::function<metrics::Families()> ingest_metrics;
  /// After each of the health book's rounds is recorded, on its thread with
  /// its store (serve queues the webhooks' risk events there).
  HealthBook::Recorded on_recorded;
};

/// The API's and the health book's threads run at a lower priority than
/// ingest's: when the cores are busy, agents' acknowledgements come first.
inline constexpr int kApiNice = 5;
inline constexpr int kBookNice = 10;
/// Wall-clock milliseconds since the epoch.
std::int64_t NowMs();
/// Sets the calling thread's nice value (logs when it cannot).
void LowerThreadPriority(int nice, const char* what);

class ApiServer {
 public:
  ApiServer(ApiOptions options, StoreOptions store, HealthOptions health);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  /// Opens the API's and the book's store connections, binds, and starts
  /// the threads.
  Status Start();
  std::uint16_t port() const;
  /// Closes the listener and the connections, and joins the threads.
  void Stop();
  /// The HTTP server's counters, as of now (any thread).
  http::ServerStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace deskpulse::collector::api
