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

}  // namespace deskpulse
