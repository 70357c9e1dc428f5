#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Log-linear bucketing of non-negative integers (HDR-style): values below 128
/// are exact; above, each power-of-two range is split into 128 linear buckets,
/// so a bucket's midpoint is within 0.4% of any value in it.
namespace buckets {
/// `sub_bits` sets the precision: 2^sub_bits linear buckets per octave.
inline constexpr int kFineSubBits = 7;    // 128 per octave: midpoints within 0.4%
inline constexpr int kCoarseSubBits = 5;  // 32 per octave: midpoints within 1.6%

std::uint32_t IndexOf(std::uint64_t value, int sub_bits = kFineSubBits);
/// Inclusive lower bound of bucket `index`.
std::uint64_t LowerBound(std::uint32_t index, int sub_bits = kFineSubBits);
/// Exclusive upper bound of bucket `index`.
std::uint64_t UpperBound(std::uint32_t index, int sub_bits = kFineSubBits);
/// Midpoint used when a value is needed back from a bucket.
double Representative(std::uint32_t index, int sub_bits = kFineSubBits);
}  // namespace buckets

/// A sparse weighted histogram keyed by bucket index (or any uint32 key, for the
/// 2-D latency × loss histograms). Mergeable, and encodable as a compact blob.
class SparseHistogram {
 public:
  using Cell = std::pair<std::uint32_t, std::uint64_t>;  // key, weight

  void Add(std::uint32_t key, std::uint64_t weight = 1);
  void AddValue(std::uint64_t value, std::uint64_t weight = 1) {
    Add(buckets::IndexOf(value), weight);
  }
  void Merge(const SparseHistogram& other);

  bool empty() const { return cells_.empty(); }
  std::uint64_t TotalWeight() const;
  /// Cells in ascending key order.
  const std::vector<Cell>& cells() const { return cells_; }
  /// The weight stored under `key` (0 if none).
  std::uint64_t Weight(std::uint32_t key) const;

  /// Value at quantile q in [0,1] for a 1-D histogram of bucket indexes;
  /// 0 when empty.
  double Quantile(double q) const;

  /// Varint pairs (key delta, weight); see histogram.cc.
  std::string Encode() const;
  static Result<SparseHistogram> Decode(std::string_view blob);
  /// Sort `cells` and add up equal keys: the cheap way to merge many histograms.
  static SparseHistogram FromCells(std::vector<Cell> cells);

  bool operator==(const SparseHistogram& other) const = default;

 private:
  // A sorted flat vector: rollup histograms hold a few to a few thousand
  // cells, where this beats a node-based map on every operation we do.
  std::vector<Cell> cells_;
};

/// Key of a 2-D cell: (x bucket, y bucket).
inline std::uint32_t Key2D(std::uint32_t x, std::uint32_t y) { return (x << 12) | (y & 0xFFFu); }
inline std::uint32_t KeyX(std::uint32_t key) { return key >> 12; }
inline std::uint32_t KeyY(std::uint32_t key) { return key & 0xFFFu; }

/// The session-latency cells shared by rollups and scoring: window RTT p95 (µs)
/// × retransmit rate (ppm), both on the coarse scale, weighted by seconds.
namespace latency_cells {
inline constexpr std::uint32_t kLossUnknown = 0xFFF;
std::uint32_t Key(std::uint64_t rtt_p95_us, const std::uint64_t* retransmit_ppm);
double RttMs(std::uint32_t key);
/// Retransmit rate in percent; negative when the window's rate is unknown.
double LossPct(std::uint32_t key);
}  // namespace latency_cells

}  // namespace deskpulse
