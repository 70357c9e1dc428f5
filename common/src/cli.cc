#include "deskpulse/common/cli.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "deskpulse/common/exit_codes.h"

namespace deskpulse::cli {
namespace {

std::string LowerFirst(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

/// The part of `s` after `marker`, or "" when `marker` is not in it.
std::string After(const std::string& s, std::string_view marker) {
  const std::size_t at = s.find(marker);
  return at == std::string::npos ? std::string() : s.substr(at + marker.size());
}

/// Every whitespace-separated word that is a credential replaced: the last
/// guard before a line reaches a terminal or a log.
std::string RedactSecrets(const std::string& line) {
  std::string out;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t end = line.find_first_of(" \t'\"=", i);
    const std::size_t stop = end == std::string::npos ? line.size() : end;
    const std::string_view word(line.data() + i, stop - i);
    out += LooksLikeSecret(word) ? std::string("(a token, not shown)") : std::string(word);
    if (stop < line.size()) out += line[stop];
    i = stop + 1;
  }
  return out;
}

std::string Words(const std::string& list) {
  // CLI11 joins the unexpected arguments with spaces.
  std::istringstream in(list);
  std::vector<std::string> shown;
  for (std::string w; in >> w;) shown.insert(shown.begin(), Shown(w));  // rjoin: reversed
  std::string out;
  for (std::size_t i = 0; i < shown.size(); ++i) out += (i > 0 ? " " : "") + shown[i];
  return out;
}

}  // namespace

bool LooksLikeSecret(std::string_view value) {
  // NewToken: a "dpt_" (enrollment) or "dpa_" (API) prefix and 43 characters
  // of base64url. A shorter tail still counts: a token cut by a bad paste.
  return (value.starts_with("dpt_") || value.starts_with("dpa_")) && value.size() >= 12;
}

std::string Shown(std::string_view value) {
  if (LooksLikeSecret(value)) return "(a token, not shown)";
  constexpr std::size_t kMax = 40;
  std::string out = "'";
  for (char c : value.substr(0, kMax)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  out += value.size() > kMax ? "...'" : "'";
  return out;
}

std::string JoinOr(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
    out += words[i];
  }
  return out;
}

CLI::Validator WholeNumber(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& value) -> std::string {
        std::int64_t n = 0;
        const char* end = value.data() + value.size();
        const auto [ptr, ec] = std::from_chars(value.data(), end, n);
        if (value.empty() || ec != std::errc() || ptr != end || n < min || n > max) {
          return fmt::format("must be a whole number from {} to {}, not {}", min, max,
                             Shown(value));
        }
        return {};
      },
      fmt::format("{}..{}", min, max), "WholeNumber");
}

CLI::Validator Number(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& value) -> std::string {
        char* end = nullptr;
        const double n = value.empty() ? NAN : std::strtod(value.c_str(), &end);
        if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(n) || n < min ||
            n > max) {
          return fmt::format("must be a number from {:g} to {:g}, not {}", min, max, Shown(value));
        }
        return {};
      },
      fmt::format("{:g}..{:g}", min, max), "Number");
}

CLI::Validator OneOf(const std::vector<std::string>& choices) {
  std::string desc;
  for (const auto& c : choices) desc += (desc.empty() ? "" : "|") + c;
  return CLI::Validator(
      [choices](std::string& value) -> std::string {
        for (const auto& c : choices) {
          if (value == c) return {};
        }
        return fmt::format("must be {}, not {}",
                           choices.size() == 1 ? choices.front() : "one of " + JoinOr(choices),
                           Shown(value));
      },
      desc, "OneOf");
}

std::string CommandPath(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* at = &app;
  for (;;) {
    const auto subs = at->get_subcommands();
    if (subs.empty()) break;
    at = subs.front();
    path += " " + at->get_name();
  }
  return path;
}

std::string Explain(const CLI::App& app, const CLI::ParseError& e) {
  // By type, not by get_name(): CLI11 names some errors after the subcommand.
  const std::string what = e.what();
  std::string out;
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && StartsWith(what, "A subcommand")) {
    const CLI::App* at = &app;
    for (auto subs = at->get_subcommands(); !subs.empty(); subs = at->get_subcommands()) {
      at = subs.front();
    }
    std::vector<std::string> names;
    for (const CLI::App* s : at->get_subcommands([](const CLI::App*) { return true; })) {
      names.push_back(s->get_name());
    }
    out = "a command is required: " + JoinOr(names);
  } else if (dynamic_cast<const CLI::ValidationError*>(&e) != nullptr) {
    // "NAME: must be ..." from our validators.
    const std::size_t colon = what.find(": ");
    out = colon != std::string::npos && StartsWith(std::string_view(what).substr(colon + 2), "must")
              ? what.substr(0, colon) + " " + what.substr(colon + 2)
              : LowerFirst(what);
  } else if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr) {
    if (StartsWith(what, "Could not convert: ")) {
      const std::string rest = After(what, "Could not convert: ");
      const std::size_t eq = rest.find(" = ");
      out = eq == std::string::npos
                ? "a value could not be read"
                : rest.substr(0, eq) + ": " + Shown(rest.substr(eq + 3)) + " is not a valid value";
    } else if (what.find(": too many inputs for a flag") != std::string::npos ||
               what.find(": Should be true/false") != std::string::npos) {
      out = what.substr(0, what.find(':')) + " takes no value";
    } else {
      out = LowerFirst(what);
    }
  } else if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    const std::string rest = After(what, "expected: ");
    out = (rest.find(' ') == std::string::npos ? "unexpected argument " : "unexpected arguments ") +
          Words(rest);
  } else if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr &&
             what.find(" missing") != std::string::npos) {
    out = what.substr(0, what.find(':')) + " needs a value";
  } else if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr &&
             StartsWith(what, "Expected exactly ")) {
    // "Expected exactly 1 arguments to --db, got 0"
    const std::string rest = After(what, " to ");
    out = rest.substr(0, rest.find(',')) + " needs a value";
  } else {
    out = LowerFirst(what);
  }
  return RedactSecrets(out);
}

std::optional<int> Parse(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const CLI::ParseError& e) {
    const std::string path = CommandPath(app);
    std::cerr << path << ": " << Explain(app, e) << " (see " << path << " --help)\n";
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace deskpulse::cli
