#include "deskpulse/common/histogram.h"

#include <algorithm>
#include <bit>

namespace deskpulse {
namespace buckets {

std::uint32_t IndexOf(std::uint64_t value, int sub_bits) {
  const std::uint64_t sub_count = 1ull << sub_bits;
  if (value < sub_count) return static_cast<std::uint32_t>(value);
  const int width = std::bit_width(value);   // > sub_bits
  const int shift = width - sub_bits - 1;    // >= 0
  const std::uint64_t sub = value >> shift;  // in [sub_count, 2·sub_count)
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(shift) + 1) * sub_count +
                                    (sub - sub_count));
}

std::uint64_t LowerBound(std::uint32_t index, int sub_bits) {
  const std::uint32_t sub_count = 1u << sub_bits;
  if (index < sub_count) return index;
  const std::uint32_t shift = index / sub_count - 1;
  const std::uint64_t sub = sub_count + index % sub_count;
  // Past the last bucket of 64-bit values (a key read from a damaged blob):
  // saturate rather than shift out of range.
  if (shift + static_cast<std::uint32_t>(std::bit_width(sub)) > 64) return UINT64_MAX;
  return sub << shift;
}

std::uint64_t UpperBound(std::uint32_t index, int sub_bits) {
  const std::uint32_t sub_count = 1u << sub_bits;
  if (index < sub_count) return index + 1ull;
  const std::uint32_t shift = index / sub_count - 1;
  const std::uint64_t lower = LowerBound(index, sub_bits);
  if (shift >= 64) return UINT64_MAX;
  const std::uint64_t width = 1ull << shift;
  // The top bucket ends past 2^64 - 1: saturate.
  return lower > UINT64_MAX - width ? UINT64_MAX : lower + width;
}

double Representative(std::uint32_t index, int sub_bits) {
  if (index < (1u << sub_bits)) return static_cast<double>(index);
  return (static_cast<double>(LowerBound(index, sub_bits)) +
          static_cast<double>(UpperBound(index, sub_bits)) - 1) /
         2;
}

}  // namespace buckets

void SparseHistogram::Add(std::uint32_t key, std::uint64_t weight) {
  auto it = std::lower_bound(cells_.begin(), cells_.end(), key,
                             [](const Cell& c, std::uint32_t k) { return c.first < k; });
  if (it != cells_.end() && it->first == key) {
    it->second += weight;
  } else {
    cells_.insert(it, {key, weight});
  }
}

void SparseHistogram::Merge(const SparseHistogram& other) {
  if (other.cells_.empty()) return;
  if (cells_.empty()) {
    cells_ = other.cells_;
    return;
  }
  if (other.cells_.size() * 16 < cells_.size()) {  // a few cells into many: insert in place
    for (const auto& [k, w] : other.cells_) Add(k, w);
    return;
  }
  std::vector<Cell> out;
  out.reserve(cells_.size() + other.cells_.size());
  auto a = cells_.begin();
  auto b = other.cells_.begin();
  while (a != cells_.end() || b != other.cells_.end()) {
    if (b == other.cells_.end() || (a != cells_.end() && a->first < b->first)) {
      out.push_back(*a++);
    } else if (a == cells_.end() || b->first < a->first) {
      out.push_back(*b++);
    } else {
      out.emplace_back(a->first, a->second + b->second);
      ++a;
      ++b;
    }
  }
  cells_.swap(out);
}

std::uint64_t SparseHistogram::Weight(std::uint32_t key) const {
  auto it = std::lower_bound(cells_.begin(), cells_.end(), key,
                             [](const Cell& c, std::uint32_t k) { return c.first < k; });
  return it != cells_.end() && it->first == key ? it->second : 0;
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
  return buckets::Representative(cells_.back().first);
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
    // Checked before adding: a huge delta must not wrap around to a smaller key.
    if (delta > 0xFFFFFFFFull - key) return DataLoss("histogram key out of range");
    key += delta;
    h.cells_.emplace_back(static_cast<std::uint32_t>(key), weight);  // ascending by construction
    first = false;
  }
  return h;
}

SparseHistogram SparseHistogram::FromCells(std::vector<Cell> cells) {
  std::sort(cells.begin(), cells.end(),
            [](const Cell& a, const Cell& b) { return a.first < b.first; });
  SparseHistogram h;
  for (const auto& c : cells) {
    if (!h.cells_.empty() && h.cells_.back().first == c.first) {
      h.cells_.back().second += c.second;
    } else {
      h.cells_.push_back(c);
    }
  }
  return h;
}

namespace latency_cells {

std::uint32_t Key(std::uint64_t rtt_p95_us, const std::uint64_t* retransmit_ppm) {
  const std::uint32_t x = buckets::IndexOf(rtt_p95_us, buckets::kCoarseSubBits);
  const std::uint32_t y =
      retransmit_ppm == nullptr
          ? kLossUnknown
          : std::min<std::uint32_t>(buckets::IndexOf(*retransmit_ppm, buckets::kCoarseSubBits),
                                    kLossUnknown - 1);
  return Key2D(x, y);
}

double RttMs(std::uint32_t key) {
  return buckets::Representative(KeyX(key), buckets::kCoarseSubBits) / 1000.0;
}

double LossPct(std::uint32_t key) {
  if (KeyY(key) == kLossUnknown) return -1;
  return buckets::Representative(KeyY(key), buckets::kCoarseSubBits) / 10'000.0;
}

}  // namespace latency_cells

}  // namespace deskpulse
