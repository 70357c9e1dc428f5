#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/catalog.h"
#include "deskpulse/common/status.h"

/// Parsers for the public catalogs the peripheral catalog is built from. Each
/// is pure (text in, entries out) and names the file and line of bad input.
namespace deskpulse::catalog {

/// A usb.ids vendor (product_id -1) or product name.
struct UsbName {
  std::uint16_t vendor_id = 0;
  std::int32_t product_id = -1;
  std::string name;
};
/// hwdata's usb.ids: the vendor and device section (the class and other
/// tables after it are not device names). `*version` gets its "# Version:".
Result<std::vector<UsbName>> ParseUsbIds(std::istream& in, const std::string& origin,
                                         std::string* version);

/// A VID:PID a source supports, with the name it gives.
struct IdEntry {
  std::uint16_t vendor_id = 0;
  std::uint16_t product_id = 0;
  std::string name;
};
/// libsane1's udev hwdb (20-sane.hwdb): "usb:vXXXXpYYYY*" entries that set
/// libsane_matched=yes, named by the comment line above them. Models sharing an
/// id are joined with " | ". Sorted by id.
Result<std::vector<IdEntry>> ParseSaneHwdb(std::istream& in, const std::string& origin);

/// libccid's Info.plist: the parallel ifdVendorID / ifdProductID /
/// ifdFriendlyName arrays. Sorted by id, duplicates dropped.
Result<std::vector<IdEntry>> ParseCcidInfoPlist(const std::string& xml, const std::string& origin);

/// One printer of the OpenPrinting (foomatic) database.
struct PrinterEntry {
  std::string foomatic_id;  // "HP-LaserJet_1020"
  std::string make;
  std::string model;
  PrinterRating rating = PrinterRating::kPerfectly;
  std::string driver;
  std::vector<std::string> ieee1284_ids;  // distinct, as recorded under <autodetect>
  std::vector<PrinterKey> ieee1284_keys;  // from those ids and the autodetect MFG/MDL fields
};
/// One foomatic printer XML file. Nothing (and no error) for a printer with no
/// support rating, which the database has for a few placeholders.
Result<std::optional<PrinterEntry>> ParseFoomaticPrinter(const std::string& xml,
                                                         const std::string& origin);

/// The kernel's modules.alias ("alias usb:… module"), USB entries only.
Result<std::vector<UsbAlias>> ParseModulesAlias(std::istream& in, const std::string& origin);
/// modules.builtin.modinfo (NUL-separated "module.key=value"): the USB aliases
/// of drivers built into the kernel.
std::vector<UsbAlias> ParseBuiltinModinfo(std::string_view data);

/// Installed package versions from dpkg's status file: package → version.
std::map<std::string, std::string> ParseDpkgStatus(std::istream& in);

}  // namespace deskpulse::catalog
