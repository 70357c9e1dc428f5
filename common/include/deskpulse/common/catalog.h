#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/sqlite_api.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"

/// The peripheral compatibility catalog (docs/catalog.md): what the public catalogs
/// Debian ships say about a USB device or a printer, and the verdict drawn from
/// that. The file is built by `deskpulse-catalog build` (collector/catalog/);
/// this part reads it and classifies, for the agent, the collector and the
/// simulator alike.
namespace deskpulse::catalog {

/// The catalog file's schema; a reader refuses any other.
inline constexpr int kSchemaVersion = 1;

/// Where a package installs the catalog; the agent, `peripherals` and `serve`
/// look here unless told otherwise.
inline constexpr const char* kDefaultPath = "/usr/share/deskpulse/catalog.sqlite";

enum class Verdict { kUnknown = 0, kSupported = 1, kPartial = 2, kUnsupported = 3 };
/// "unknown", "supported", "partial", "unsupported".
const char* VerdictName(Verdict v);
std::optional<Verdict> VerdictFromName(std::string_view name);

/// OpenPrinting's support rating of a printer (foomatic's functionality code).
enum class PrinterRating { kPerfectly, kMostly, kPartially, kPaperweight };
const char* RatingName(PrinterRating r);
std::optional<PrinterRating> RatingFromFoomaticCode(std::string_view code);
std::optional<PrinterRating> RatingFromName(std::string_view name);

/// What an endpoint saw of one device.
struct Observation {
  std::optional<std::uint16_t> vendor_id;  // absent for a print queue with no USB ids
  std::optional<std::uint16_t> product_id;
  std::uint8_t device_class = 0;
  std::vector<std::uint8_t> interface_classes;
  std::string ieee1284_id;           // printers: "MFG:…;MDL:…;…"
  std::vector<std::string> drivers;  // interface drivers bound on the endpoint
  bool drivers_observed = true;      // false: `drivers` is not known (a catalog lookup by hand)
  bool redirected = false;           // redirected into a remote session
};

/// A printer's make and model reduced to a matching key: lower-case letters and
/// digits only, the make's common aliases folded ("Hewlett-Packard" → "hp") and
/// the make dropped from the front of the model.
struct PrinterKey {
  std::string make;
  std::string model;
  bool operator==(const PrinterKey&) const = default;
};
PrinterKey PrinterKeyFromName(std::string_view make, std::string_view model);
/// The key of an IEEE-1284 device id (MFG/MANUFACTURER and MDL/MODEL fields),
/// or nothing when it lacks either.
std::optional<PrinterKey> PrinterKeyFromIeee1284(std::string_view device_id);
/// The value of one field of an IEEE-1284 device id ("MDL" → "LaserJet 1020").
std::string Ieee1284Field(std::string_view device_id, std::string_view key,
                          std::string_view long_key = {});

/// One USB match of the kernel's modules.alias: absent fields match anything.
struct UsbAlias {
  std::optional<std::uint16_t> vendor_id, product_id;
  std::optional<std::uint8_t> device_class, device_subclass, device_protocol;
  std::optional<std::uint8_t> interface_class, interface_subclass, interface_protocol;
  std::string module;
};
/// Parses "usb:v03F0p2B17d*dc*dsc*dp*ic*isc*ip*in*"; nothing for a non-USB or
/// malformed pattern. A bcdDevice range is not kept: it narrows a quirk, not
/// whether a driver exists.
std::optional<UsbAlias> ParseUsbAlias(std::string_view pattern, std::string_view module);
/// Whether the alias matches the observed ids and classes. Only interface
/// classes are observed, so an interface sub-class or protocol in the alias is
/// not checked: the answer means "a driver for this kind of device exists".
bool AliasMatches(const UsbAlias& alias, const Observation& o);

/// Everything the catalog knows about one observed device.
struct Facts {
  std::string vendor_name;                 // usb.ids
  std::string product_name;                // usb.ids
  std::optional<std::string> sane_models;  // SANE lists it: the models sharing the id
  std::optional<std::string> ccid_reader;  // libccid lists it: the reader's name
  struct Printer {
    std::string foomatic_id;
    std::string make;
    std::string model;
    PrinterRating rating = PrinterRating::kPerfectly;
    std::string driver;        // foomatic's recommended driver, if any
    bool by_ieee1284 = false;  // matched on the printer's own IEEE-1284 id
  };
  std::optional<Printer> printer;
  std::vector<std::string> kernel_by_id;     // modules whose alias names this VID[:PID]
  std::vector<std::string> kernel_by_class;  // class drivers matching its classes
};

/// The catalog's verdict on one device and the source that decided it.
struct Classification {
  Verdict verdict = Verdict::kUnknown;
  std::string source;  // "foomatic", "sane", "ccid", "kernel"; empty when nothing decided
  std::string model;   // the best name the catalog has for it
  std::string driver;  // what should drive it: a kernel module, "sane", "libccid", …
  std::string detail;  // why, in words a person can act on
};

/// Decides the verdict: a printer's OpenPrinting rating first, then SANE for
/// scanners, libccid for smart-card readers, a kernel driver for the VID:PID,
/// then a kernel class driver. Pure: `o` adds what the endpoint saw (no driver
/// bound where one is expected) to the detail.
Classification Classify(const Observation& o, const Facts& f);

/// One source the catalog was built from, with the Debian package and version.
struct SourceRecord {
  std::string source;  // "usb.ids", "sane", "foomatic", "ccid", "kernel"
  std::string package;
  std::string package_version;
  std::string source_version;
  std::int64_t entries = 0;
};

/// What a report says about one device, as an observation.
Observation ObservationOf(const deskpulse::v1::PeripheralState& s);
/// A verdict for the wire, and back.
void VerdictToProto(const Classification& c, const std::string& catalog_version,
                    deskpulse::v1::CatalogVerdict* out);
Classification VerdictFromProto(const deskpulse::v1::CatalogVerdict& v);

/// A catalog file opened read-only.
class Reader {
 public:
  /// Opens `path` and checks its schema version.
  static Result<Reader> Open(const std::string& path, const SqliteApi& api);
  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;
  ~Reader();

  /// What every source says about the observed device.
  Result<Facts> Lookup(const Observation& o);
  /// The sources it was built from.
  Result<std::vector<SourceRecord>> Sources();
  /// Lookup + Classify.
  Result<Classification> Classify(const Observation& o);

  /// "1-<digest of the sources>": equal for catalogs built from equal sources.
  const std::string& version() const { return version_; }

 private:
  struct Db;
  explicit Reader(std::unique_ptr<Db> db);
  std::unique_ptr<Db> db_;
  std::string version_;
};

}  // namespace deskpulse::catalog
