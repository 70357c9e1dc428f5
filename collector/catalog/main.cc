// deskpulse-catalog: builds the peripheral compatibility catalog from the
// public catalogs Debian ships, and looks devices up in it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "collector/catalog/builder.h"
#include "collector/catalog/lookup.h"
#include "deskpulse/common/catalog.h"
#include "deskpulse/common/cli.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace dp = deskpulse;
namespace cat = deskpulse::catalog;

namespace {

int Fail(const dp::Status& s) {
  std::cerr << "deskpulse-catalog: " << s.message() << "\n";
  return dp::ExitCodeFor(s);
}

int Build(const cat::BuildOptions& options) {
  auto summary = cat::BuildCatalog(options);
  if (!summary.ok()) return Fail(summary.status());
  std::cout << fmt::format("catalog {} written to {}\n", summary->catalog_version, options.out);
  std::cout << fmt::format("{:<9} {:>7}  {:<32} {}\n", "SOURCE", "ENTRIES", "PACKAGE", "VERSION");
  for (const auto& s : summary->sources) {
    std::cout << fmt::format(
        "{:<9} {:>7}  {:<32} {}\n", s.source, s.entries,
        s.package.empty() ? "(not from a package)" : s.package + " " + s.package_version,
        s.source_version);
  }
  if (summary->printers_unrated > 0) {
    std::cout << fmt::format("({} OpenPrinting entries have no support rating and are left out)\n",
                             summary->printers_unrated);
  }
  return dp::kExitOk;
}

int Lookup(const std::string& path, const std::string& id, const cat::LookupFlags& flags,
           bool json) {
  auto observation = cat::ObservationFromFlags(id, flags);
  if (!observation.ok()) return Fail(observation.status());
  auto reader = cat::Reader::Open(path, dp::LinkedSqliteApi());
  if (!reader.ok()) return Fail(reader.status());
  auto facts = reader->Lookup(*observation);
  if (!facts.ok()) return Fail(facts.status());
  auto sources = reader->Sources();
  if (!sources.ok()) return Fail(sources.status());
  const cat::Classification c = cat::Classify(*observation, *facts);
  if (json) {
    std::cout << cat::LookupToJson(*observation, *facts, c, reader->version(), *sources)
                     .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << cat::FormatLookup(*observation, *facts, c, reader->version(), *sources);
  }
  return dp::kExitOk;
}

}  // namespace

static int Main(int argc, char** argv) {
  CLI::App app{
      "deskpulse-catalog: the peripheral compatibility catalog, built from the public "
      "catalogs Debian ships (usb.ids, SANE, OpenPrinting, libccid, the kernel's "
      "modules.alias).",
      "deskpulse-catalog"};
  app.set_version_flag("--version", std::string("deskpulse-catalog ") + DESKPULSE_VERSION);
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 2 bad usage, 3 unreadable or bad source or catalog, 5 not found.");

  cat::BuildOptions build;
  auto* b = app.add_subcommand("build", "Build the catalog from the installed Debian packages");
  b->add_option("--out", build.out, "catalog file to write (SQLite)")->required();
  b->add_option("--usb-ids", build.usb_ids, "hwdata's usb.ids")->capture_default_str();
  b->add_option("--sane-hwdb", build.sane_hwdb, "libsane1's udev hwdb")->capture_default_str();
  b->add_option("--foomatic-printers", build.foomatic_printers,
                "foomatic-db's printer XML directory")
      ->capture_default_str();
  b->add_option("--ccid-plist", build.ccid_plist, "libccid's Info.plist")->capture_default_str();
  b->add_option("--kernel-modules", build.kernel_modules,
                "/lib/modules/<release> holding modules.alias (default: the newest installed)");

  std::string catalog_path;
  std::string id;
  cat::LookupFlags flags;
  bool json = false;
  auto* l = app.add_subcommand("lookup", "What the catalog says about one device");
  l->add_option("--catalog", catalog_path, "catalog file")->required();
  l->add_option("id", id,
                "VID:PID in hex (e.g. 03f0:2b17); '-' for a printer known only by "
                "its IEEE-1284 id");
  l->add_option("--ieee1284", flags.ieee1284, "the printer's IEEE-1284 device id");
  l->add_option("--class", flags.device_class, "device class, hex");
  l->add_option("--interface-classes", flags.interface_classes,
                "interface classes, hex, comma-separated (e.g. 07 or 0e,01)");
  auto* drivers = l->add_option("--drivers", flags.drivers,
                                "drivers bound on the endpoint, comma-separated, or 'none'");
  l->add_flag("--redirected", flags.redirected, "the device is redirected into a remote session");
  l->add_flag("--json", json, "JSON instead of text");

  if (auto done = dp::cli::Parse(app, argc, argv)) return *done;
  if (b->parsed()) return Build(build);
  flags.drivers_given = drivers->count() > 0;
  if (l->parsed()) return Lookup(catalog_path, id, flags, json);
  return dp::kExitUsage;
}

int main(int argc, char** argv) {
  return deskpulse::GuardMain("deskpulse-catalog", [&] { return Main(argc, argv); });
}
