#include "collector/store/row_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <tuple>

#include "deskpulse/common/crc32c.h"

namespace deskpulse::collector {

std::string JoinInts(const google::protobuf::RepeatedField<std::uint32_t>& v) {
  std::string s;
  for (auto x : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(x);
  }
  return s;
}

std::string JoinStrings(const google::protobuf::RepeatedPtrField<std::string>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += ',';
    s += x;
  }
  return s;
}

std::vector<std::string> SplitList(std::string_view joined) {
  std::vector<std::string> out;
  while (!joined.empty()) {
    const std::size_t comma = joined.find(',');
    out.emplace_back(joined.substr(0, comma));
    if (comma == std::string_view::npos) break;
    joined.remove_prefix(comma + 1);
  }
  return out;
}

void SetInterfaceClasses(std::string_view joined, deskpulse::v1::PeripheralState* state) {
  for (const auto& c : SplitList(joined)) {
    state->add_interface_classes(static_cast<std::uint32_t>(std::strtoul(c.c_str(), nullptr, 10)));
  }
}

void AddToWindow(Metric metric, std::int64_t count, double sum, const SparseHistogram& hist,
                 scoring::WindowRollup* w) {
  switch (metric) {
    case Metric::kReports:
      w->reports += count;
      break;
    case Metric::kBootLoginMs:
      w->boot_ms.Merge(hist);
      break;
    case Metric::kLatency:
      w->latency.Merge(hist);
      w->latency_windows += count;
      break;
    case Metric::kSessionS:
      w->session_s += sum;
      break;
    case Metric::kDowntimeMs:
      w->downtime_ms += sum;
      break;
    case Metric::kDisconnects:
      w->disconnects += count;
      break;
    case Metric::kReconnects:
      w->reconnects += count;
      break;
    case Metric::kCrashes:
      w->crashes += count;
      break;
    case Metric::kPeripheralReconnects:
      w->peripheral_reconnects += count;
      break;
    case Metric::kStalls:
      w->stalls += count;
      break;
    default:
      if (const int protocol = ProtocolOfMetric(metric); protocol > 0) {
        w->latency_by_protocol[protocol].Merge(hist);
      } else if (const int phase = PhaseOfMetric(metric); phase >= 0) {
        w->boot_phases[static_cast<std::size_t>(phase)].boots += count;
        w->boot_phases[static_cast<std::size_t>(phase)].ms += sum;
      }
      break;
  }
}

std::string DecodeRawBody(std::string_view body, const std::int64_t* crc,
                          deskpulse::v1::Report* out) {
  if (crc == nullptr) return "no checksum";
  if (static_cast<std::uint32_t>(*crc) != Crc32c(0, body)) return "its body fails its checksum";
  if (!out->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return "its body does not decode";
  }
  return {};
}

std::string DescribeDamagedRow(std::int64_t row, std::int64_t customer_id, std::int64_t endpoint_id,
                               std::int64_t stream_id, std::int64_t seq, std::string_view why) {
  return fmt::format("report{} (customer {}, endpoint {}, stream {}, seq {}): {}",
                     row != 0 ? fmt::format(" row {}", row) : "", customer_id, endpoint_id,
                     stream_id, seq, why);
}

void SortRollupRows(std::vector<RollupRow>* rows) {
  auto key = [](const RollupRow& r) {
    return std::tuple(r.customer_id, static_cast<int>(r.grain), r.endpoint_id, r.bucket_start_ms,
                      static_cast<int>(r.metric));
  };
  std::sort(rows->begin(), rows->end(),
            [&](const RollupRow& a, const RollupRow& b) { return key(a) < key(b); });
}

}  // namespace deskpulse::collector
