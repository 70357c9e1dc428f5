#include "collector/api/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include "collector/api/book.h"
#include "collector/api/routes.h"
#include "collector/api/worker.h"
#include "collector/reports/peripherals.h"
#include "collector/web/assets.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::api {
namespace {

/// Every JSON answer: no sniffing, nothing to render, nothing kept.
http::Reply JsonReply(const Response& r) {
  http::Reply out;
  out.status = r.status;
  out.content_type = "application/json";
  out.headers = {{"X-Content-Type-Options", "nosniff"},
                 {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
                 {"Cache-Control", "no-store"}};
  for (const auto& h : r.headers) out.headers.push_back(h);
  out.body = r.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return out;
}

http::Reply TextReply(std::string body, const char* content_type) {
  http::Reply out;
  out.content_type = content_type;
  out.headers = {{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}};
  out.body = std::move(body);
  return out;
}

/// The dashboard's pages may load only its own scripts, styles and images and
/// talk only to this server: no inline script or style, no other origin, no
/// framing, no form posts.
constexpr const char* kDashboardCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const web::Asset* FindAsset(std::string_view name) {
  for (const web::Asset& a : web::kAssets) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

http::Reply AssetReply(const web::Asset& a) {
  http::Reply out;
  out.content_type = std::string(a.content_type);
  out.headers = {{"Content-Security-Policy", kDashboardCsp},
                 {"X-Content-Type-Options", "nosniff"},
                 {"X-Frame-Options", "DENY"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cross-Origin-Opener-Policy", "same-origin"},
                 {"Cache-Control", "no-cache"}};
  out.body = std::string(a.body);
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// The media type of a Content-Type header: lower case, without parameters.
std::string MediaType(std::string_view header) {
  const std::size_t semi = header.find(';');
  std::string_view t = header.substr(0, semi);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  return Lower(t);
}

std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> out;
  std::string_view rest = path.substr(1);
  for (;;) {
    const auto slash = rest.find('/');
    out.emplace_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    rest.remove_prefix(slash + 1);
  }
}

/// What a path leads to besides the API's own routes.
enum class Kind { kApi, kMetrics, kPage, kAsset };

/// One entry of the server's table: a route's method and path pattern
/// (":name" segments match any one segment).
struct Entry {
  std::string_view method;
  std::vector<std::string> pattern;
  Kind kind = Kind::kApi;
  const Route* route = nullptr;

  /// The path parameters when `segments` match the pattern.
  std::optional<std::map<std::string, std::string>> Match(
      const std::vector<std::string>& segments) const {
    if (segments.size() != pattern.size()) return std::nullopt;
    std::map<std::string, std::string> params;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
      if (!pattern[i].empty() && pattern[i].front() == ':') {
        if (segments[i].empty()) return std::nullopt;
        params[pattern[i].substr(1)] = segments[i];
      } else if (pattern[i] != segments[i]) {
        return std::nullopt;
      }
    }
    return params;
  }
};

std::vector<Entry> MakeTable() {
  std::vector<Entry> t;
  for (const Route& r : Routes()) t.push_back({r.method, Split(r.path), Kind::kApi, &r});
  t.push_back({"GET", Split("/metrics"), Kind::kMetrics});
  t.push_back({"GET", Split("/"), Kind::kPage});
  t.push_back({"GET", Split("/assets/:name"), Kind::kAsset});
  return t;
}

}  // namespace

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void LowerThreadPriority(int nice, const char* what) {
  // Linux: a thread's nice value is its own (setpriority on its tid).
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    spdlog::warn("{}: cannot lower the thread's priority to nice {}: {}", what, nice,
                 std::strerror(errno));
  }
}

struct ApiServer::Impl final : http::Handler {
  ApiOptions options;
  StoreOptions store_options;
  HealthOptions health;
  std::unique_ptr<Store> store;
  std::unique_ptr<HealthBook> book;
  std::optional<catalog::Reader> catalog;
  std::unique_ptr<Context> ctx;
  // Outlives the HTTP server and its io_context: requests hold its tickets.
  std::unique_ptr<Worker> worker;
  FailedAuthLimiter limiter{options.failed_auth};
  // Failed calls and refused tokens, summarised (the API thread's; the
  // worker's import failures have their own).
  WarningSummary faults;
  std::mutex worker_faults_mu;
  WarningSummary worker_faults;
  const std::vector<Entry> table = MakeTable();
  asio::io_context io{1};
  std::unique_ptr<http::Server> server;
  std::thread thread;
  std::atomic<std::uint16_t> port{0};
  mutable std::mutex stats_mu;
  http::ServerStats final_stats;
  bool stopped = false;

