#pragma once

#include <string>
#include <utility>
#include <variant>

namespace deskpulse {

/// The kinds of failure the project distinguishes. One error type for the whole tree.
enum class Code {
  kOk = 0,
  kInvalidArgument,  // bad input: config, flags, API arguments
  kNotFound,
  kAlreadyExists,
  kUnauthenticated,
  kPermissionDenied,
  kResourceExhausted,  // a size or rate limit
  kDataLoss,           // corrupt bytes on disk or wire
  kUnavailable,        // a service or file that is not there now
  kDeadlineExceeded,
  kIo,
  kInternal,
};

const char* CodeName(Code code);

/// The outcome of an operation that returns no value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  /// "INVALID_ARGUMENT: key 'ingest.listen': ..."
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status IoError(std::string m) { return {Code::kIo, std::move(m)}; }
inline Status DataLoss(std::string m) { return {Code::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }

/// A value or the Status saying why there is none; shaped like std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The error; Status::Ok() when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace deskpulse

#define DP_CONCAT_INNER(a, b) a##b
#define DP_CONCAT(a, b) DP_CONCAT_INNER(a, b)

/// Return the Status from the enclosing function if `expr` failed.
#define DP_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::deskpulse::Status dp_status_ = (expr); \
    if (!dp_status_.ok()) return dp_status_; \
  } while (0)

// `lhs` is a declaration ("auto x"), `tmp` a name: neither can be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define DP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

/// `DP_ASSIGN_OR_RETURN(auto x, F());` — unwrap a Result or return its Status.
#define DP_ASSIGN_OR_RETURN(lhs, expr) \
  DP_ASSIGN_OR_RETURN_IMPL(DP_CONCAT(dp_result_, __LINE__), lhs, expr)
