#pragma once

// HTTP/1.1 messages as the collector's HTTP server reads and writes them
// (RFC 9110, 9112): a request parser that stops after the head, so a request
// is authenticated and routed before one byte of its body is read, and whose
// every limit is checked as the bytes arrive; request targets decoded as
// browsers send them; replies serialised.
//
// The parsing itself is Boost.Beast's basic_parser (sans I/O): a parser that
// has been fuzzed by many hands, fed from the collector's own Asio
// connections (server.h).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::collector::http {

/// What one request's head may hold.
struct Limits {
  std::size_t max_target_bytes = 8192;
  std::size_t max_field_name_bytes = 256;
  std::size_t max_field_value_bytes = 8192;
  std::size_t max_fields = 100;
  /// The whole head: request line, fields and their line ends.
  std::size_t max_head_bytes = 32 << 10;
  /// Chunks in one chunked body (each costs a parse, however small).
  std::uint64_t max_chunks = 65536;
};

/// A request's head. Field names are kept in lower case.
struct Head {
  std::string method;  // as sent: methods are case-sensitive
  std::string target;  // as sent
  int version = 11;    // 10 or 11 (other versions are refused at parse time)
  std::vector<std::pair<std::string, std::string>> fields;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;

  /// The value of the first field named `lower_name`, if any.
  const std::string* Find(std::string_view lower_name) const;
  bool has_body() const { return chunked || content_length.value_or(0) > 0; }
};

/// Why a request cannot be served, with the status that says so.
struct Refusal {
  int status = 400;
  std::string message;
};

/// One request's parser: feed it bytes; it stops once the head is complete
/// (Put() consumes nothing more until Continue()), and then reads the body
/// into memory up to the limit set by Continue().
class RequestParser {
 public:
  explicit RequestParser(const Limits& limits);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  /// Parses what it can of `data`, returning how many bytes it consumed (the
  /// caller drops them and keeps the rest for the next call).
  std::size_t Put(std::string_view data);
  /// Past the head; head() is complete.
  bool head_done() const;
  /// The whole message, body included, has been read.
  bool done() const;
  /// The request is refused; status and message say why. Nothing more can be
  /// parsed after a refusal.
  const std::optional<Refusal>& refusal() const { return refusal_; }
  /// Whether Put() has seen any byte of this request.
  bool started() const { return started_; }

  const Head& head() const { return head_; }
  /// Read on past the head, taking a body of at most `body_limit` bytes.
  void Continue(std::uint64_t body_limit);
  bool continued() const { return continued_; }
  /// The body read so far (all of it once done()).
  std::string& body() { return body_; }

 private:
  class Impl;
  friend class Impl;
  void Refuse(int status, std::string message);

  Limits limits_;
  std::unique_ptr<Impl> impl_;
  Head head_;
  std::string body_;
  std::optional<Refusal> refusal_;
  std::uint64_t chunks_ = 0;
  bool started_ = false;
  bool continued_ = false;
};

/// A request target, decoded: the path's segments (percent-decoding applied
/// to each after splitting on '/', so an encoded slash stays in its segment;
/// a '+' is a plus) and the query's name=value pairs in order (as browsers
/// send them: '+' is a space, a name without '=' has an empty value).
/// Everything decoded must be UTF-8 without NUL.
struct Target {
  std::string path;  // as sent, without the query
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;
};
/// The target of a request in origin form ("/a/b?c=d") or absolute form
/// ("http://host/a/b?c=d"). Errors name the part at fault.
Result<Target> ParseTarget(std::string_view raw);

/// What the server answers.
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Close the connection once it is sent.
  bool close = false;
};

/// The reason phrase of a status ("Not Found").
const char* ReasonPhrase(int status);

/// `reply` as bytes on the wire. `head_only`: the answer to a HEAD request,
/// the same fields without the body. `date` is the Date field's value.
std::string Serialize(const Reply& reply, bool head_only, std::string_view date);

/// An HTTP date (RFC 9110 5.6.7) for `unix_seconds`: "Sun, 06 Nov 1994 08:49:37 GMT".
std::string HttpDate(std::int64_t unix_seconds);

}  // namespace deskpulse::collector::http
