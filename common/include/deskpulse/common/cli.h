#pragma once

// The command line of every DeskPulse binary built on CLI11: one way to parse,
// answer --help and --version, and say what is wrong in the project's own
// words, on one line, without echoing a secret.

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deskpulse::cli {

/// Parses `argv` into `app`. Returns std::nullopt when the command line is
/// good and the program should go on; otherwise the exit code to return:
/// 0 after printing --help or --version on standard output, kExitUsage after
/// printing one line on standard error, "PROGRAM SUB: what is wrong (see
/// PROGRAM SUB --help)".
std::optional<int> Parse(CLI::App& app, int argc, const char* const* argv);

/// The command line's mistake in the project's words, from what CLI11 threw
/// while parsing `app` (exposed for tests).
std::string Explain(const CLI::App& app, const CLI::ParseError& e);

/// The subcommands parsed so far, as typed: "deskpulse-collector api-token revoke".
std::string CommandPath(const CLI::App& app);

/// Whether `value` looks like a DeskPulse credential (an enrollment or API
/// token), which no message may repeat.
bool LooksLikeSecret(std::string_view value);

/// `value` as a message may show it: quoted, cut when long, and never a
/// credential.
std::string Shown(std::string_view value);

/// A whole number from `min` to `max`: "must be a whole number from 1 to 400, not 0".
CLI::Validator WholeNumber(std::int64_t min, std::int64_t max);

/// A number from `min` to `max`: "must be a number from 0 to 100, not 101".
CLI::Validator Number(double min, double max);

/// One of `choices`: "must be one of value, service, brand or relationship, not 'x'".
CLI::Validator OneOf(const std::vector<std::string>& choices);

/// "a, b or c".
std::string JoinOr(const std::vector<std::string>& words);

}  // namespace deskpulse::cli
