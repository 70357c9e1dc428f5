#include "deskpulse/common/catalog.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <utility>

namespace deskpulse::catalog {

namespace {

constexpr std::array<const char*, 4> kVerdictNames = {"unknown", "supported", "partial",
                                                      "unsupported"};
constexpr std::array<const char*, 4> kRatingNames = {"perfectly", "mostly", "partially",
                                                     "paperweight"};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string AlnumKey(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// Printer makers appear under several names across IEEE-1284 ids and
// OpenPrinting; fold the common ones.
std::string FoldMake(std::string key) {
  static constexpr std::pair<const char*, const char*> kAliases[] = {
      {"hewlettpackard", "hp"},
      {"hpinc", "hp"},
      {"kyoceramita", "kyocera"},
      {"konicaminolta", "minolta"},
      {"konica", "minolta"},
      {"fujixerox", "xerox"},
      {"oki", "oki"},
      {"okidata", "oki"},
      {"lexmarkinternational", "lexmark"},
      {"brotherindustries", "brother"},
      {"seikoepson", "epson"},
      {"canoninc", "canon"},
  };
  for (const auto& [from, to] : kAliases) {
    if (key == from) return to;
  }
  return key;
}

PrinterKey MakeKey(std::string_view make, std::string_view model) {
  PrinterKey k{FoldMake(AlnumKey(make)), AlnumKey(model)};
  // "MDL:HP LaserJet 1020" next to "MFG:Hewlett-Packard": drop the maker's
  // name (in either spelling) from the model.
  for (const std::string& prefix : {k.make, AlnumKey(make)}) {
    if (!prefix.empty() && k.model.size() > prefix.size() && k.model.starts_with(prefix)) {
      k.model.erase(0, prefix.size());
      break;
    }
  }
  return k;
}

std::optional<std::uint32_t> Hex(std::string_view s, std::size_t digits) {
  if (s.size() != digits) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                              : -1;
    if (d < 0) return std::nullopt;
    v = v * 16 + static_cast<std::uint32_t>(d);
  }
  return v;
}

std::string IdString(const Observation& o) {
  if (!o.vendor_id) return "no USB id";
  char buf[16];
  if (o.product_id) {
    std::snprintf(buf, sizeof buf, "%04x:%04x", *o.vendor_id, *o.product_id);
  } else {
    std::snprintf(buf, sizeof buf, "%04x", *o.vendor_id);
  }
  return buf;
}

std::string ClassName(std::uint8_t c) {
  switch (c) {
    case 0x01:
      return "audio";
    case 0x02:
      return "communications";
    case 0x03:
      return "HID";
    case 0x06:
      return "still image";
    case 0x07:
      return "printer";
    case 0x08:
      return "mass storage";
    case 0x09:
      return "hub";
    case 0x0a:
      return "CDC data";
    case 0x0b:
      return "smart card";
    case 0x0e:
      return "video";
    case 0xe0:
      return "wireless";
    case 0xef:
      return "miscellaneous";
    case 0xff:
      return "vendor-specific";
    default:
      break;
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "class %02x", c);
  return buf;
}

bool HasInterfaceClass(const Observation& o, std::uint8_t c) {
  return std::find(o.interface_classes.begin(), o.interface_classes.end(), c) !=
         o.interface_classes.end();
}

std::string JoinModules(const std::vector<std::string>& m) {
  std::string out;
  for (const auto& s : m) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// What the endpoint saw that matters next to a verdict: no kernel driver bound
// where the catalog names one (on the endpoint itself; a redirected device is
// driven inside the session instead).
std::string DriverNote(const Observation& o, const std::vector<std::string>& modules) {
  if (!o.drivers_observed || o.redirected || modules.empty()) return {};
  auto bound = [&](std::string m) {
    // sysfs names drivers with '-' or '_' as the module was written; modules.alias with '_'.
    for (std::string d : o.drivers) {
      std::replace(d.begin(), d.end(), '-', '_');
      std::replace(m.begin(), m.end(), '-', '_');
      if (d == m) return true;
    }
    return false;
  };
  if (std::any_of(modules.begin(), modules.end(), bound)) return {};
  const std::string names = JoinModules(modules);
  if (o.drivers.empty() || (o.drivers.size() == 1 && o.drivers[0] == "usbfs")) {
    return "; no driver is bound on the endpoint although " + names +
           (modules.size() == 1 ? " matches" : " match") +
           " it (module missing, blacklisted or not loaded)";
  }
  return "; bound to " + JoinModules(o.drivers) + " instead of " + names;
}

}  // namespace

const char* VerdictName(Verdict v) { return kVerdictNames[static_cast<std::size_t>(v)]; }

std::optional<Verdict> VerdictFromName(std::string_view name) {
  for (std::size_t i = 0; i < kVerdictNames.size(); ++i) {
    if (name == kVerdictNames[i]) return static_cast<Verdict>(i);
  }
  return std::nullopt;
}

const char* RatingName(PrinterRating r) { return kRatingNames[static_cast<std::size_t>(r)]; }

std::optional<PrinterRating> RatingFromFoomaticCode(std::string_view code) {
  if (code == "A") return PrinterRating::kPerfectly;
  if (code == "B") return PrinterRating::kMostly;
  if (code == "D") return PrinterRating::kPartially;
  if (code == "F") return PrinterRating::kPaperweight;
  return std::nullopt;
}

std::optional<PrinterRating> RatingFromName(std::string_view name) {
  for (std::size_t i = 0; i < kRatingNames.size(); ++i) {
    if (name == kRatingNames[i]) return static_cast<PrinterRating>(i);
  }
  return std::nullopt;
}

PrinterKey PrinterKeyFromName(std::string_view make, std::string_view model) {
  return MakeKey(make, model);
}

std::string Ieee1284Field(std::string_view device_id, std::string_view key,
                          std::string_view long_key) {
  std::size_t pos = 0;
  while (pos < device_id.size()) {
    std::size_t end = device_id.find(';', pos);
    if (end == std::string_view::npos) end = device_id.size();
    const std::string_view field = device_id.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name = Lower(field.substr(0, colon));
    name.erase(0, name.find_first_not_of(' '));
    if (name == Lower(key) || (!long_key.empty() && name == Lower(long_key))) {
      std::string_view v = field.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
      return std::string(v);
    }
  }
  return {};
}

std::optional<PrinterKey> PrinterKeyFromIeee1284(std::string_view device_id) {
  const std::string make = Ieee1284Field(device_id, "MFG", "MANUFACTURER");
  const std::string model = Ieee1284Field(device_id, "MDL", "MODEL");
  if (AlnumKey(make).empty() || AlnumKey(model).empty()) return std::nullopt;
  return MakeKey(make, model);
}

std::optional<UsbAlias> ParseUsbAlias(std::string_view p, std::string_view module) {
  if (!p.starts_with("usb:")) return std::nullopt;
  p.remove_prefix(4);
  UsbAlias a;
  a.module = std::string(module);
  // Fields in order, each a marker then a value up to the next marker; '*' is a wildcard.
  struct Field {
    const char* marker;
    std::size_t digits;
    int slot;
  };
  static constexpr Field kFields[] = {{"v", 4, 0},   {"p", 4, 1},  {"d", 0, -1}, {"dc", 2, 2},
                                      {"dsc", 2, 3}, {"dp", 2, 4}, {"ic", 2, 5}, {"isc", 2, 6},
                                      {"ip", 2, 7},  {"in", 0, -1}};
  std::size_t pos = 0;
  for (std::size_t i = 0; i < std::size(kFields); ++i) {
    const std::string_view marker = kFields[i].marker;
    if (p.substr(pos, marker.size()) != marker) return std::nullopt;
    pos += marker.size();
    std::size_t end = p.size();
    if (i + 1 < std::size(kFields)) {
      // The next marker begins after this value: values are hex digits, '*'
      // or a bcdDevice range pattern, never lower-case marker letters.
      const std::string_view next = kFields[i + 1].marker;
      end = p.find(next, pos);
      if (end == std::string_view::npos) return std::nullopt;
    }
    const std::string_view value = p.substr(pos, end - pos);
    pos = end;
    if (kFields[i].slot < 0 || value == "*") continue;
    const auto v = Hex(value, kFields[i].digits);
    if (!v) return std::nullopt;
    switch (kFields[i].slot) {
      case 0:
        a.vendor_id = static_cast<std::uint16_t>(*v);
        break;
      case 1:
        a.product_id = static_cast<std::uint16_t>(*v);
        break;
      case 2:
        a.device_class = static_cast<std::uint8_t>(*v);
        break;
      case 3:
        a.device_subclass = static_cast<std::uint8_t>(*v);
        break;
      case 4:
        a.device_protocol = static_cast<std::uint8_t>(*v);
        break;
      case 5:
        a.interface_class = static_cast<std::uint8_t>(*v);
        break;
      case 6:
        a.interface_subclass = static_cast<std::uint8_t>(*v);
        break;
      case 7:
        a.interface_protocol = static_cast<std::uint8_t>(*v);
        break;
      default:
        break;
    }
  }
  return a;
}

bool AliasMatches(const UsbAlias& a, const Observation& o) {
  if (a.vendor_id && (!o.vendor_id || *a.vendor_id != *o.vendor_id)) return false;
  if (a.product_id && (!o.product_id || *a.product_id != *o.product_id)) return false;
  // Only the device class is observed: its sub-class and protocol are not checked.
  if (a.device_class && *a.device_class != o.device_class) return false;
  if (a.interface_class && !HasInterfaceClass(o, *a.interface_class)) return false;
  // An alias with no ids and no class at all would claim every device.
  return a.vendor_id || a.device_class || a.interface_class;
}

Classification Classify(const Observation& o, const Facts& f) {
  Classification c;
  const std::string id = IdString(o);
  if (!f.product_name.empty()) {
    c.model = f.vendor_name.empty() ? f.product_name : f.vendor_name + " " + f.product_name;
  }

  if (f.printer) {
    const auto& p = *f.printer;
    c.source = "foomatic";
    c.model = p.make + " " + p.model;
    c.driver = p.driver;
    switch (p.rating) {
      case PrinterRating::kPerfectly:
      case PrinterRating::kMostly:
        c.verdict = Verdict::kSupported;
        break;
      case PrinterRating::kPartially:
        c.verdict = Verdict::kPartial;
        break;
      case PrinterRating::kPaperweight:
        c.verdict = Verdict::kUnsupported;
        break;
    }
    c.detail = "OpenPrinting rates the " + c.model + " '" + RatingName(p.rating) + "'" +
               (p.driver.empty() ? std::string() : " with driver " + p.driver) +
               (p.by_ieee1284 ? " (matched by its IEEE-1284 id)" : " (matched by make and model)");
    return c;
  }
  // A user-space driver's own list names the device.
  auto listed = [&](const char* source, const char* driver, const char* who,
                    const std::string& model, const char* what) {
    c.verdict = Verdict::kSupported;
    c.source = source;
    c.driver = driver;
    c.model = model;
    c.detail = std::string(who) + " supports " + what + " " + id + " (" + model + ")";
    return c;
  };
  if (f.sane_models) return listed("sane", "sane", "SANE", *f.sane_models, "scanner");
  if (f.ccid_reader) {
    return listed("ccid", "libccid", "libccid", *f.ccid_reader, "smart-card reader");
  }
  if (!f.kernel_by_id.empty()) {
    c.verdict = Verdict::kSupported;
    c.source = "kernel";
    c.driver = f.kernel_by_id.front();
    c.detail = "kernel driver " + JoinModules(f.kernel_by_id) + " matches " + id +
               DriverNote(o, f.kernel_by_id);
    return c;
  }
  if (HasInterfaceClass(o, 0x0b) || o.device_class == 0x0b) {
    // libccid's class driver takes any CCID-class reader, untested by its authors.
    c.verdict = Verdict::kPartial;
    c.source = "ccid";
    c.driver = "libccid";
    c.detail = "smart-card reader " + id +
               " is not in libccid's supported list; only its generic CCID class driver may "
               "work";
    return c;
  }
  const bool vendor_class_only = std::all_of(o.interface_classes.begin(), o.interface_classes.end(),
                                             [](std::uint8_t k) { return k == 0xff; });
  // A document scanner is SANE's to support; a barcode scanner is a keyboard.
  const std::string product = Lower(f.product_name);
  if (vendor_class_only && product.find("scan") != std::string::npos &&
      product.find("barcode") == std::string::npos) {
    c.verdict = Verdict::kUnsupported;
    c.source = "sane";
    c.detail = "scanner " + id + " (" + c.model + ") is not among the scanners SANE supports";
    return c;
  }
  if (!f.kernel_by_class.empty()) {
    c.verdict = Verdict::kSupported;
    c.source = "kernel";
    c.driver = f.kernel_by_class.front();
    std::string classes;
    for (std::uint8_t k : o.interface_classes) {
      if (k != 0xff) classes += (classes.empty() ? "" : ", ") + ClassName(k);
    }
    if (classes.empty()) classes = ClassName(o.device_class);
    c.detail = "kernel class driver " + JoinModules(f.kernel_by_class) + " for " + classes +
               " devices" + DriverNote(o, f.kernel_by_class);
    if (!o.ieee1284_id.empty()) {
      c.detail +=
          "; OpenPrinting has no entry for '" + Ieee1284Field(o.ieee1284_id, "MDL", "MODEL") + "'";
    }
    return c;
  }
  c.detail =
      "no catalog source knows " + id + (c.model.empty() ? std::string() : " (" + c.model + ")");
  if (!o.ieee1284_id.empty()) c.detail += " or printer '" + o.ieee1284_id + "'";
  return c;
}

Observation ObservationOf(const v1::PeripheralState& s) {
  Observation o;
  if (s.vendor_id() != 0 || s.product_id() != 0) {
    o.vendor_id = static_cast<std::uint16_t>(s.vendor_id());
    o.product_id = static_cast<std::uint16_t>(s.product_id());
  }
  o.device_class = static_cast<std::uint8_t>(s.device_class());
  for (std::uint32_t c : s.interface_classes()) {
    o.interface_classes.push_back(static_cast<std::uint8_t>(c));
  }
  o.ieee1284_id = s.ieee1284_id();
  for (const auto& d : s.drivers()) {
    // "usbfs(pcscd)": usbfs held by a process.
    o.drivers.push_back(d.substr(0, d.find('(')));
  }
  o.redirected = s.redirected();
  return o;
}

void VerdictToProto(const Classification& c, const std::string& catalog_version,
                    v1::CatalogVerdict* out) {
  switch (c.verdict) {
    case Verdict::kSupported:
      out->set_verdict(v1::COMPATIBILITY_VERDICT_SUPPORTED);
      break;
    case Verdict::kPartial:
      out->set_verdict(v1::COMPATIBILITY_VERDICT_PARTIAL);
      break;
    case Verdict::kUnsupported:
      out->set_verdict(v1::COMPATIBILITY_VERDICT_UNSUPPORTED);
      break;
    case Verdict::kUnknown:
      out->set_verdict(v1::COMPATIBILITY_VERDICT_UNKNOWN);
      break;
  }
  out->set_source(c.source);
  out->set_catalog_version(catalog_version);
  out->set_model(c.model);
  out->set_driver(c.driver);
  out->set_detail(c.detail);
}

Classification VerdictFromProto(const v1::CatalogVerdict& v) {
  Classification c;
  switch (v.verdict()) {
    case v1::COMPATIBILITY_VERDICT_SUPPORTED:
      c.verdict = Verdict::kSupported;
      break;
    case v1::COMPATIBILITY_VERDICT_PARTIAL:
      c.verdict = Verdict::kPartial;
      break;
    case v1::COMPATIBILITY_VERDICT_UNSUPPORTED:
      c.verdict = Verdict::kUnsupported;
      break;
    default:
      c.verdict = Verdict::kUnknown;
      break;
  }
  c.source = v.source();
  c.model = v.model();
  c.driver = v.driver();
  c.detail = v.detail();
  return c;
}

// ------------------------------------------------------------------ Reader

struct Reader::Db {
  const SqliteApi* api = nullptr;
  sqlite3* handle = nullptr;
  ~Db() {
    if (handle != nullptr) api->close_v2(handle);
  }

