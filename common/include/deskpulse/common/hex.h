#pragma once

#include <cstddef>
#include <string>

namespace deskpulse {

/// Lower-case hex of `n` bytes ("sha256 digests, tokens").
inline std::string HexEncode(const unsigned char* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 0x0f];
  }
  return out;
}

}  // namespace deskpulse
