#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deskpulse/common/catalog.h"

namespace deskpulse::catalog {

/// `deskpulse-catalog lookup`'s description of the observed device, as typed.
struct LookupFlags {
  std::string ieee1284;
  std::string device_class;       // hex
  std::string interface_classes;  // hex, comma-separated
  std::string drivers;            // comma-separated; "none" for none
  bool drivers_given = false;
  bool redirected = false;
};

/// "03f0:2b17" (or "-" with an IEEE-1284 id) and the flags as an observation;
/// errors name the argument.
Result<Observation> ObservationFromFlags(const std::string& id, const LookupFlags& flags);

/// "03f0:2b17", or "" without USB ids.
std::string UsbIdString(const Observation& o);

nlohmann::json ClassificationToJson(const Classification& c);
nlohmann::json LookupToJson(const Observation& o, const Facts& f, const Classification& c,
                            const std::string& catalog_version,
                            const std::vector<SourceRecord>& sources);
std::string FormatLookup(const Observation& o, const Facts& f, const Classification& c,
                         const std::string& catalog_version,
                         const std::vector<SourceRecord>& sources);

}  // namespace deskpulse::catalog
