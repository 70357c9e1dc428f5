#include "collector/catalog/lookup.h"

#include <fmt/format.h>

#include <charconv>
#include <sstream>

namespace deskpulse::catalog {

namespace {

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string part; std::getline(in, part, ',');) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

Result<std::uint32_t> HexArg(std::string_view s, std::uint32_t max, const std::string& what) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v > max) {
    return InvalidArgument(what + ": '" + std::string(s) + "' is not a hex number up to " +
                           fmt::format("{:x}", max));
  }
  return v;
}

std::string SourceLabel(const std::vector<SourceRecord>& sources, const std::string& name) {
  for (const auto& s : sources) {
    if (s.source == name) {
      return s.package.empty() ? name
                               : fmt::format("{} ({} {})", name, s.package, s.package_version);
    }
  }
  return name;
}

}  // namespace

Result<Observation> ObservationFromFlags(const std::string& id, const LookupFlags& flags) {
  Observation o;
  if (id.empty() || id == "-") {
    if (flags.ieee1284.empty()) {
      return InvalidArgument("give a VID:PID, or '-' with --ieee1284 for a printer");
    }
  } else {
    const auto colon = id.find(':');
    if (colon == std::string::npos || colon != 4 || id.size() != 9) {
      return InvalidArgument("VID:PID '" + id +
                             "' is not two 4-digit hex numbers (e.g. 03f0:2b17)");
    }
    DP_ASSIGN_OR_RETURN(auto v, HexArg(std::string_view(id).substr(0, 4), 0xffff, "VID:PID"));
    DP_ASSIGN_OR_RETURN(auto p, HexArg(std::string_view(id).substr(5), 0xffff, "VID:PID"));
    o.vendor_id = static_cast<std::uint16_t>(v);
    o.product_id = static_cast<std::uint16_t>(p);
  }
  o.ieee1284_id = flags.ieee1284;
  if (!flags.device_class.empty()) {
    DP_ASSIGN_OR_RETURN(auto c, HexArg(flags.device_class, 0xff, "--class"));
    o.device_class = static_cast<std::uint8_t>(c);
  }
  for (const auto& c : SplitComma(flags.interface_classes)) {
    DP_ASSIGN_OR_RETURN(auto v, HexArg(c, 0xff, "--interface-classes"));
    o.interface_classes.push_back(static_cast<std::uint8_t>(v));
  }
  o.drivers_observed = flags.drivers_given;
  if (flags.drivers != "none") o.drivers = SplitComma(flags.drivers);
  o.redirected = flags.redirected;
  return o;
}

std::string UsbIdString(const Observation& o) {
  if (!o.vendor_id || !o.product_id) return {};
  return fmt::format("{:04x}:{:04x}", *o.vendor_id, *o.product_id);
}

nlohmann::json ClassificationToJson(const Classification& c) {
  return {{"verdict", VerdictName(c.verdict)},
          {"source", c.source.empty() ? nlohmann::json() : nlohmann::json(c.source)},
          {"model", c.model},
          {"driver", c.driver},
          {"detail", c.detail}};
}

nlohmann::json LookupToJson(const Observation& o, const Facts& f, const Classification& c,
                            const std::string& catalog_version,
                            const std::vector<SourceRecord>& sources) {
  nlohmann::json j;
  j["catalog_version"] = catalog_version;
  j["id"] = UsbIdString(o).empty() ? nlohmann::json() : nlohmann::json(UsbIdString(o));
  if (!o.ieee1284_id.empty()) j["ieee1284"] = o.ieee1284_id;
  j["classification"] = ClassificationToJson(c);
  nlohmann::json facts;
  facts["usb_ids"] = {{"vendor", f.vendor_name}, {"product", f.product_name}};
  facts["sane"] = f.sane_models ? nlohmann::json(*f.sane_models) : nlohmann::json();
  facts["ccid"] = f.ccid_reader ? nlohmann::json(*f.ccid_reader) : nlohmann::json();
  if (f.printer) {
    facts["foomatic"] = {{"id", f.printer->foomatic_id},
                         {"make", f.printer->make},
                         {"model", f.printer->model},
                         {"rating", RatingName(f.printer->rating)},
                         {"driver", f.printer->driver},
                         {"matched_by", f.printer->by_ieee1284 ? "ieee1284" : "make_model"}};
  } else {
    facts["foomatic"] = nullptr;
  }
  facts["kernel"] = {{"by_id", f.kernel_by_id}, {"by_class", f.kernel_by_class}};
  j["facts"] = std::move(facts);
  j["sources"] = nlohmann::json::array();
  for (const auto& s : sources) {
    j["sources"].push_back({{"source", s.source},
                            {"package", s.package},
                            {"package_version", s.package_version},
                            {"source_version", s.source_version},
                            {"entries", s.entries}});
  }
  return j;
}

std::string FormatLookup(const Observation& o, const Facts& f, const Classification& c,
                         const std::string& catalog_version,
                         const std::vector<SourceRecord>& sources) {
  std::string s;
  const std::string id = UsbIdString(o);
  s += fmt::format("{}{}\n", id.empty() ? "printer" : id,
                   o.ieee1284_id.empty() ? "" : " '" + o.ieee1284_id + "'");
  s += fmt::format("  verdict:  {}{}\n", VerdictName(c.verdict),
                   c.source.empty() ? "" : " (decided by " + SourceLabel(sources, c.source) + ")");
  if (!c.model.empty()) s += fmt::format("  model:    {}\n", c.model);
  if (!c.driver.empty()) s += fmt::format("  driver:   {}\n", c.driver);
  s += fmt::format("  why:      {}\n", c.detail);
  if (!f.vendor_name.empty() || !f.product_name.empty()) {
    s += fmt::format("  usb.ids:  {} / {}\n", f.vendor_name.empty() ? "?" : f.vendor_name,
                     f.product_name.empty() ? "?" : f.product_name);
  }
  if (f.sane_models) s += fmt::format("  sane:     {}\n", *f.sane_models);
  if (f.ccid_reader) s += fmt::format("  ccid:     {}\n", *f.ccid_reader);
  if (f.printer) {
    s += fmt::format("  foomatic: {} {} rated {} ({}{})\n", f.printer->make, f.printer->model,
                     RatingName(f.printer->rating), f.printer->foomatic_id,
                     f.printer->driver.empty() ? "" : ", driver " + f.printer->driver);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& m : v) out += (out.empty() ? "" : ", ") + m;
    return out;
  };
  if (!f.kernel_by_id.empty()) s += fmt::format("  kernel:   {} (by id)\n", join(f.kernel_by_id));
  if (!f.kernel_by_class.empty()) {
    s += fmt::format("  kernel:   {} (by class)\n", join(f.kernel_by_class));
  }
  s += fmt::format("  catalog:  {}\n", catalog_version);
  return s;
}

}  // namespace deskpulse::catalog
