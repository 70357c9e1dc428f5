#include "collector/catalog/sources.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <pugixml.hpp>
#include <set>
#include <sstream>

namespace deskpulse::catalog {

namespace {

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::optional<std::uint32_t> ParseHex(std::string_view s) {
  if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2);
  if (!IsHex(s) || s.size() > 8) return std::nullopt;
  std::uint32_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, 16);
  return v;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

Status LineError(const std::string& origin, int line, const std::string& what) {
  return DataLoss(origin + ":" + std::to_string(line) + ": " + what);
}

Result<pugi::xml_document> LoadXml(const std::string& xml, const std::string& origin) {
  pugi::xml_document doc;
  const pugi::xml_parse_result r = doc.load_buffer(xml.data(), xml.size());
  if (!r) {
    return DataLoss(origin + ": not well-formed XML at byte " + std::to_string(r.offset) + ": " +
                    r.description());
  }
  return doc;
}

}  // namespace

Result<std::vector<UsbName>> ParseUsbIds(std::istream& in, const std::string& origin,
                                         std::string* version) {
  std::vector<UsbName> out;
  std::string line;
  int lineno = 0;
  std::optional<std::uint16_t> vendor;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("# Version:")) {
      *version = Trim(std::string_view(line).substr(10));
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("\t\t")) continue;  // an interface of the device above
    if (line[0] == '\t') {
      if (!vendor) return LineError(origin, lineno, "a device line before any vendor");
      const std::string_view rest = std::string_view(line).substr(1);
      if (rest.size() < 6 || !IsHex(rest.substr(0, 4))) {
        return LineError(origin, lineno, "expected '<tab>XXXX  name'");
      }
      out.push_back(
          {*vendor, static_cast<std::int32_t>(*ParseHex(rest.substr(0, 4))), Trim(rest.substr(4))});
      continue;
    }
    if (line.size() >= 6 && IsHex(std::string_view(line).substr(0, 4)) && line[4] == ' ') {
      vendor = static_cast<std::uint16_t>(*ParseHex(std::string_view(line).substr(0, 4)));
      out.push_back({*vendor, -1, Trim(std::string_view(line).substr(4))});
      continue;
    }
    break;  // "C 00  …": the class tables begin; device names are done
  }
  if (out.empty()) return DataLoss(origin + ": no vendors found");
  std::sort(out.begin(), out.end(), [](const UsbName& a, const UsbName& b) {
    return std::tie(a.vendor_id, a.product_id) < std::tie(b.vendor_id, b.product_id);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const UsbName& a, const UsbName& b) {
                          return a.vendor_id == b.vendor_id && a.product_id == b.product_id;
                        }),
            out.end());
  return out;
}

Result<std::vector<IdEntry>> ParseSaneHwdb(std::istream& in, const std::string& origin) {
  std::map<std::pair<std::uint16_t, std::uint16_t>, std::string> ids;
  std::string line, comment;
  std::vector<std::pair<std::uint16_t, std::uint16_t>> pending;  // match lines of this block
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.starts_with("#")) {
      comment = Trim(std::string_view(line).substr(1));
      continue;
    }
    if (line.starts_with("usb:v")) {
      // usb:vXXXXpYYYY*
      const std::string_view s(line);
      if (s.size() < 15 || s[9] != 'p' || !IsHex(s.substr(5, 4)) || !IsHex(s.substr(10, 4))) {
        return LineError(origin, lineno, "expected 'usb:vXXXXpYYYY*', got '" + line + "'");
      }
      pending.emplace_back(static_cast<std::uint16_t>(*ParseHex(s.substr(5, 4))),
                           static_cast<std::uint16_t>(*ParseHex(s.substr(10, 4))));
      continue;
    }
    if (Trim(line) == "libsane_matched=yes") {
      for (const auto& id : pending) {
        std::string& models = ids[id];
        if (models.find(comment) == std::string::npos) {
          models += (models.empty() ? "" : " | ") + comment;
        }
      }
      continue;
    }
    if (Trim(line).empty()) pending.clear();
  }
  if (ids.empty()) return DataLoss(origin + ": no libsane_matched entries found");
  std::vector<IdEntry> out;
  out.reserve(ids.size());
  for (auto& [id, models] : ids) out.push_back({id.first, id.second, std::move(models)});
  return out;
}

