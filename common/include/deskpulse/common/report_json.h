#pragma once

#include <nlohmann/json.hpp>

#include "deskpulse/v1/report.pb.h"

namespace deskpulse {

/// A report as JSON for admins and tests (`--once --print`). Field names are
/// the proto names; enums are their names; absent optional fields are absent.
nlohmann::json ReportToJson(const deskpulse::v1::Report& report);
/// One device's state as in ReportToJson's `peripherals`.
nlohmann::json PeripheralStateToJson(const deskpulse::v1::PeripheralState& state);

}  // namespace deskpulse
