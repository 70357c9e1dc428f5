#pragma once

#include <cstdint>
#include <string_view>

namespace deskpulse {

/// CRC-32C (Castagnoli) of `bytes`, continuing from `crc` (0 to start): the
/// checksum of the agent's spool records and of the collector's stored
/// reports. Uses the CPU's crc32 instruction where there is one.
std::uint32_t Crc32c(std::uint32_t crc, std::string_view bytes);

}  // namespace deskpulse