Result<std::vector<IdEntry>> ParseCcidInfoPlist(const std::string& xml, const std::string& origin) {
  DP_ASSIGN_OR_RETURN(pugi::xml_document doc, LoadXml(xml, origin));
  const pugi::xml_node dict = doc.child("plist").child("dict");
  if (!dict) return DataLoss(origin + ": no <plist><dict>");
  std::map<std::string, std::vector<std::string>> arrays;
  for (pugi::xml_node key = dict.child("key"); key; key = key.next_sibling("key")) {
    const pugi::xml_node value = key.next_sibling();
    if (std::string_view(value.name()) != "array") continue;
    auto& list = arrays[key.child_value()];
    for (pugi::xml_node s = value.child("string"); s; s = s.next_sibling("string")) {
      list.emplace_back(Trim(s.child_value()));
    }
  }
  const auto& vendors = arrays["ifdVendorID"];
  const auto& products = arrays["ifdProductID"];
  const auto& names = arrays["ifdFriendlyName"];
  if (vendors.empty()) return DataLoss(origin + ": no ifdVendorID array");
  if (vendors.size() != products.size() || vendors.size() != names.size()) {
    return DataLoss(origin + ": ifdVendorID, ifdProductID and ifdFriendlyName differ in length (" +
                    std::to_string(vendors.size()) + ", " + std::to_string(products.size()) + ", " +
                    std::to_string(names.size()) + ")");
  }
  std::map<std::pair<std::uint16_t, std::uint16_t>, std::string> ids;
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    const auto v = ParseHex(vendors[i]);
    const auto p = ParseHex(products[i]);
    if (!v || !p || *v > 0xffff || *p > 0xffff) {
      return DataLoss(origin + ": reader " + std::to_string(i) + " has a bad id '" + vendors[i] +
                      ":" + products[i] + "'");
    }
    ids.emplace(std::make_pair(static_cast<std::uint16_t>(*v), static_cast<std::uint16_t>(*p)),
                names[i]);
  }
  std::vector<IdEntry> out;
  out.reserve(ids.size());
  for (auto& [id, name] : ids) out.push_back({id.first, id.second, std::move(name)});
  return out;
}

Result<std::optional<PrinterEntry>> ParseFoomaticPrinter(const std::string& xml,
                                                         const std::string& origin) {
  DP_ASSIGN_OR_RETURN(pugi::xml_document doc, LoadXml(xml, origin));
  const pugi::xml_node printer = doc.child("printer");
  if (!printer) return DataLoss(origin + ": no <printer> element");
  PrinterEntry p;
  p.foomatic_id = printer.attribute("id").value();
  if (p.foomatic_id.starts_with("printer/")) p.foomatic_id.erase(0, 8);
  p.make = Trim(printer.child_value("make"));
  p.model = Trim(printer.child_value("model"));
  if (p.foomatic_id.empty() || p.make.empty() || p.model.empty()) {
    return DataLoss(origin + ": a printer needs an id, <make> and <model>");
  }
  const std::string code = Trim(printer.child_value("functionality"));
  const auto rating = RatingFromFoomaticCode(code);
  if (!rating) return std::optional<PrinterEntry>();
  p.rating = *rating;
  p.driver = Trim(printer.child_value("driver"));
  for (pugi::xml_node how : printer.child("autodetect").children()) {
    const std::string id = Trim(how.child_value("ieee1284"));
    if (!id.empty() &&
        std::find(p.ieee1284_ids.begin(), p.ieee1284_ids.end(), id) == p.ieee1284_ids.end()) {
      p.ieee1284_ids.push_back(id);
    }
    std::optional<PrinterKey> key;
    if (!id.empty()) key = PrinterKeyFromIeee1284(id);
    const std::string mfg = Trim(how.child_value("manufacturer"));
    const std::string mdl = Trim(how.child_value("model"));
    for (const auto& k : {key, mfg.empty() || mdl.empty()
                                   ? std::optional<PrinterKey>()
                                   : std::optional<PrinterKey>(PrinterKeyFromName(mfg, mdl))}) {
      if (k && !k->make.empty() && !k->model.empty() &&
          std::find(p.ieee1284_keys.begin(), p.ieee1284_keys.end(), *k) == p.ieee1284_keys.end()) {
        p.ieee1284_keys.push_back(*k);
      }
    }
  }
  return std::optional<PrinterEntry>(std::move(p));
}

Result<std::vector<UsbAlias>> ParseModulesAlias(std::istream& in, const std::string& origin) {
  std::vector<UsbAlias> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string keyword, pattern, module;
    words >> keyword >> pattern >> module;
    if (keyword != "alias" || module.empty()) {
      return LineError(origin, lineno, "expected 'alias <pattern> <module>'");
    }
    if (!pattern.starts_with("usb:")) continue;
    if (auto a = ParseUsbAlias(pattern, module)) out.push_back(std::move(*a));
  }
  if (out.empty()) return DataLoss(origin + ": no USB aliases found");
  return out;
}

std::vector<UsbAlias> ParseBuiltinModinfo(std::string_view data) {
  std::vector<UsbAlias> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t end = data.find('\0', pos);
    if (end == std::string_view::npos) end = data.size();
    const std::string_view entry = data.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t dot = entry.find(".alias=usb:");
    if (dot == std::string_view::npos) continue;
    if (auto a = ParseUsbAlias(entry.substr(dot + 7), entry.substr(0, dot))) {
      out.push_back(std::move(*a));
    }
  }
  return out;
}

std::map<std::string, std::string> ParseDpkgStatus(std::istream& in) {
  std::map<std::string, std::string> out;
  std::string line, package, version, status;
  auto flush = [&] {
    if (!package.empty() && status.ends_with(" installed")) out[package] = version;
    package.clear();
    version.clear();
    status.clear();
  };
  while (std::getline(in, line)) {
    if (line.empty()) {
      flush();
    } else if (line.starts_with("Package: ")) {
      package = Trim(std::string_view(line).substr(9));
    } else if (line.starts_with("Version: ")) {
      version = Trim(std::string_view(line).substr(9));
    } else if (line.starts_with("Status: ")) {
      status = Trim(std::string_view(line).substr(8));
    }
  }
  flush();
  return out;
}

}  // namespace deskpulse::catalog
