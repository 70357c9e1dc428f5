#include "collector/catalog/builder.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "collector/catalog/sources.h"
#include "collector/store/sqlite/database.h"
#include "deskpulse/common/catalog.h"
#include "deskpulse/common/hex.h"

namespace deskpulse::catalog {

namespace fs = std::filesystem;
using collector::Database;
using collector::Transaction;

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE sources(
  source TEXT PRIMARY KEY, package TEXT NOT NULL, package_version TEXT NOT NULL,
  source_version TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
  entries INTEGER NOT NULL) WITHOUT ROWID;
-- hwdata usb.ids: product_id -1 names the vendor.
CREATE TABLE usb_names(
  vendor_id INTEGER NOT NULL, product_id INTEGER NOT NULL, name TEXT NOT NULL,
  source TEXT NOT NULL REFERENCES sources(source),
  PRIMARY KEY(vendor_id, product_id)) WITHOUT ROWID;
CREATE TABLE sane_scanners(
  vendor_id INTEGER NOT NULL, product_id INTEGER NOT NULL, models TEXT NOT NULL,
  source TEXT NOT NULL REFERENCES sources(source),
  PRIMARY KEY(vendor_id, product_id)) WITHOUT ROWID;
CREATE TABLE ccid_readers(
  vendor_id INTEGER NOT NULL, product_id INTEGER NOT NULL, name TEXT NOT NULL,
  source TEXT NOT NULL REFERENCES sources(source),
  PRIMARY KEY(vendor_id, product_id)) WITHOUT ROWID;
-- OpenPrinting: rating perfectly / mostly / partially / paperweight (rank 0..3).
CREATE TABLE printers(
  foomatic_id TEXT PRIMARY KEY, make TEXT NOT NULL, model TEXT NOT NULL,
  rating TEXT NOT NULL, rating_rank INTEGER NOT NULL, driver TEXT NOT NULL,
  ieee1284 TEXT NOT NULL, source TEXT NOT NULL REFERENCES sources(source)) WITHOUT ROWID;
-- Matching keys (catalog::PrinterKey) of each printer: its make and model, and
-- the MFG/MDL of its recorded IEEE-1284 ids (by_ieee1284 = 1).
CREATE TABLE printer_keys(
  make_key TEXT NOT NULL, model_key TEXT NOT NULL, by_ieee1284 INTEGER NOT NULL,
  foomatic_id TEXT NOT NULL REFERENCES printers(foomatic_id),
  PRIMARY KEY(make_key, model_key, by_ieee1284, foomatic_id)) WITHOUT ROWID;
-- The kernel's USB match table; NULL matches anything.
CREATE TABLE kernel_usb_aliases(
  vendor_id INTEGER, product_id INTEGER,
  device_class INTEGER, device_subclass INTEGER, device_protocol INTEGER,
  interface_class INTEGER, interface_subclass INTEGER, interface_protocol INTEGER,
  module TEXT NOT NULL, builtin INTEGER NOT NULL,
  source TEXT NOT NULL REFERENCES sources(source));
CREATE INDEX kernel_usb_aliases_by_vendor ON kernel_usb_aliases(vendor_id);
)sql";

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Add(std::string_view data) { EVP_DigestUpdate(ctx_, data.data(), data.size()); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return HexEncode(md, len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// The package that installed `path` among `candidates`, from dpkg's file lists.
void FindOwner(const BuildOptions& o, const std::map<std::string, std::string>& installed,
               const std::string& path, const std::vector<std::string>& candidates,
               SourceInfo* info) {
  std::vector<std::string> names = {path};
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (!ec) names.push_back(real.string());
  // Debian 12 merges /lib into /usr/lib, but dpkg records the path as shipped.
  for (const auto& n : std::vector<std::string>(names)) {
    if (n.starts_with("/usr/lib/")) names.push_back(n.substr(4));
  }
  for (const auto& pkg : candidates) {
    for (const auto& list : {pkg + ".list", pkg + ":amd64.list", pkg + ":all.list"}) {
      std::ifstream in(o.dpkg_dir + "/info/" + list);
      for (std::string line; in && std::getline(in, line);) {
        if (std::find(names.begin(), names.end(), line) != names.end()) {
          info->package = pkg;
          auto v = installed.find(pkg);
          info->package_version = v == installed.end() ? "" : v->second;
          return;
        }
      }
    }
  }
}

// The newest kernel under /lib/modules with a USB match table.
Result<std::string> NewestKernel() {
  std::vector<std::string> releases;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/lib/modules", ec)) {
    if (fs::exists(e.path() / "modules.alias")) releases.push_back(e.path().filename());
  }
  if (releases.empty()) {
    return NotFound(
        "no kernel with a modules.alias under /lib/modules (install linux-image-amd64 "
        "or pass --kernel-modules DIR)");
  }
  std::sort(releases.begin(), releases.end(), [](const std::string& a, const std::string& b) {
    return ::strverscmp(a.c_str(), b.c_str()) < 0;
  });
  return "/lib/modules/" + releases.back();
}

}  // namespace

