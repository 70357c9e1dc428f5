#include "deskpulse/common/histogram.h"

#include <bit>

namespace deskpulse {
namespace buckets {

namespace {
constexpr int kSubBits = 7;                       // 128 linear buckets per octave
constexpr std::uint64_t kSub = 1ull << kSubBits;  // 128
}  // namespace

std::uint32_t IndexOf(std::uint64_t value) {
  if (value < kSub) return static_cast<std::uint32_t>(value);
  const int width = std::bit_width(value);  // >= 8
  const int shift = width - kSubBits - 1;   // >= 0
  const std::uint64_t sub = value >> shift;  // in [128, 256)
  return static_cast<std::uint32_t>((shift + 1) * kSub + (sub - kSub));
}

std::uint64_t LowerBound(std::uint32_t index) {
  if (index < kSub) return index;
  const std::uint32_t shift = index / kSub - 1;
  const std::uint64_t sub = kSub + index % kSub;
  return sub << shift;
}

std::uint64_t UpperBound(std::uint32_t index) {
  if (index < kSub) return index + 1ull;
  const std::uint32_t shift = index / kSub - 1;
  const std::uint64_t lower = LowerBound(index);
  const std::uint64_t width = 1ull << shift;
  // The top bucket ends past 2^64 - 1: saturate.
  return lower > UINT64_MAX - width ? UINT64_MAX : lower + width;
}

double Representative(std::uint32_t index) {
  if (index < kSub) return static_cast<double>(index);
  return (static_cast<double>(LowerBound(index)) + static_cast<double>(UpperBound(index)) - 1) / 2;
}

}  // namespace buckets

void SparseHistogram::Merge(const SparseHistogram& other) {
  for (const auto& [k, w] : other.cells_) cells_[k] += w;
}

std::uint64_t SparseHistogram::TotalWeight() const {
  std::uint64_t total = 0;
  for (const auto& [k, w] : cells_) total += w;
  return total;
}

double SparseHistogram::Quantile(double q) const {
  const std::uint64_t total = TotalWeight();
  if (total == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  // Nearest-rank: the smallest bucket whose cumulative weight reaches q·total.
  const double target = q * static_cast<double>(total);
  std::uint64_t seen = 0;
  for (const auto& [k, w] : cells_) {
    seen += w;
    if (static_cast<double>(seen) >= target && seen > 0) return buckets::Representative(k);
  }
  return buckets::Representative(cells_.rbegin()->first);
}

namespace {
void PutVarint(std::uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, std::uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    const auto byte = static_cast<std::uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= std::uint64_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}
}  // namespace

// Keys ascend, so each is stored as the delta from the previous one.
std::string SparseHistogram::Encode() const {
  std::string out;
  out.reserve(cells_.size() * 3);
  std::uint32_t prev = 0;
  for (const auto& [k, w] : cells_) {
    PutVarint(k - prev, &out);
    PutVarint(w, &out);
    prev = k;
  }
  return out;
}

Result<SparseHistogram> SparseHistogram::Decode(std::string_view blob) {
  SparseHistogram h;
  std::uint64_t key = 0;
  bool first = true;
  while (!blob.empty()) {
    std::uint64_t delta = 0;
    std::uint64_t weight = 0;
    if (!GetVarint(&blob, &delta) || !GetVarint(&blob, &weight)) {
      return DataLoss("histogram blob is truncated");
    }
    if (!first && delta == 0) return DataLoss("histogram blob repeats a key");
    key += delta;
    if (key > 0xFFFFFFFFu) return DataLoss("histogram key out of range");
    h.cells_[static_cast<std::uint32_t>(key)] += weight;
    first = false;
  }
  return h;
}

}  // namespace deskpulse
