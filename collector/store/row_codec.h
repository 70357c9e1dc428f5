#pragma once

// How both backends turn stored columns back into the collector's types:
// the rules live here once, the SQL that reads the columns in each backend.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "collector/scoring/score.h"
#include "collector/store/rollup.h"
#include "deskpulse/v1/report.pb.h"

namespace deskpulse::collector {

/// A device's interface classes and drivers are stored as comma-joined text.
std::string JoinInts(const google::protobuf::RepeatedField<std::uint32_t>& v);
std::string JoinStrings(const google::protobuf::RepeatedPtrField<std::string>& v);
std::vector<std::string> SplitList(std::string_view joined);
/// The interface classes column back into `state`.
void SetInterfaceClasses(std::string_view joined, deskpulse::v1::PeripheralState* state);

/// Adds one customer-level daily rollup row to a scoring window.
void AddToWindow(Metric metric, std::int64_t count, double sum, const SparseHistogram& hist,
                 scoring::WindowRollup* w);

/// Checks a raw row's body against its stored CRC-32C (`crc` null when the row
/// has none) and decodes it; empty when sound, else why it is damaged.
std::string DecodeRawBody(std::string_view body, const std::int64_t* crc,
                          deskpulse::v1::Report* out);

/// The line a damaged raw row is reported with; `row` is the backend's own
/// row number, where it has one (0: none).
std::string DescribeDamagedRow(std::int64_t row, std::int64_t customer_id, std::int64_t endpoint_id,
                               std::int64_t stream_id, std::int64_t seq, std::string_view why);

/// Sorts rollup rows into key order (customer, grain, endpoint, bucket,
/// metric): the order rows are locked and written in.
void SortRollupRows(std::vector<RollupRow>* rows);

}  // namespace deskpulse::collector
