#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Log-linear bucketing of non-negative integers (HDR-style): values below 128
/// are exact; above, each power-of-two range is split into 128 linear buckets,
/// so a bucket's midpoint is within 0.4% of any value in it.
namespace buckets {
std::uint32_t IndexOf(std::uint64_t value);
/// Inclusive lower bound of bucket `index`.
std::uint64_t LowerBound(std::uint32_t index);
/// Exclusive upper bound of bucket `index`.
std::uint64_t UpperBound(std::uint32_t index);
/// Midpoint used when a value is needed back from a bucket.
double Representative(std::uint32_t index);
}  // namespace buckets

/// A sparse weighted histogram keyed by bucket index (or any uint32 key, for the
/// 2-D latency × loss histograms). Mergeable, and encodable as a compact blob.
class SparseHistogram {
 public:
  void Add(std::uint32_t key, std::uint64_t weight = 1) { cells_[key] += weight; }
  void AddValue(std::uint64_t value, std::uint64_t weight = 1) {
    Add(buckets::IndexOf(value), weight);
  }
  void Merge(const SparseHistogram& other);

  bool empty() const { return cells_.empty(); }
  std::uint64_t TotalWeight() const;
  const std::map<std::uint32_t, std::uint64_t>& cells() const { return cells_; }

  /// Value at quantile q in [0,1] for a 1-D histogram of bucket indexes;
  /// 0 when empty.
  double Quantile(double q) const;

  /// Varint pairs (key delta, weight); see histogram.cc.
  std::string Encode() const;
  static Result<SparseHistogram> Decode(std::string_view blob);

  bool operator==(const SparseHistogram& other) const = default;

 private:
  std::map<std::uint32_t, std::uint64_t> cells_;
};

/// Key of a 2-D cell: (rtt bucket, loss bucket).
inline std::uint32_t Key2D(std::uint32_t x, std::uint32_t y) { return (x << 12) | (y & 0xFFFu); }
inline std::uint32_t KeyX(std::uint32_t key) { return key >> 12; }
inline std::uint32_t KeyY(std::uint32_t key) { return key & 0xFFFu; }

}  // namespace deskpulse
