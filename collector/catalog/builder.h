#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::catalog {

/// Where the public catalogs are; the defaults are where Debian 12 installs them.
struct BuildOptions {
  std::string out;
  std::string usb_ids = "/usr/share/hwdata/usb.ids";
  std::string sane_hwdb = "/lib/udev/hwdb.d/20-sane.hwdb";
  std::string foomatic_printers = "/usr/share/foomatic/db/source/printer";
  std::string ccid_plist = "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist";
  std::string kernel_modules;  // /lib/modules/<release>; empty: the newest installed kernel
  std::string dpkg_dir = "/var/lib/dpkg";
};

/// One source as recorded in the catalog's `sources` table.
struct SourceInfo {
  std::string source;           // "usb.ids", "sane", "foomatic", "ccid", "kernel"
  std::string package;          // the Debian package that installed it
  std::string package_version;  // its version
  std::string source_version;   // the source's own version where it states one
  std::string path;
  std::string sha256;  // of the bytes read, so equal inputs give an equal catalog
  std::int64_t entries = 0;
};

struct BuildSummary {
  std::string catalog_version;
  std::vector<SourceInfo> sources;
  std::int64_t printers_unrated = 0;  // foomatic entries with no support rating, left out
};

/// Reads every source and writes the catalog to `options.out` (through a
/// temporary file renamed into place, so a failed build leaves the old one).
/// The file is byte-for-byte reproducible from the same sources.
Result<BuildSummary> BuildCatalog(const BuildOptions& options);

}  // namespace deskpulse::catalog
