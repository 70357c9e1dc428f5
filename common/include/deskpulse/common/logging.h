#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Set up the default spdlog logger: messages go to stderr (data goes to
/// stdout), and also to `file` when it is not empty. `level` is one of
/// trace, debug, info, warn, error, off.
Status SetUpLogging(const std::string& program, const std::string& level,
                    const std::string& file = "");

/// A string from a peer made safe for one log line: printable ASCII is kept,
/// every other byte (newline, escape, NUL, non-ASCII) and the backslash
/// become `\xNN` / `\\`, and anything past `max_bytes` of input is cut with
/// "...(+N bytes)". A client can neither forge a line nor flood one.
std::string EscapeForLog(std::string_view s, std::size_t max_bytes = 64);

/// 1234567 → "1,234,567", for counts in messages.
std::string GroupThousands(std::uint64_t n);

/// Collapses a repeated warning into one line per interval per source.
///
/// The first occurrence of (kind, source) is logged in full; those that
/// follow within the interval are only counted, and Due() turns the counts
/// into lines such as "1,234 refused credentials from 10.1.2.3 in the last
/// 10 s". Memory is bounded: past `max_sources` distinct sources in one
/// interval the rest are counted under "other peers". Not thread-safe.
class WarningSummary {
 public:
  using Clock = std::chrono::steady_clock;

  struct Line {
    std::string kind;    // e.g. "refused credentials"
    std::string source;  // e.g. "10.1.2.3"
    std::uint64_t count = 0;
    std::chrono::milliseconds over{0};
    /// "1,234 refused credentials from 10.1.2.3 in the last 10 s"
    std::string Text() const;
  };

  explicit WarningSummary(std::chrono::milliseconds interval = std::chrono::seconds(10),
                          std::size_t max_sources = 256)
      : interval_(interval), max_sources_(max_sources) {}

  /// Records one occurrence; true when it should be logged in full now.
  bool Note(std::string_view kind, std::string_view source, Clock::time_point now);
  /// The summary lines whose interval has passed (all of them with `flush`);
  /// their counts restart.
  std::vector<Line> Due(Clock::time_point now, bool flush = false);

 private:
  struct Entry {
    Clock::time_point since{};  // the interval's start: the last full line or summary
    std::uint64_t suppressed = 0;
  };
  std::chrono::milliseconds interval_;
  std::size_t max_sources_;
  std::map<std::pair<std::string, std::string>, Entry, std::less<>> entries_;
};

}  // namespace deskpulse