Result<BuildSummary> BuildCatalog(const BuildOptions& o) {
  if (o.out.empty()) return InvalidArgument("--out: the catalog file to write is required");
  std::map<std::string, std::string> installed;
  {
    std::ifstream status(o.dpkg_dir + "/status");
    if (status) installed = ParseDpkgStatus(status);
  }
  BuildSummary summary;
  auto add_source = [&](std::string name, const std::string& path,
                        const std::vector<std::string>& packages) -> SourceInfo& {
    SourceInfo s;
    s.source = std::move(name);
    s.path = path;
    FindOwner(o, installed, path, packages, &s);
    summary.sources.push_back(std::move(s));
    return summary.sources.back();
  };

  // usb.ids
  DP_ASSIGN_OR_RETURN(std::string usb_text, ReadFile(o.usb_ids));
  std::string usb_version;
  std::istringstream usb_in(usb_text);
  DP_ASSIGN_OR_RETURN(auto usb_names, ParseUsbIds(usb_in, o.usb_ids, &usb_version));
  {
    auto& s = add_source("usb.ids", o.usb_ids, {"usb.ids", "hwdata"});
    Sha256 h;
    h.Add(usb_text);
    s.sha256 = h.Hex();
    s.source_version = usb_version;
    s.entries = static_cast<std::int64_t>(usb_names.size());
  }

  // SANE
  DP_ASSIGN_OR_RETURN(std::string sane_text, ReadFile(o.sane_hwdb));
  std::istringstream sane_in(sane_text);
  DP_ASSIGN_OR_RETURN(auto scanners, ParseSaneHwdb(sane_in, o.sane_hwdb));
  {
    auto& s = add_source("sane", o.sane_hwdb, {"libsane1", "libsane-common"});
    Sha256 h;
    h.Add(sane_text);
    s.sha256 = h.Hex();
    s.entries = static_cast<std::int64_t>(scanners.size());
  }

  // OpenPrinting / foomatic: every printer XML, in name order.
  std::vector<std::string> printer_files;
  {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(o.foomatic_printers, ec)) {
      if (e.path().extension() == ".xml") printer_files.push_back(e.path().filename());
    }
    if (ec) return NotFound("cannot list " + o.foomatic_printers + ": " + ec.message());
    if (printer_files.empty()) return NotFound(o.foomatic_printers + " has no printer XML files");
    std::sort(printer_files.begin(), printer_files.end());
  }
  std::vector<PrinterEntry> printers;
  {
    auto& s = add_source("foomatic", o.foomatic_printers, {"foomatic-db"});
    Sha256 h;
    for (const auto& name : printer_files) {
      const std::string path = o.foomatic_printers + "/" + name;
      DP_ASSIGN_OR_RETURN(std::string xml, ReadFile(path));
      h.Add(name);
      h.Add(std::string_view("\0", 1));
      h.Add(xml);
      DP_ASSIGN_OR_RETURN(auto p, ParseFoomaticPrinter(xml, path));
      if (p) {
        // The file name is the id: the XML's own id attribute has copy-paste
        // slips (Samsung-CLX-3185.xml says "Samsung-CLP-325").
        p->foomatic_id = fs::path(name).stem();
        printers.push_back(std::move(*p));
      } else {
        ++summary.printers_unrated;
      }
    }
    s.sha256 = h.Hex();
    s.entries = static_cast<std::int64_t>(printers.size());
    // The directory itself is not in dpkg's lists under every layout; a file is.
    if (s.package.empty()) {
      FindOwner(o, installed, o.foomatic_printers + "/" + printer_files.front(), {"foomatic-db"},
                &s);
    }
  }

  // libccid
  DP_ASSIGN_OR_RETURN(std::string plist, ReadFile(o.ccid_plist));
  DP_ASSIGN_OR_RETURN(auto readers, ParseCcidInfoPlist(plist, o.ccid_plist));
  {
    auto& s = add_source("ccid", o.ccid_plist, {"libccid"});
    Sha256 h;
    h.Add(plist);
    s.sha256 = h.Hex();
    s.entries = static_cast<std::int64_t>(readers.size());
  }

  // Kernel
  std::string kernel_dir = o.kernel_modules;
  if (kernel_dir.empty()) {
    DP_ASSIGN_OR_RETURN(kernel_dir, NewestKernel());
  }
  const std::string release = fs::path(kernel_dir).filename();
  DP_ASSIGN_OR_RETURN(std::string alias_text, ReadFile(kernel_dir + "/modules.alias"));
  std::istringstream alias_in(alias_text);
  DP_ASSIGN_OR_RETURN(auto aliases, ParseModulesAlias(alias_in, kernel_dir + "/modules.alias"));
  std::string builtin_text;
  if (fs::exists(kernel_dir + "/modules.builtin.modinfo")) {
    DP_ASSIGN_OR_RETURN(builtin_text, ReadFile(kernel_dir + "/modules.builtin.modinfo"));
  }
  const auto builtin = ParseBuiltinModinfo(builtin_text);
  {
    auto& s = add_source("kernel", kernel_dir + "/modules.alias", {"linux-image-" + release});
    if (s.package.empty()) {
      // modules.alias is made by depmod at install time; the package ships modules.order.
      FindOwner(o, installed, kernel_dir + "/modules.order", {"linux-image-" + release}, &s);
    }
    Sha256 h;
    h.Add(alias_text);
    h.Add(builtin_text);
    s.sha256 = h.Hex();
    s.source_version = release;
    s.entries = static_cast<std::int64_t>(aliases.size() + builtin.size());
  }
  for (auto& s : summary.sources) {
    if (s.source_version.empty()) s.source_version = s.package_version;
  }

  {
    Sha256 h;
    for (const auto& s : summary.sources) h.Add(s.source + "\n" + s.sha256 + "\n");
    summary.catalog_version = std::to_string(kSchemaVersion) + "-" + h.Hex().substr(0, 16);
  }

  // Write into a temporary file beside the target, then rename it into place.
  const std::string tmp = o.out + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  struct RemoveOnFailure {
    const std::string& path;
    bool done = false;
    ~RemoveOnFailure() {
      std::error_code ignored;
      if (!done) fs::remove(path, ignored);
    }
  } cleanup{tmp};
  {
    DP_ASSIGN_OR_RETURN(auto db, Database::Open(tmp, /*read_only=*/false));
    DP_RETURN_IF_ERROR(db->Exec("PRAGMA page_size=4096"));
    DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db.get()));
    DP_RETURN_IF_ERROR(db->Exec(kSchema));
    DP_ASSIGN_OR_RETURN(auto meta, db->Prepare("INSERT INTO meta VALUES(?, ?)"));
    DP_RETURN_IF_ERROR(
        meta.Bind(1, "schema_version").Bind(2, std::to_string(kSchemaVersion)).Run());
    DP_RETURN_IF_ERROR(meta.Bind(1, "catalog_version").Bind(2, summary.catalog_version).Run());
    DP_ASSIGN_OR_RETURN(auto src, db->Prepare("INSERT INTO sources VALUES(?, ?, ?, ?, ?, ?, ?)"));
    for (const auto& s : summary.sources) {
      DP_RETURN_IF_ERROR(src.Bind(1, s.source)
                             .Bind(2, s.package)
                             .Bind(3, s.package_version)
                             .Bind(4, s.source_version)
                             .Bind(5, s.path)
                             .Bind(6, s.sha256)
                             .Bind(7, s.entries)
                             .Run());
    }
    DP_ASSIGN_OR_RETURN(auto names,
                        db->Prepare("INSERT INTO usb_names VALUES(?, ?, ?, 'usb.ids')"));
    for (const auto& n : usb_names) {
      DP_RETURN_IF_ERROR(names.Bind(1, std::int64_t{n.vendor_id})
                             .Bind(2, std::int64_t{n.product_id})
                             .Bind(3, n.name)
                             .Run());
    }
    for (const auto& [sql, list] :
         {std::pair{"INSERT INTO sane_scanners VALUES(?, ?, ?, 'sane')", &scanners},
          std::pair{"INSERT INTO ccid_readers VALUES(?, ?, ?, 'ccid')", &readers}}) {
      DP_ASSIGN_OR_RETURN(auto ids, db->Prepare(sql));
      for (const auto& e : *list) {
        DP_RETURN_IF_ERROR(ids.Bind(1, std::int64_t{e.vendor_id})
                               .Bind(2, std::int64_t{e.product_id})
                               .Bind(3, e.name)
                               .Run());
      }
    }
    DP_ASSIGN_OR_RETURN(
        auto pst, db->Prepare("INSERT INTO printers VALUES(?, ?, ?, ?, ?, ?, ?, 'foomatic')"));
    DP_ASSIGN_OR_RETURN(auto kst,
                        db->Prepare("INSERT OR IGNORE INTO printer_keys VALUES(?, ?, ?, ?)"));
    for (const auto& p : printers) {
      DP_RETURN_IF_ERROR(pst.Bind(1, p.foomatic_id)
                             .Bind(2, p.make)
                             .Bind(3, p.model)
                             .Bind(4, std::string_view(RatingName(p.rating)))
                             .Bind(5, std::int64_t{static_cast<int>(p.rating)})
                             .Bind(6, p.driver)
                             .Bind(7, p.ieee1284_ids.empty() ? "" : p.ieee1284_ids.front())
                             .Run());
      const PrinterKey by_name = PrinterKeyFromName(p.make, p.model);
      DP_RETURN_IF_ERROR(kst.Bind(1, by_name.make)
                             .Bind(2, by_name.model)
                             .Bind(3, std::int64_t{0})
                             .Bind(4, p.foomatic_id)
                             .Run());
      for (const auto& k : p.ieee1284_keys) {
        DP_RETURN_IF_ERROR(kst.Bind(1, k.make)
                               .Bind(2, k.model)
                               .Bind(3, std::int64_t{1})
                               .Bind(4, p.foomatic_id)
                               .Run());
      }
    }
    DP_ASSIGN_OR_RETURN(
        auto ast,
        db->Prepare(
            "INSERT INTO kernel_usb_aliases VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'kernel')"));
    auto insert_alias = [&](const UsbAlias& a, bool is_builtin) {
      auto opt = [&](int i, const auto& v) {
        if (v) {
          ast.Bind(i, std::int64_t{*v});
        } else {
          ast.BindNull(i);
        }
      };
      opt(1, a.vendor_id);
      opt(2, a.product_id);
      opt(3, a.device_class);
      opt(4, a.device_subclass);
      opt(5, a.device_protocol);
      opt(6, a.interface_class);
      opt(7, a.interface_subclass);
      opt(8, a.interface_protocol);
      return ast.Bind(9, a.module).Bind(10, std::int64_t{is_builtin}).Run();
    };
    for (const auto& a : aliases) DP_RETURN_IF_ERROR(insert_alias(a, false));
    for (const auto& a : builtin) DP_RETURN_IF_ERROR(insert_alias(a, true));
    DP_RETURN_IF_ERROR(tx.Commit());
    DP_RETURN_IF_ERROR(db->Exec("VACUUM"));
  }
  fs::rename(tmp, o.out, ec);
  cleanup.done = !ec;
  if (ec) return IoError("cannot move the catalog into place at " + o.out + ": " + ec.message());
  return summary;
}

}  // namespace deskpulse::catalog
