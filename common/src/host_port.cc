#include "deskpulse/common/host_port.h"

#include <charconv>

namespace deskpulse {

Result<HostPort> ParseHostPort(std::string_view text, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument(std::string(what) + ": '" + std::string(text) + "' " + why +
                           " (expected HOST:PORT)");
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("has an unterminated [IPv6] host");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("has no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return bad("has no host");
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    return bad("has a port that is not a number in 0..65535");
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

Result<std::vector<HostPort>> ParseHostPortList(std::string_view text, std::string_view what) {
  std::vector<HostPort> out;
  constexpr std::size_t kMax = 64;
  while (true) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) {
      return InvalidArgument(std::string(what) + ": an empty address in the list");
    }
    DP_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(item, what));
    for (const auto& seen : out) {
      if (seen.host == hp.host && seen.port == hp.port) {
        return InvalidArgument(std::string(what) + ": " + std::string(item) + " is listed twice");
      }
    }
    out.push_back(std::move(hp));
    if (out.size() > kMax) {
      return InvalidArgument(std::string(what) + ": more than " + std::to_string(kMax) +
                             " collectors");
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace deskpulse