  Impl(ApiOptions o, StoreOptions s, HealthOptions h)
      : options(std::move(o)), store_options(std::move(s)), health(h) {}

  /// A failure of the collector's own, in full the first time a route has
  /// one in a while, then summarised (a store that is down fails every call).
  void LogFault(WarningSummary& summary, const std::string& where, const Response& r) {
    const auto now = WarningSummary::Clock::now();
    if (summary.Note("failed API calls", where, now)) {
      spdlog::error("api: {} answered {}: {}", where, r.status, EscapeForLog(r.fault));
    }
    for (const auto& line : summary.Due(now)) spdlog::error("api: {}", line.Text());
  }

  http::Reply ErrorReply(int status, std::string message) override {
    return JsonReply(Error(status, std::move(message)));
  }

  /// The caller's token, or the answer that refuses it: 429 for a peer that
  /// failed too often, 401 without a valid token, a store fault.
  std::variant<ApiToken, Response> Authenticate(const http::Head& head,
                                                const asio::ip::address& address,
                                                const std::string& where, std::int64_t now) {
    const std::string peer = address.to_string();
    if (const std::int64_t wait = limiter.RefusedForMs(peer, now); wait > 0) {
      Response r = Error(429, "too many failed logins from this address; retry later");
      r.headers.emplace_back("Retry-After", std::to_string((wait + 999) / 1000));
      return r;
    }
    const std::string* auth = head.Find("authorization");
    if (auth == nullptr) {
      Response r =
          Error(401, "an API token is required: Authorization: Bearer dpa_...", "Authorization");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    std::string_view value = *auth;
    std::optional<Result<ApiToken>> token;
    if (value.size() > 7 && Lower(value.substr(0, 7)) == "bearer " && value.size() < 200) {
      token = store->AuthenticateApiToken(std::string(value.substr(7)));
    }
    if (!token || !token->ok()) {
      if (token && token->status().code() != Code::kUnauthenticated) {
        Response r = ErrorFrom(token->status());
        if (r.fault.empty()) r.fault = token->status().ToString();
        LogFault(faults, where, r);
        return r;
      }
      const auto clock = WarningSummary::Clock::now();
      if (faults.Note("refused API tokens", peer, clock)) {
        spdlog::warn("api: {} from {}: unknown, revoked or malformed API token", where, peer);
      }
      if (limiter.Fail(peer, now)) {
        spdlog::warn(
            "api: {} failed logins from {} within {} s: refusing it until the window "
            "ends",
            options.failed_auth.max_failures, peer, options.failed_auth.window_ms / 1000);
      }
      Response r = Error(401, "unknown, revoked or malformed API token", "Authorization");
      r.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
      return r;
    }
    return std::move(**token);
  }

  /// GET /metrics: open on a loopback listener (the local Prometheus);
  /// elsewhere a vendor token's, as it names every customer.
  http::Reply Metrics() {
    metrics::Families families;
    if (options.ingest_metrics) families = options.ingest_metrics();
    if (auto b = book->current()) metrics::AddCustomers(b->customers, b->assessed_ms, &families);
    metrics::AddHttp(server->stats(), &families);
    metrics::AddBuildInfo(&families);
    return TextReply(metrics::Render(families), metrics::kContentType);
  }

  http::Decision OnHead(const http::Head& head, http::Target target,
                        const asio::ip::address& peer) override {
    // HEAD is GET without the body (the server leaves it out).
    const std::string_view method =
        head.method == "HEAD" ? std::string_view("GET") : std::string_view(head.method);
    const Entry* entry = nullptr;
    std::map<std::string, std::string> params;
    std::vector<std::string_view> allowed;
    for (const Entry& e : table) {
      auto m = e.Match(target.segments);
      if (!m) continue;
      if (e.method == method) {
        entry = &e;
        params = std::move(*m);
        break;
      }
      allowed.push_back(e.method);
    }
    if (entry == nullptr) {
      if (allowed.empty()) {
        return JsonReply(Error(404, fmt::format("no route {} {}", head.method.substr(0, 16),
                                                target.path.substr(0, 200))));
      }
      std::string allow;
      for (std::string_view m : allowed) {
        allow += fmt::format("{}{}", allow.empty() ? "" : ", ", m);
        if (m == "GET") allow += ", HEAD";
      }
      Response r = Error(405, fmt::format("{} is not allowed on {}: {}", head.method.substr(0, 16),
                                          target.path.substr(0, 200), allow));
      r.headers.emplace_back("Allow", allow);
      return JsonReply(r);
    }
    switch (entry->kind) {
      case Kind::kPage:
        return NoBody([] { return AssetReply(*FindAsset("index.html")); });
      case Kind::kAsset: {
        const web::Asset* a = FindAsset(params["name"]);
        if (a == nullptr || a->name == "index.html") {
          return JsonReply(Error(404, "no such dashboard file", "name"));
        }
        return NoBody([a] { return AssetReply(*a); });
      }
      case Kind::kMetrics:
        if (!IsLoopbackHost(options.host)) {
          auto auth = Authenticate(head, peer, "GET /metrics", NowMs());
          if (auto* refused = std::get_if<Response>(&auth)) return JsonReply(*refused);
          if (std::get<ApiToken>(auth).role != ApiRole::kVendor) {
            return JsonReply(Error(403, "/metrics names every customer: it needs a vendor token"));
          }
        }
        return NoBody([this] { return Metrics(); });
      case Kind::kApi:
        break;
    }
    return OnApiHead(*entry->route, head, target, std::move(params), peer);
  }

  /// A route that takes no body, answered by `make` once the head is known
  /// to bring none.
  template <typename Make>
  static http::Proceed NoBody(Make make) {
    return http::Proceed{
        .body_limit = 0,
        .then = [make](const std::string&, const http::Respond& respond) { respond(make()); }};
  }

  http::Decision OnApiHead(const Route& route, const http::Head& head, const http::Target& target,
                           std::map<std::string, std::string> params,
                           const asio::ip::address& peer) {
    const std::int64_t now = NowMs();
    const std::string where = fmt::format("{} {}", route.method, route.path);
    auto auth = Authenticate(head, peer, where, now);
    if (auto* refused = std::get_if<Response>(&auth)) return JsonReply(*refused);
    ApiToken token = std::move(std::get<ApiToken>(auth));
    const std::string* ct = head.Find("content-type");
    std::string content_type = ct != nullptr ? MediaType(*ct) : std::string();
    if (auto refused = CheckAccess(route, token, params, content_type)) {
      return JsonReply(*refused);
    }
    std::map<std::string, std::string> query;
    for (const auto& [k, v] : target.query) {
      const std::string name = k.substr(0, 64);
      if (!query.emplace(k, v).second) {
        return JsonReply(
            Error(400, fmt::format("query parameter '{}' is given twice", name), name));
      }
    }
    if (route.body == Route::Body::kNone && head.has_body()) {
      return JsonReply(Error(400, "this route takes no body", "body"));
    }
    Worker::Ticket ticket;
    if (route.body == Route::Body::kImport) {
      ticket = worker->Reserve();
      if (!ticket) {
        Response busy = Error(503, "imports are queued as far as they may be; retry shortly");
        busy.headers.emplace_back("Retry-After", "5");
        return JsonReply(busy);
      }
    }
    const std::uint64_t limit = route.body == Route::Body::kImport  ? options.max_import_bytes
                                : route.body == Route::Body::kSmall ? options.max_body_bytes
                                                                    : 0;
    auto call = [this, &route, where, token = std::move(token), params = std::move(params),
                 query = std::move(query), content_type = std::move(content_type),
                 now](Context& c, WarningSummary& summary, std::mutex* mu, std::string_view body) {
      const Request request{.token = token,
                            .params = params,
                            .query = query,
                            .content_type = content_type,
                            .body = body,
                            .now_ms = now};
      Response r;
      try {
        r = route.handler(c, request);
      } catch (const std::exception& e) {
        r = Error(500, "internal error (the collector's log has the details)");
        r.fault = e.what();
      }
      if (!r.fault.empty()) {
        std::unique_lock<std::mutex> lock;
        if (mu != nullptr) lock = std::unique_lock(*mu);
        LogFault(summary, where, r);
      }
      return JsonReply(r);
    };
    if (!ticket) {
      return http::Proceed{.body_limit = limit,
                           .then = [this, call = std::move(call)](const std::string& body,
                                                                  const http::Respond& respond) {
                             respond(call(*ctx, faults, nullptr, body));
                           }};
    }
    return http::Proceed{.body_limit = limit,
                         .then = [this, call = std::move(call), ticket = std::move(ticket)](
                                     std::string body, http::Respond respond) mutable {
                           worker->Post(std::move(ticket),
                                        [this, call = std::move(call), body = std::move(body),
                                         respond = std::move(respond)](Context& c) {
                                          respond(call(c, worker_faults, &worker_faults_mu, body));
                                        });
                         }};
  }

  Status Listen() {
    http::ServerOptions o = options.http;
    o.host = options.host;
    o.port = options.port;
    o.tls = options.tls;
    o.limits.max_chunks = std::max<std::uint64_t>(o.limits.max_chunks, 1);
    server = std::make_unique<http::Server>(io, std::move(o), *this);
    DP_RETURN_IF_ERROR(server->Listen());
    port.store(server->port());
    server->Start();
    thread = std::thread([this] {
      LowerThreadPriority(kApiNice, "the API");
      io.run();
    });
    return Status::Ok();
  }
};

ApiServer::ApiServer(ApiOptions options, StoreOptions store, HealthOptions health)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(store), health)) {}

