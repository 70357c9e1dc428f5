#include "deskpulse/common/logging.h"

#include <google/protobuf/stubs/logging.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <vector>

namespace deskpulse {
namespace {

// protobuf prints its parse diagnostics (a string field that is not UTF-8,
// say) to stderr, one line per message: bytes from any peer could flood the
// log. The input is refused with an error of our own anyway, so they go to
// the debug level, escaped.
void ProtobufLog(google::protobuf::LogLevel level, const char* /*file*/, int /*line*/,
                 const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL) {
    spdlog::error("protobuf: {}", EscapeForLog(message, 512));
  } else {
    spdlog::debug("protobuf: {}", EscapeForLog(message, 512));
  }
}

}  // namespace

Status SetUpLogging(const std::string& program, const std::string& level, const std::string& file) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return InvalidArgument("log level '" + level +
                           "' is not one of trace, debug, info, warn, error, off");
  }
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file));
    } catch (const spdlog::spdlog_ex& e) {
      return IoError("cannot open log file " + file + ": " + e.what());
    }
  }
  google::protobuf::SetLogHandler(&ProtobufLog);
  auto logger = std::make_shared<spdlog::logger>(program, sinks.begin(), sinks.end());
  logger->set_level(lvl);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  spdlog::set_default_logger(logger);
  if (file.empty()) {
    // stderr is unbuffered: nothing to flush, and no flusher thread waking
    // every second (the agent runs on thousands of endpoints).
    logger->flush_on(spdlog::level::trace);
  } else {
    logger->flush_on(spdlog::level::warn);
    spdlog::flush_every(std::chrono::seconds(1));
  }
  return Status::Ok();
}

std::string EscapeForLog(std::string_view s, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::size_t shown = std::min(s.size(), max_bytes);
  std::string out;
  out.reserve(shown + 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0x0f];
    }
  }
  if (shown < s.size()) out += "...(+" + std::to_string(s.size() - shown) + " bytes)";
  return out;
}

std::string GroupThousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string WarningSummary::Line::Text() const {
  const auto ms = over.count();
  const std::string span =
      ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
  return GroupThousands(count) + " " + kind + " from " + source + " in the last " + span;
}

bool WarningSummary::Note(std::string_view kind, std::string_view source, Clock::time_point now) {
  auto it = entries_.find(std::make_pair(std::string(kind), std::string(source)));
  if (it == entries_.end()) {
    std::size_t of_kind = 0;
    for (const auto& [key, e] : entries_) of_kind += key.first == kind;
    std::string src(source);
    if (of_kind >= max_sources_) src = "other peers";
    it = entries_.try_emplace({std::string(kind), std::move(src)}).first;
    if (it->second.since == Clock::time_point{}) {
      it->second.since = now;
      return true;  // the first of its kind from this source: in full
    }
  }
  if (it->second.suppressed == 0 && now - it->second.since >= interval_) {
    it->second.since = now;  // quiet for a whole interval: in full again
    return true;
  }
  ++it->second.suppressed;
  return false;
}

std::vector<WarningSummary::Line> WarningSummary::Due(Clock::time_point now, bool flush) {
  std::vector<Line> lines;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    const auto age = now - e.since;
    if (!flush && age < interval_) {
      ++it;
      continue;
    }
    if (e.suppressed > 0) {
      lines.push_back({it->first.first, it->first.second, e.suppressed,
                       std::chrono::duration_cast<std::chrono::milliseconds>(age)});
      e.suppressed = 0;
      e.since = now;
      ++it;
    } else {
      it = entries_.erase(it);  // quiet for an interval: forget it
    }
  }
  return lines;
}

}  // namespace deskpulse