  Status Error(const std::string& what) const {
    return Status(Code::kDataLoss, what + ": " + api->errmsg(handle));
  }

  // Runs `sql` with the bound values and hands each row to `row`.
  template <typename Bind, typename Row>
  Status Query(const char* sql, Bind&& bind, Row&& row) {
    sqlite3_stmt* st = nullptr;
    if (api->prepare_v2(handle, sql, -1, &st, nullptr) != SQLITE_OK) {
      return Error("catalog query failed");
    }
    std::unique_ptr<sqlite3_stmt, decltype(api->finalize)> guard(st, api->finalize);
    bind(st);
    for (;;) {
      const int rc = api->step(st);
      if (rc == SQLITE_DONE) return Status::Ok();
      if (rc != SQLITE_ROW) return Error("catalog read failed");
      row(st);
    }
  }

  std::string Text(sqlite3_stmt* st, int col) const {
    const unsigned char* t = api->column_text(st, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  std::optional<std::int64_t> Int(sqlite3_stmt* st, int col) const {
    if (api->column_type(st, col) == SQLITE_NULL) return std::nullopt;
    return api->column_int64(st, col);
  }
};

Reader::Reader(std::unique_ptr<Db> db) : db_(std::move(db)) {}
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;
Reader::~Reader() = default;

Result<Reader> Reader::Open(const std::string& path, const SqliteApi& api) {
  auto db = std::make_unique<Db>();
  db->api = &api;
  if (api.open_v2(path.c_str(), &db->handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    const std::string why = db->handle ? api.errmsg(db->handle) : "out of memory";
    return Status(Code::kNotFound, "cannot open catalog " + path + ": " + why);
  }
  std::string schema, version;
  const Status s = db->Query(
      "SELECT key, value FROM meta WHERE key IN ('schema_version', 'catalog_version')",
      [](sqlite3_stmt*) {},
      [&](sqlite3_stmt* st) {
        (db->Text(st, 0) == "schema_version" ? schema : version) = db->Text(st, 1);
      });
  if (!s.ok()) return DataLoss(path + " is not a DeskPulse catalog (" + s.message() + ")");
  if (schema != std::to_string(kSchemaVersion)) {
    return DataLoss(path + " has catalog schema '" + schema + "', this program reads " +
                    std::to_string(kSchemaVersion) + "; rebuild it with deskpulse-catalog build");
  }
  Reader r(std::move(db));
  r.version_ = version;
  return r;
}

Result<Facts> Reader::Lookup(const Observation& o) {
  Facts f;
  Db& db = *db_;
  auto bind_ids = [&](sqlite3_stmt* st) {
    db.api->bind_int64(st, 1, o.vendor_id.value_or(0));
    db.api->bind_int64(st, 2, o.product_id.value_or(0));
  };
  if (o.vendor_id) {
    DP_RETURN_IF_ERROR(db.Query(
        "SELECT product_id, name FROM usb_names WHERE vendor_id=?1 AND product_id IN (-1, ?2)",
        bind_ids, [&](sqlite3_stmt* st) {
          (db.Int(st, 0).value_or(-1) < 0 ? f.vendor_name : f.product_name) = db.Text(st, 1);
        }));
    if (o.product_id) {
      DP_RETURN_IF_ERROR(
          db.Query("SELECT models FROM sane_scanners WHERE vendor_id=?1 AND product_id=?2",
                   bind_ids, [&](sqlite3_stmt* st) { f.sane_models = db.Text(st, 0); }));
      DP_RETURN_IF_ERROR(
          db.Query("SELECT name FROM ccid_readers WHERE vendor_id=?1 AND product_id=?2", bind_ids,
                   [&](sqlite3_stmt* st) { f.ccid_reader = db.Text(st, 0); }));
    }
  }

  auto alias_row = [&](sqlite3_stmt* st) {
    UsbAlias a;
    auto u16 = [&](int col) -> std::optional<std::uint16_t> {
      if (auto v = db.Int(st, col)) return static_cast<std::uint16_t>(*v);
      return std::nullopt;
    };
    auto u8 = [&](int col) -> std::optional<std::uint8_t> {
      if (auto v = db.Int(st, col)) return static_cast<std::uint8_t>(*v);
      return std::nullopt;
    };
    a.vendor_id = u16(0);
    a.product_id = u16(1);
    a.device_class = u8(2);
    a.interface_class = u8(3);
    a.module = db.Text(st, 4);
    if (!AliasMatches(a, o)) return;
    auto& list = a.vendor_id ? f.kernel_by_id : f.kernel_by_class;
    if (std::find(list.begin(), list.end(), a.module) == list.end()) list.push_back(a.module);
  };
  static constexpr const char* kAliasColumns =
      "SELECT vendor_id, product_id, device_class, interface_class, module "
      "FROM kernel_usb_aliases ";
  if (o.vendor_id) {
    DP_RETURN_IF_ERROR(
        db.Query((std::string(kAliasColumns) + "WHERE vendor_id=?1 ORDER BY module").c_str(),
                 bind_ids, alias_row));
  }
  DP_RETURN_IF_ERROR(
      db.Query((std::string(kAliasColumns) + "WHERE vendor_id IS NULL ORDER BY module").c_str(),
               [](sqlite3_stmt*) {}, alias_row));

  if (auto key = PrinterKeyFromIeee1284(o.ieee1284_id)) {
    // Prefer a match on OpenPrinting's recorded IEEE-1284 id over one on its
    // make and model, then the better rating, then the id for a stable answer.
    DP_RETURN_IF_ERROR(db.Query(
        "SELECT p.foomatic_id, p.make, p.model, p.rating, p.driver, k.by_ieee1284 "
        "FROM printer_keys k JOIN printers p USING (foomatic_id) "
        "WHERE k.make_key=?1 AND k.model_key=?2 "
        "ORDER BY k.by_ieee1284 DESC, p.rating_rank, p.foomatic_id LIMIT 1",
        [&](sqlite3_stmt* st) {
          db.api->bind_text(st, 1, key->make.c_str(), -1, SQLITE_TRANSIENT);
          db.api->bind_text(st, 2, key->model.c_str(), -1, SQLITE_TRANSIENT);
        },
        [&](sqlite3_stmt* st) {
          Facts::Printer p;
          p.foomatic_id = db.Text(st, 0);
          p.make = db.Text(st, 1);
          p.model = db.Text(st, 2);
          p.rating = RatingFromName(db.Text(st, 3)).value_or(PrinterRating::kPerfectly);
          p.driver = db.Text(st, 4);
          p.by_ieee1284 = db.Int(st, 5).value_or(0) != 0;
          f.printer = std::move(p);
        }));
  }
  return f;
}

Result<std::vector<SourceRecord>> Reader::Sources() {
  std::vector<SourceRecord> out;
  Db& db = *db_;
  DP_RETURN_IF_ERROR(db.Query(
      "SELECT source, package, package_version, source_version, entries FROM sources "
      "ORDER BY source",
      [](sqlite3_stmt*) {},
      [&](sqlite3_stmt* st) {
        out.push_back({db.Text(st, 0), db.Text(st, 1), db.Text(st, 2), db.Text(st, 3),
                       db.Int(st, 4).value_or(0)});
      }));
  return out;
}

Result<Classification> Reader::Classify(const Observation& o) {
  DP_ASSIGN_OR_RETURN(Facts f, Lookup(o));
  return catalog::Classify(o, f);
}

}  // namespace deskpulse::catalog