ApiServer::~ApiServer() { Stop(); }

std::uint16_t ApiServer::port() const { return impl_->port.load(); }

Status ApiServer::Start() {
  Impl& m = *impl_;
  DP_ASSIGN_OR_RETURN(m.store, OpenSideConnection(m.store_options));
  DP_ASSIGN_OR_RETURN(auto book_store, OpenSideConnection(m.store_options));
  DP_ASSIGN_OR_RETURN(auto worker_store, OpenSideConnection(m.store_options));
  HealthOptions book_options = m.health;
  book_options.record = true;
  // The list shows each customer's top driver: its source is all it needs.
  book_options.loss_sources = HealthOptions::Sources::kWhenTopIsTechnical;
  m.book =
      std::make_unique<HealthBook>(std::move(book_store), book_options, m.options.refresh_interval,
                                   m.options.record_interval, m.options.on_recorded);
  DP_ASSIGN_OR_RETURN(m.catalog, OpenCollectorCatalog(m.options.catalog));
  catalog::Reader* reader = m.catalog ? &*m.catalog : nullptr;
  m.ctx = std::make_unique<Context>(Context{*m.store, *m.book, m.health, reader, nullptr});
  Store& ws = *worker_store;
  m.worker = std::make_unique<Worker>(std::move(worker_store),
                                      Context{ws, *m.book, m.health, reader, nullptr},
                                      m.options.max_waiting_imports);
  if (Status s = m.Listen(); !s.ok()) {
    m.server.reset();
    return Status(Code::kUnavailable,
                  fmt::format("--http {}:{}: {}", m.options.host, m.options.port, s.message()));
  }
  m.worker->Start();
  m.book->Start();
  return Status::Ok();
}

http::ServerStats ApiServer::stats() const {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.stats_mu);
    if (m.stopped || !m.server) return m.final_stats;
  }
  std::promise<http::ServerStats> got;
  auto result = got.get_future();
  asio::post(m.io, [&m, &got] { got.set_value(m.server->stats()); });
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) return {};
  return result.get();
}

void ApiServer::Stop() {
  Impl& m = *impl_;
  // The worker first: its last job's answer goes to a server still running.
  if (m.worker) m.worker->Stop();
  if (m.thread.joinable()) {
    asio::post(m.io, [&m] {
      m.server->Close();
      {
        std::lock_guard lock(m.stats_mu);
        m.final_stats = m.server->stats();
        m.stopped = true;
      }
      m.io.stop();
    });
    m.thread.join();
  }
  if (m.book) m.book->Stop();
}

}  // namespace deskpulse::collector::api
