#pragma once

// Words for people: counts with their nouns.

#include <cstdint>
#include <string>
#include <string_view>

namespace deskpulse {

/// "1 respondent", "41 respondents", "0 respondents": `n` and its noun,
/// singular for exactly one. `plural` is `singular` + "s" unless given
/// ("1 entry", "2 entries").
std::string Counted(std::int64_t n, std::string_view singular, std::string_view plural = {});

/// The same for a figure shown rounded to a whole number ("1 day" for 0.6
/// days): the noun agrees with the number printed.
std::string CountedRounded(double n, std::string_view singular, std::string_view plural = {});

/// The noun alone, as it goes with `n`.
std::string_view Noun(std::int64_t n, std::string_view singular, std::string_view plural);

}  // namespace deskpulse
