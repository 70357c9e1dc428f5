#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse {

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

/// Parse "HOST:PORT" or "[v6]:PORT"; `what` names the flag or key in errors.
Result<HostPort> ParseHostPort(std::string_view text, std::string_view what);

/// Parse a comma-separated list of them ("a:7741, b:7741"): at least one, at
/// most 64, none twice.
Result<std::vector<HostPort>> ParseHostPortList(std::string_view text, std::string_view what);

}  // namespace deskpulse
