#pragma once

// The JSON API's routes (docs/api.md): one table that the HTTP server
// registers, the index route lists and the tests walk, so a route cannot
// exist without its access rule.

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "collector/reports/health.h"
#include "collector/store/store.h"
#include "deskpulse/common/catalog.h"

namespace deskpulse::collector::api {

class HealthBook;

/// What a handler answers: an HTTP status and a JSON body. (clang-tidy 14
/// takes the implicit move constructor for one that throws: nlohmann::json's
/// is noexcept, only its debug assertions are not.)
struct Response {  // NOLINT(bugprone-exception-escape)
  int status = 200;
  nlohmann::json body;
  /// Extra response headers (Retry-After, WWW-Authenticate).
  std::vector<std::pair<std::string, std::string>> headers;
  /// The collector's fault (a store failure, a bug): logged, with the cause.
  std::string fault;
};

/// {"error": {"status": 400, "message": "...", "field": "..."}}; `field`
/// names the parameter, header or body field at fault ("" when none is).
Response Error(int status, std::string message, std::string field = {});

/// An HTTP status for a store or validation status, and its JSON error.
Response ErrorFrom(const Status& s, std::string field = {});

/// What handlers work with. One per API thread: the store is not thread-safe.
struct Context {
  Store& store;
  HealthBook& book;
  const HealthOptions& health;
  /// Classifies devices without an endpoint's verdict; null without a catalog.
  catalog::Reader* catalog = nullptr;
  /// Runs a long store write (an import's commit) and returns when it is
  /// done: on the imports' worker, on a thread at the collector's own
  /// priority, so the store's write lock is never held by a thread the
  /// scheduler keeps waiting (worker.h). Unset: on the calling thread.
  std::function<void(const std::function<void()>&)> write;
};

/// One authenticated call.
struct Request {
  const ApiToken& token;
  std::map<std::string, std::string> params;  // path parameters, decoded
  std::map<std::string, std::string> query;   // query parameters, decoded
  std::string content_type;                   // media type, lower case, without parameters
  std::string_view body;
  std::int64_t now_ms = 0;
};

/// Who may call a route.
enum class Scope {
  kAnyToken,  // any token; what it answers is cut to the token's customer
  kCustomer,  // /customers/:customer/...: a customer-admin only its own customer
  kVendor,    // vendor tokens only
};
const char* ScopeName(Scope s);

/// A boot-time histogram (ms) as the telemetry route's bins: a round width
/// giving about 30 bins up to the 99th percentile, then one open bin; never
/// more than 32 bins, whatever the figures.
nlohmann::json BootHistogram(const SparseHistogram& boot_ms);

struct Route {
  std::string_view method;  // GET, PUT, POST
  std::string_view path;    // an express pattern: /api/v1/customers/:customer
  Scope scope;
  std::string_view summary;
  /// Media types a body may have (state-changing routes); none: no body.
  std::vector<std::string_view> content_types;
  Response (*handler)(Context&, const Request&);
  /// What body it takes: none, a small JSON document (ApiOptions::
  /// max_body_bytes), or a vendor import (max_import_bytes), which is also
  /// parsed and committed off the API thread (worker.h).
  enum class Body { kNone, kSmall, kImport };
  Body body = Body::kNone;
  bool writes() const { return method != "GET"; }
};

/// Every route, in the order docs/api.md lists them.
const std::vector<Route>& Routes();

/// Whether `token` may call `route` with `params`, before the handler runs:
/// another customer's id is 404 (as if it did not exist), a vendor-only or
/// state-changing route is 403 for a customer-admin, a body of a type the
/// route does not take is 415. Nothing when the call may go on.
std::optional<Response> CheckAccess(const Route& route, const ApiToken& token,
                                    const std::map<std::string, std::string>& params,
                                    const std::string& content_type);

}  // namespace deskpulse::collector::api
