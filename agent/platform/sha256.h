#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace deskpulse::agent {

/// SHA-256 (FIPS 180-4) of `data`. The agent's own, small and allocation-free:
/// going through OpenSSL's EVP would initialise its provider machinery and map
/// about 2 MB of code on every endpoint just to tag serial numbers.
std::array<std::uint8_t, 32> Sha256(std::string_view data);

}  // namespace deskpulse::agent
