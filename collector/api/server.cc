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
#include <restinio/all.hpp>
#include <restinio/tls.hpp>
#include <thread>
#include <variant>

#include "collector/api/book.h"
#include "collector/api/routes.h"
#include "collector/reports/peripherals.h"
#include "collector/web/assets.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::api {
namespace {

/// RESTinio's own messages (one per connection and parse failure) at debug
/// level only: a peer's bad bytes must not fill the log.
struct QuietLogger {
  template <typename Builder>
  void trace(Builder&&) const noexcept {}
  template <typename Builder>
  void info(Builder&&) const noexcept {}
  template <typename Builder>
  void warn(Builder&& b) const noexcept {
    Log(std::forward<Builder>(b));
  }
  template <typename Builder>
  void error(Builder&& b) const noexcept {
    Log(std::forward<Builder>(b));
  }
  template <typename Builder>
  static void Log(Builder&& b) noexcept {
    try {
      if (spdlog::should_log(spdlog::level::debug)) spdlog::debug("http: {}", b());
    } catch (...) {
    }
  }
};

using Router = restinio::router::express_router_t<>;

struct PlainTraits : restinio::traits_t<restinio::asio_timer_manager_t, QuietLogger, Router,
                                        restinio::noop_strand_t> {
  static constexpr bool use_connection_count_limiter = true;
};
struct TlsTraits
    : restinio::single_thread_tls_traits_t<restinio::asio_timer_manager_t, QuietLogger, Router> {
  static constexpr bool use_connection_count_limiter = true;
};

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return status >= 500 ? "Internal Server Error" : "Error";
  }
}

