#include "deskpulse/common/text.h"

#include <cmath>

namespace deskpulse {

std::string_view Noun(std::int64_t n, std::string_view singular, std::string_view plural) {
  return n == 1 ? singular : plural;
}

std::string Counted(std::int64_t n, std::string_view singular, std::string_view plural) {
  std::string out = std::to_string(n);
  out += ' ';
  if (n == 1) {
    out += singular;
  } else if (!plural.empty()) {
    out += plural;
  } else {
    out += singular;
    out += 's';
  }
  return out;
}

std::string CountedRounded(double n, std::string_view singular, std::string_view plural) {
  // What "{:.0f}" prints: round half to even, and no "-0".
  const double r = std::nearbyint(n);
  return Counted(static_cast<std::int64_t>(r == 0 ? 0 : r), singular, plural);
}

}  // namespace deskpulse
