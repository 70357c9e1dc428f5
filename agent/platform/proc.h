#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// The whole of a small file (sysfs attribute, procfs entry), or an error
/// naming the path. Reads at most `max_bytes`.
Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes = 64 << 10);

/// The first line of a file without its newline, or nullopt.
std::optional<std::string> ReadLine(const std::string& path);

/// `<proc>/sys/kernel/random/boot_id`.
Result<std::string> ReadBootId(const std::string& proc_root);

/// `<proc>/uptime` field 1, seconds (CLOCK_BOOTTIME).
Result<double> ReadUptime(const std::string& proc_root);

/// Unix ms of this boot: CLOCK_REALTIME − CLOCK_BOOTTIME now (btime moves
/// when the clock is stepped).
std::int64_t BootedAtUnixMs();

std::int64_t NowUnixMs();

/// Write `content` to `path` through a temporary file and rename.
Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace deskpulse::agent
