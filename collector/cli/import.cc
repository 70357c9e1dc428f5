// deskpulse-collector import: business signals from a CSV or JSON file
// (docs/signals.md). Every bad row is listed with its line and field, and a
// file with any problem changes nothing.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "collector/cli/commands.h"
#include "collector/signals/parse.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector::cli {
namespace {

struct ImportArgs {
  std::string db;
  std::string kind;
  std::string format;  // empty: from the file's name or first byte
  std::string file;
};

/// The file's bytes, refused before reading when larger than `max`.
Result<std::string> ReadCapped(const std::string& file, std::size_t max) {
  if (file == "-") {
    std::string bytes(max + 1, '\0');
    std::cin.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(std::cin.gcount()));
    if (bytes.size() > max) {
      return InvalidArgument("standard input: over the " + std::to_string(max) + " byte limit");
    }
    return bytes;
  }
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    return NotFound(file + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgument(file + ": not a regular file");
  if (static_cast<std::size_t>(st.st_size) > max) {
    return InvalidArgument(file + ": " + std::to_string(st.st_size) + " bytes, over the " +
                           std::to_string(max) + " byte limit");
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) return InvalidArgument(file + ": cannot be read");
  std::string bytes = std::move(out).str();
  if (bytes.size() > max) return InvalidArgument(file + ": grew past the byte limit while read");
  return bytes;
}

/// Says what is wrong on standard error, with nothing imported.
int Refuse(const Status& s) {
  std::cerr << CommandName() << ": " << s.message() << "; nothing imported\n";
  return ExitCodeFor(s);
}

int Import(const ImportArgs& a) {
  const auto kind = ParseSignalKind(a.kind);
  if (!kind)
    return Refuse(InvalidArgument("--kind must be surveys, tickets, contracts or reviews"));
  const SignalLimits limits;
  auto bytes = ReadCapped(a.file, limits.max_bytes);
  if (!bytes.ok()) return Refuse(bytes.status());
  const SignalFormat format =
      a.format.empty() ? SignalFormatOf(a.file, *bytes) : *ParseSignalFormat(a.format);
  const ParseOutcome parsed = ParseSignals(*kind, format, *bytes, limits);
  if (!parsed.batch) {
    for (const FieldError& e : parsed.errors) {
      std::cerr << a.file << ": " << e.where << (e.field.empty() ? "" : ", field " + e.field)
                << ": " << e.message << "\n";
    }
    if (parsed.more_errors > 0) std::cerr << "... and " << parsed.more_errors << " more\n";
    const std::size_t n = parsed.errors.size() + parsed.more_errors;
    std::cerr << a.file << ": nothing imported (" << n << (n == 1 ? " problem)\n" : " problems)\n");
    return kExitUsage;
  }
  auto store = OpenForCommand(a.db, StoreUse::kWrite);
  if (!store.ok()) return Refuse(store.status());
  auto result = (*store)->ImportSignals(*parsed.batch, NowMs());
  if (!result.ok())
    return Refuse(Status(result.status().code(), a.file + ": " + result.status().message()));
  if (result->already_imported) {
    std::cout << a.file << ": already imported (the same " << a.kind << "), nothing changed\n";
  } else {
    // The kinds are plural nouns: "surveys" → "1 survey", "5 surveys".
    const std::string one = a.kind.substr(0, a.kind.size() - 1);
    std::cout << a.file << ": imported " << Counted(result->rows, one) << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddImport(CLI::App& app, Run* run) {
  auto args = std::make_shared<ImportArgs>();
  auto* sub = app.add_subcommand(
      "import", "Import business signals (CSV or JSON): all rows or, on any problem, none");
  AddDbOption(sub, &args->db)->required();
  sub->add_option("--kind", args->kind, "surveys, tickets, contracts or reviews")
      ->required()
      ->check(OneOf({"surveys", "tickets", "contracts", "reviews"}));
  sub->add_option("--format", args->format, "csv or json (default: by the file's name)")
      ->check(OneOf({"csv", "json"}));
  sub->add_option("FILE", args->file, "the file, or - for standard input")->required();
  sub->callback([run, args] { *run = [args] { return Import(*args); }; });
}

}  // namespace deskpulse::collector::cli
