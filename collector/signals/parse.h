#pragma once

// Business-signal files (CSV or JSON) parsed and validated into a
// SignalBatch (docs/signals.md). Every bad row is reported with its line (CSV)
// or record (JSON) and field; a file with any error yields no batch, so an
// import either stores every row or changes nothing. Sizes are capped before
// anything is parsed.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/store/signal_rows.h"
#include "deskpulse/common/status.h"

namespace deskpulse::collector {

enum class SignalFormat { kCsv, kJson };
std::optional<SignalFormat> ParseSignalFormat(std::string_view s);
/// By the file name's extension (.csv, .json), else by its first byte.
SignalFormat SignalFormatOf(std::string_view file_name, std::string_view bytes);

struct SignalLimits {
  std::size_t max_bytes = 16u << 20;
  std::size_t max_rows = 200'000;
  std::size_t max_field_bytes = 1024;
  std::size_t max_errors = 100;  // listed; the rest are counted
};

struct FieldError {
  std::string where;  // "line 12", "record 3", "header"
  std::string field;  // empty: the whole row or file
  std::string message;
};

struct ParseOutcome {
  std::optional<SignalBatch> batch;  // set only when there is no error
  std::vector<FieldError> errors;
  std::size_t more_errors = 0;  // beyond those listed
  /// One line naming the first problem and how many there are.
  std::string Summary() const;
};

/// Parses `bytes` as `kind` rows. Rows with the same natural key keep the
/// last. `batch->content_sha256` is the bytes' SHA-256.
ParseOutcome ParseSignals(SignalKind kind, SignalFormat format, std::string_view bytes,
                          const SignalLimits& limits = {});

/// An account manager's override as given (CLI or API), checked: a business
/// factor (technical is measured), a value 0..100, a reason of 1..500
/// characters and an expiry date (YYYY-MM-DD, UTC) after `now_ms`. On error
/// `*field` names the bad one.
Result<scoring::Override> MakeOverride(std::string_view factor, double value,
                                       std::string_view reason, std::string_view expires,
                                       std::int64_t now_ms, std::string* field);

/// Midnight UTC of `date` (YYYY-MM-DD), or nothing when it is not one.
std::optional<std::int64_t> DateMs(std::string_view date);

/// The columns (CSV header) or keys (JSON objects) of `kind`, required ones first.
std::vector<std::string> SignalFields(SignalKind kind);

}  // namespace deskpulse::collector