restinio::request_handling_status_t Send(const restinio::request_handle_t& req, const Response& r) {
  auto resp = req->create_response(restinio::http_status_line_t(
      restinio::http_status_code_t(static_cast<std::uint16_t>(r.status)), Reason(r.status)));
  resp.append_header(restinio::http_field::content_type, "application/json")
      .append_header("X-Content-Type-Options", "nosniff")
      .append_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
      .append_header(restinio::http_field::cache_control, "no-store");
  for (const auto& [k, v] : r.headers) resp.append_header(k, v);
  resp.set_body(r.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  return resp.done();
}

restinio::request_handling_status_t SendText(const restinio::request_handle_t& req,
                                             std::string body, const char* content_type) {
  return req->create_response()
      .append_header(restinio::http_field::content_type, content_type)
      .append_header("X-Content-Type-Options", "nosniff")
      .append_header(restinio::http_field::cache_control, "no-store")
      .set_body(std::move(body))
      .done();
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

restinio::request_handling_status_t SendAsset(const restinio::request_handle_t& req,
                                              const web::Asset& a) {
  return req->create_response()
      .append_header(restinio::http_field::content_type, std::string(a.content_type))
      .append_header("Content-Security-Policy", kDashboardCsp)
      .append_header("X-Content-Type-Options", "nosniff")
      .append_header("X-Frame-Options", "DENY")
      .append_header("Referrer-Policy", "no-referrer")
      .append_header("Cross-Origin-Opener-Policy", "same-origin")
      .append_header(restinio::http_field::cache_control, "no-cache")
      .set_body(std::string(a.body))
      .done();
}

/// The names of a pattern's parameters (":customer" → "customer").
std::vector<std::string> ParamNames(std::string_view path) {
  std::vector<std::string> out;
  for (std::size_t i = path.find(':'); i != std::string_view::npos; i = path.find(':', i + 1)) {
    std::size_t end = path.find('/', i);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(i + 1, end - i - 1));
  }
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

struct ApiServer::Impl {
  ApiOptions options;
  StoreOptions store_options;
  HealthOptions health;
  std::unique_ptr<Store> store;
  std::unique_ptr<HealthBook> book;
  std::optional<catalog::Reader> catalog;
  std::unique_ptr<Context> ctx;
  FailedAuthLimiter limiter{options.failed_auth};
  WarningSummary faults;
  asio::io_context io{1};
  std::thread thread;
  std::atomic<std::uint16_t> port{0};
  std::function<void()> close;  // closes the server on the io thread
  std::shared_ptr<void> keep;   // the RESTinio server

  Impl(ApiOptions o, StoreOptions s, HealthOptions h)
      : options(std::move(o)), store_options(std::move(s)), health(h) {}

  /// A failure of the collector's own, in full the first time a route has
  /// one in a while, then summarised (a store that is down fails every call).
  void LogFault(const Route& route, const Response& r) {
    LogFault(fmt::format("{} {}", route.method, route.path), r);
  }
  void LogFault(const std::string& where, const Response& r) {
    const auto now = WarningSummary::Clock::now();
    if (faults.Note("failed API calls", where, now)) {
      spdlog::error("api: {} answered {}: {}", where, r.status, EscapeForLog(r.fault));
    }
    for (const auto& line : faults.Due(now)) spdlog::error("api: {}", line.Text());
  }

  restinio::request_handling_status_t Handle(const Route& route,
                                             const restinio::request_handle_t& req,
                                             const restinio::router::route_params_t& rp) {
    try {
      return Send(req, Dispatch(route, req, rp));
    } catch (const std::exception& e) {
      Response r = Error(500, "internal error (the collector's log has the details)");
      r.fault = e.what();
      LogFault(route, r);
      return Send(req, r);
    }
  }

  /// The caller's token, or the answer that refuses it: 429 for a peer that
  /// failed too often, 401 without a valid token, a store fault.
  std::variant<ApiToken, Response> Authenticate(const restinio::request_handle_t& req,
                                                const std::string& where, std::int64_t now) {
    const std::string peer = req->remote_endpoint().address().to_string();
    if (const std::int64_t wait = limiter.RefusedForMs(peer, now); wait > 0) {
      Response r = Error(429, "too many failed logins from this address; retry later");
      r.headers.emplace_back("Retry-After", std::to_string((wait + 999) / 1000));
      return r;
    }
    const auto auth = req->header().opt_value_of(restinio::http_field::authorization);
    if (!auth) {
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
        LogFault(where, r);
        return r;
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
  restinio::request_handling_status_t HandleMetrics(const restinio::request_handle_t& req) {
    static const std::string kWhere = "GET /metrics";
    try {
      if (!IsLoopbackHost(options.host)) {
        auto auth = Authenticate(req, kWhere, NowMs());
        if (auto* refused = std::get_if<Response>(&auth)) return Send(req, *refused);
        if (std::get<ApiToken>(auth).role != ApiRole::kVendor) {
          return Send(req, Error(403, "/metrics names every customer: it needs a vendor token"));
        }
      }
      if (!req->body().empty()) return Send(req, Error(400, "this route takes no body", "body"));
      metrics::Families families;
      if (options.ingest_metrics) families = options.ingest_metrics();
      if (auto b = book->current()) metrics::AddCustomers(b->customers, b->assessed_ms, &families);
      metrics::AddBuildInfo(&families);
      return SendText(req, metrics::Render(families), metrics::kContentType);
    } catch (const std::exception& e) {
      Response r = Error(500, "internal error (the collector's log has the details)");
      r.fault = e.what();
      LogFault(kWhere, r);
      return Send(req, r);
    }
  }

  Response Dispatch(const Route& route, const restinio::request_handle_t& req,
                    const restinio::router::route_params_t& rp) {
    const std::int64_t now = NowMs();
    auto auth = Authenticate(req, fmt::format("{} {}", route.method, route.path), now);
    if (auto* refused = std::get_if<Response>(&auth)) return std::move(*refused);
    const ApiToken& t = std::get<ApiToken>(auth);

    std::map<std::string, std::string> params;
    for (const std::string& name : ParamNames(route.path)) {
      const auto v = rp.get_param(name);
      if (!v) continue;
      auto decoded = restinio::utils::try_unescape_percent_encoding<
          restinio::utils::restinio_default_unescape_traits>(*v);
      if (!decoded) return Error(400, "a path segment is not valid percent-encoding", name);
      params[name] = std::move(*decoded);
    }
    const auto ct = req->header().opt_value_of(restinio::http_field::content_type);
    const std::string content_type = ct ? MediaType(*ct) : std::string();
    if (auto refused = CheckAccess(route, t, params, content_type)) return *refused;
    if (!route.writes() && !req->body().empty()) {
      return Error(400, "this route takes no body", "body");
    }

    std::map<std::string, std::string> query;
    auto parsed = restinio::try_parse_query<restinio::parse_query_traits::restinio_defaults>(
        req->header().query());
    if (!parsed) return Error(400, "the query string is not valid percent-encoding", "query");
    if (parsed->tag()) return Error(400, "query parameters are name=value pairs", "query");
    for (const auto& [k, v] : *parsed) {
      if (!query.emplace(std::string(k), std::string(v)).second) {
        return Error(400, fmt::format("query parameter '{}' is given twice", k.substr(0, 64)),
                     std::string(k.substr(0, 64)));
      }
    }
    const Request call{.token = t,
                       .params = std::move(params),
                       .query = std::move(query),
                       .content_type = content_type,
                       .body = req->body(),
                       .now_ms = now};
    Response r = route.handler(*ctx, call);
    if (!r.fault.empty()) LogFault(route, r);
    return r;
  }

  template <typename Traits>
  auto Settings() {
    auto router = std::make_unique<Router>();
    for (const Route& route : Routes()) {
      const std::string method(route.method);
      const auto m = method == "GET"   ? restinio::http_method_get()
                     : method == "PUT" ? restinio::http_method_put()
                                       : restinio::http_method_post();
      router->add_handler(
          m, std::string(route.path),
          [this, &route](const restinio::request_handle_t& req,
                         restinio::router::route_params_t rp) { return Handle(route, req, rp); });
    }
    router->http_get("/metrics",
                     [this](const restinio::request_handle_t& req,
                            restinio::router::route_params_t) { return HandleMetrics(req); });
    // The dashboard: its page at /, its files under /assets/.
    router->http_get("/",
                     [](const restinio::request_handle_t& req, restinio::router::route_params_t) {
                       return SendAsset(req, *FindAsset("index.html"));
                     });
    router->http_get("/assets/:name", [](const restinio::request_handle_t& req,
                                         restinio::router::route_params_t rp) {
      const web::Asset* a = FindAsset(rp["name"]);
      if (a == nullptr || a->name == "index.html") {
        return Send(req, Error(404, "no such dashboard file", "name"));
      }
      return SendAsset(req, *a);
    });
    router->non_matched_request_handler([](const restinio::request_handle_t& req) {
      const std::string path(req->header().path());
      return Send(
          req, Error(404, fmt::format("no route {} {}", std::string(req->header().method().c_str()),
                                      path.substr(0, 200))));
    });
    auto s = restinio::server_settings_t<Traits>{};
    s.address(options.host)
        .port(options.port)
        .request_handler(std::move(router))
        .max_parallel_connections(options.max_connections)
        .read_next_http_message_timelimit(options.io_timeout)
        .write_http_response_timelimit(options.io_timeout)
        .handle_request_timeout(options.io_timeout)
        .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                      .max_url_size(8192)
                                      .max_field_name_size(256)
                                      .max_field_value_size(8192)
                                      .max_field_count(100)
                                      .max_body_size(options.max_body_bytes))
        .acceptor_post_bind_hook(
            [this](asio::ip::tcp::acceptor& a) { port.store(a.local_endpoint().port()); })
        // A response leaves in more than one write (and, over TLS, more than
        // one record): with Nagle's algorithm the second waits for the
        // client's delayed ACK, about 40 ms on a fresh connection.
        .socket_options_setter([](restinio::socket_options_t& o) {
          asio::error_code ignored;
          o.set_option(asio::ip::tcp::no_delay(true), ignored);
        });
    return s;
  }

  template <typename Traits, typename Setup>
  Status Run(Setup&& setup) {
    auto settings = Settings<Traits>();
    setup(settings);
    using Server = restinio::http_server_t<Traits>;
    auto server = std::make_shared<Server>(restinio::external_io_context(io), std::move(settings));
    std::promise<Status> opened;
    auto result = opened.get_future();
    server->open_async([&opened] { opened.set_value(Status::Ok()); },
                       [&opened](const std::exception_ptr& e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& x) {
                           opened.set_value(Status(Code::kUnavailable, x.what()));
                         } catch (...) {
                           opened.set_value(Status(Code::kUnavailable, "cannot listen"));
                         }
                       });
    // The server lives until the io thread has joined (Stop): close_async
    // finishes on that thread after the closing handler itself returns.
    keep = server;
    Server* raw = server.get();
    close = [this, raw] {
      raw->close_async([this] { io.stop(); }, [this](const std::exception_ptr&) { io.stop(); });
    };
    thread = std::thread([this] {
      LowerThreadPriority(kApiNice, "the API");
      io.run();
    });
    Status s = result.get();
    if (!s.ok()) {
      io.stop();
      thread.join();
      close = nullptr;
      keep.reset();
    }
    return s;
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
  HealthOptions book_options = m.health;
  book_options.record = true;
  // The list shows each customer's top driver: its source is all it needs.
  book_options.loss_sources = HealthOptions::Sources::kWhenTopIsTechnical;
  m.book =
      std::make_unique<HealthBook>(std::move(book_store), book_options, m.options.refresh_interval,
                                   m.options.record_interval, m.options.on_recorded);
  DP_ASSIGN_OR_RETURN(m.catalog, OpenCollectorCatalog(m.options.catalog));
  m.ctx = std::make_unique<Context>(
      Context{*m.store, *m.book, m.health, m.catalog ? &*m.catalog : nullptr});
  Status s;
  if (m.options.tls) {
    s = m.Run<TlsTraits>([&m](auto& settings) { settings.tls_context(m.options.tls); });
  } else {
    s = m.Run<PlainTraits>([](auto&) {});
  }
  if (!s.ok()) {
    return Status(Code::kUnavailable,
                  fmt::format("--http {}:{}: {}", m.options.host, m.options.port, s.message()));
  }
  m.book->Start();
  return Status::Ok();
}

void ApiServer::Stop() {
  Impl& m = *impl_;
  if (m.close) {
    asio::post(m.io, m.close);
    m.close = nullptr;
  }
  if (m.thread.joinable()) m.thread.join();
  m.keep.reset();
  if (m.book) m.book->Stop();
}

}  // namespace deskpulse::collector::api
