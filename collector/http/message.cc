#include "collector/http/message.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <ctime>
#include <limits>

namespace deskpulse::collector::http {
namespace beast = boost::beast;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool EqualsLower(std::string_view s, std::string_view lower) {
  return s.size() == lower.size() &&
         std::equal(s.begin(), s.end(), lower.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
/// points past U+10FFFF) without NUL.
bool ValidText(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decodes `s` (and '+' as a space when `plus_is_space`); false on a
/// '%' not followed by two hex digits or a result that is not text.
bool Decode(std::string_view s, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return false;
      const int hi = HexValue(s[i + 1]);
      const int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return ValidText(*out);
}

/// Whether the request line at the start of `data` ends in a version of
/// the right form (HTTP/d.d), whatever its number.
bool VersionLike(std::string_view data) {
  const std::string_view line = data.substr(0, data.find("\r\n"));
  const auto space = line.rfind(' ');
  if (space == std::string_view::npos) return false;
  const std::string_view v = line.substr(space + 1);
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" &&
         std::isdigit(static_cast<unsigned char>(v[5])) && v[6] == '.' &&
         std::isdigit(static_cast<unsigned char>(v[7]));
}

}  // namespace

const std::string* Head::Find(std::string_view lower_name) const {
  for (const auto& [name, value] : fields) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

/// Beast's parser, telling this one what it finds.
class RequestParser::Impl final : public beast::http::basic_parser<true> {
 public:
  explicit Impl(RequestParser& owner) : owner_(owner) {
    header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        owner.limits_.max_head_bytes, std::numeric_limits<std::uint32_t>::max())));
    // The route's limit is set once the head is read (Continue): until then
    // no body is read at all.
    body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  bool request_line_seen = false;

 private:
  void on_request_impl(beast::http::verb, beast::string_view method, beast::string_view target,
                       int version, beast::error_code& ec) override {
    request_line_seen = true;
    const Limits& l = owner_.limits_;
    if (target.size() > l.max_target_bytes) {
      owner_.Refuse(414, fmt::format("the request target is {} bytes, over the limit of {}",
                                     target.size(), l.max_target_bytes));
      ec = beast::http::error::bad_target;
      return;
    }
    if (version != 10 && version != 11) {
      owner_.Refuse(505, fmt::format("HTTP/{}.{} is not supported: this server speaks HTTP/1.1",
                                     version / 10, version % 10));
      ec = beast::http::error::bad_version;
      return;
    }
    owner_.head_.method.assign(method.data(), method.size());
    owner_.head_.target.assign(target.data(), target.size());
    owner_.head_.version = version;
  }

  void on_response_impl(int, beast::string_view, int, beast::error_code& ec) override {
    ec = beast::http::error::bad_method;
  }

  void on_field_impl(beast::http::field, beast::string_view name, beast::string_view value,
                     beast::error_code& ec) override {
    const Limits& l = owner_.limits_;
    Head& h = owner_.head_;
    if (h.fields.size() >= l.max_fields) {
      owner_.Refuse(431, fmt::format("more than {} header fields", l.max_fields));
      ec = beast::http::error::bad_field;
      return;
    }
    if (name.size() > l.max_field_name_bytes || value.size() > l.max_field_value_bytes) {
      owner_.Refuse(431, fmt::format("a header field is over the limit ({} bytes of name, {} of "
                                     "value)",
                                     l.max_field_name_bytes, l.max_field_value_bytes));
      ec = beast::http::error::bad_field;
      return;
    }
    for (const char c : value) {
      // Beast takes obs-text; control characters other than tab are refused.
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        owner_.Refuse(400, "a header field's value holds a control character");
        ec = beast::http::error::bad_value;
        return;
      }
    }
    h.fields.emplace_back(Lower({name.data(), name.size()}),
                          std::string(value.data(), value.size()));
  }

  void on_header_impl(beast::error_code& ec) override {
    Head& h = owner_.head_;
    if (const auto n = content_length()) h.content_length = *n;
    h.chunked = this->chunked();
    h.keep_alive = keep_alive();
    std::size_t hosts = 0;
    bool coded = false;
    bool length = false;
    for (const auto& [name, value] : h.fields) {
      if (name == "host") ++hosts;
      if (name == "transfer-encoding") coded = true;
      if (name == "content-length") length = true;
      if (name == "expect") {
        if (!EqualsLower(value, "100-continue")) {
          owner_.Refuse(417, "the only expectation this server meets is 100-continue");
          ec = beast::http::error::bad_field;
          return;
        }
        h.expect_continue = true;
      }
    }
    // A body whose length is not certain is not read (RFC 9112 6.1, 6.3):
    // it would be a second request to a proxy in front.
    if (coded && !h.chunked) {
      owner_.Refuse(501, "a request body's transfer coding must end in chunked");
      ec = beast::http::error::bad_transfer_encoding;
      return;
    }
    if (coded && length) {
      owner_.Refuse(400, "a request has Transfer-Encoding or Content-Length, not both");
      ec = beast::http::error::bad_transfer_encoding;
      return;
    }
    if (h.version == 11 && hosts != 1) {
      owner_.Refuse(400, hosts == 0 ? "an HTTP/1.1 request needs a Host field"
                                    : "a request has one Host field, not several");
      ec = beast::http::error::bad_field;
    }
  }

  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}

  std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override {
    return Append(body, ec);
  }

