#pragma once

#include <string>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Set up the default spdlog logger: messages go to stderr (data goes to
/// stdout), and also to `file` when it is not empty. `level` is one of
/// trace, debug, info, warn, error, off.
Status SetUpLogging(const std::string& program, const std::string& level,
                    const std::string& file = "");

}  // namespace deskpulse