  void on_chunk_header_impl(std::uint64_t size, beast::string_view,
                            beast::error_code& ec) override {
    if (size > 0 && ++owner_.chunks_ > owner_.limits_.max_chunks) {
      owner_.Refuse(
          413, fmt::format("a chunked body of more than {} chunks", owner_.limits_.max_chunks));
      ec = beast::http::error::body_limit;
    }
  }

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 beast::error_code& ec) override {
    return Append(body, ec);
  }

  void on_finish_impl(beast::error_code&) override {}

  std::size_t Append(beast::string_view data, beast::error_code& ec) {
    if (owner_.body_.size() + data.size() > limit_) {
      owner_.Refuse(413, fmt::format("the body is over this route's limit of {} bytes", limit_));
      ec = beast::http::error::body_limit;
      return 0;
    }
    owner_.body_.append(data.data(), data.size());
    return data.size();
  }

 public:
  std::uint64_t limit_ = 0;

 private:
  RequestParser& owner_;
};

RequestParser::RequestParser(const Limits& limits)
    : limits_(limits), impl_(std::make_unique<Impl>(*this)) {}

RequestParser::~RequestParser() = default;

void RequestParser::Refuse(int status, std::string message) {
  if (!refusal_) refusal_ = Refusal{status, std::move(message)};
}

bool RequestParser::head_done() const { return impl_->is_header_done(); }
bool RequestParser::done() const { return impl_->is_done(); }

std::size_t RequestParser::Put(std::string_view data) {
  if (refusal_ || done() || data.empty()) return 0;
  if (head_done() && !continued_) return 0;
  started_ = true;
  std::size_t used = 0;
  do {
    beast::error_code ec;
    const std::size_t n =
        impl_->put(boost::asio::const_buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == beast::http::error::need_more) break;
    if (ec) {
      if (ec == beast::http::error::header_limit) {
        if (impl_->request_line_seen) {
          Refuse(431, fmt::format("the request's head is over {} bytes", limits_.max_head_bytes));
        } else {
          Refuse(414, fmt::format("the request line is over {} bytes", limits_.max_head_bytes));
        }
      } else if (ec == beast::http::error::body_limit) {
        Refuse(413, "the body is over this route's limit");
      } else if (ec == beast::http::error::bad_transfer_encoding) {
        Refuse(400,
               "a request body's length is ambiguous (Transfer-Encoding and Content-Length "
               "both, or a coding that does not end in chunked)");
      } else if (ec == beast::http::error::bad_version && VersionLike(data)) {
        Refuse(505, "this HTTP version is not supported: this server speaks HTTP/1.1");
      } else {
        Refuse(400, fmt::format("malformed request: {}", ec.message()));
      }
      break;
    }
    if (head_done() && !continued_) break;
    if (n == 0) break;
  } while (used < data.size() && !done());
  return used;
}

void RequestParser::Continue(std::uint64_t body_limit) {
  continued_ = true;
  impl_->limit_ = body_limit;
  if (head_.content_length && *head_.content_length > body_limit) {
    Refuse(413, fmt::format("the body of {} bytes is over this route's limit of {}",
                            *head_.content_length, body_limit));
    return;
  }
  impl_->body_limit(body_limit);
  if (head_.content_length) body_.reserve(static_cast<std::size_t>(*head_.content_length));
}

Result<Target> ParseTarget(std::string_view raw) {
  Target t;
  std::string_view rest = raw;
  if (!rest.empty() && rest.front() != '/') {
    // Absolute form: the scheme and authority go, the path stays.
    const auto scheme = rest.find("://");
    if (scheme == std::string_view::npos || !(EqualsLower(rest.substr(0, scheme), "http") ||
                                              EqualsLower(rest.substr(0, scheme), "https"))) {
      return InvalidArgument("the request target must be a path, such as /api/v1");
    }
    rest.remove_prefix(scheme + 3);
    const auto slash = rest.find_first_of("/?");
    rest = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (rest.front() == '?') return InvalidArgument("the request target has no path");
  }
  if (rest.empty()) return InvalidArgument("the request target is empty");
  const auto q = rest.find('?');
  const std::string_view path = rest.substr(0, q);
  t.path = std::string(path);
  std::string decoded;
  std::string_view segs = path.substr(1);
  for (;;) {
    const auto slash = segs.find('/');
    if (!Decode(segs.substr(0, slash), false, &decoded)) {
      return InvalidArgument(
          "a path segment is not valid percent-encoding of UTF-8 text (such as %C3%A9)");
    }
    t.segments.push_back(decoded);
    if (slash == std::string_view::npos) break;
    segs.remove_prefix(slash + 1);
  }
  if (q == std::string_view::npos) return t;
  std::string_view query = rest.substr(q + 1);
  if (const auto hash = query.find('#'); hash != std::string_view::npos) {
    query = query.substr(0, hash);
  }
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string name;
    std::string value;
    if (!Decode(pair.substr(0, eq), true, &name) ||
        (eq != std::string_view::npos && !Decode(pair.substr(eq + 1), true, &value))) {
      return InvalidArgument(
          "the query string is not valid percent-encoding of UTF-8 text (such as %C3%A9)");
    }
    t.query.emplace_back(std::move(name), std::move(value));
  }
  return t;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
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
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "OK";
  }
}

std::string Serialize(const Reply& reply, bool head_only, std::string_view date) {
  std::string out;
  out.reserve(256 + (head_only ? 0 : reply.body.size()));
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nDate: {}\r\n", reply.status,
                 ReasonPhrase(reply.status), date);
  if (!reply.content_type.empty()) {
    fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\n", reply.content_type);
  }
  for (const auto& [name, value] : reply.headers) {
    fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
  }
  fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", reply.body.size());
  if (reply.close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += reply.body;
  return out;
}

std::string HttpDate(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

}  // namespace deskpulse::collector::http
