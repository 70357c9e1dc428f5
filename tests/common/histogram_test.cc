#include "deskpulse/common/histogram.h"

#include <gtest/gtest.h>

#include <random>

namespace deskpulse {
namespace {

TEST(Buckets, SmallValuesAreExact) {
  for (std::uint64_t v = 0; v < 128; ++v) {
    EXPECT_EQ(buckets::IndexOf(v), v);
    EXPECT_EQ(buckets::Representative(buckets::IndexOf(v)), static_cast<double>(v));
  }
}

TEST(Buckets, EveryValueLiesInItsBucketWithinHalfAPercent) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const std::uint64_t v = rng() >> (1 + rng() % 60);  // below 2^63
    const std::uint32_t idx = buckets::IndexOf(v);
    ASSERT_LE(buckets::LowerBound(idx), v);
    ASSERT_GT(buckets::UpperBound(idx), v);
    const double rep = buckets::Representative(idx);
    ASSERT_LE(std::abs(rep - static_cast<double>(v)), 0.004 * static_cast<double>(v) + 0.5) << v;
  }
}

TEST(Buckets, CoarseScaleKeepsMidpointsWithinTwoPercent) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng() >> (1 + rng() % 60);
    const std::uint32_t idx = buckets::IndexOf(v, buckets::kCoarseSubBits);
    ASSERT_LE(buckets::LowerBound(idx, buckets::kCoarseSubBits), v);
    ASSERT_GT(buckets::UpperBound(idx, buckets::kCoarseSubBits), v);
    const double rep = buckets::Representative(idx, buckets::kCoarseSubBits);
    ASSERT_LE(std::abs(rep - static_cast<double>(v)), 0.016 * static_cast<double>(v) + 0.5) << v;
  }
}

TEST(LatencyCells, RoundTripRttAndLoss) {
  const std::uint64_t ppm = 12'000;  // 1.2 %
  const std::uint32_t k = latency_cells::Key(180'000, &ppm);
  EXPECT_NEAR(latency_cells::RttMs(k), 180, 180 * 0.016);
  EXPECT_NEAR(latency_cells::LossPct(k), 1.2, 1.2 * 0.016);
  const std::uint32_t unknown = latency_cells::Key(180'000, nullptr);
  EXPECT_LT(latency_cells::LossPct(unknown), 0);
  EXPECT_EQ(KeyX(unknown), KeyX(k));
  const std::uint64_t all = 1'000'000;  // 100 % retransmitted still has a cell
  EXPECT_GT(latency_cells::LossPct(latency_cells::Key(1000, &all)), 90);
}

TEST(SparseHistogram, FromCellsSortsAndAddsUp) {
  auto h = SparseHistogram::FromCells({{9, 1}, {3, 2}, {9, 4}, {1, 1}});
  EXPECT_EQ(h.cells(), (std::vector<SparseHistogram::Cell>{{1, 1}, {3, 2}, {9, 5}}));
}

TEST(Buckets, IndexesAreMonotonic) {
  std::uint32_t prev = 0;
  for (std::uint64_t v = 0; v < 5'000'000; v += 37) {
    const std::uint32_t idx = buckets::IndexOf(v);
    ASSERT_GE(idx, prev);
    prev = idx;
  }
}

TEST(SparseHistogram, EncodeDecodeRoundTrip) {
  SparseHistogram h;
  h.AddValue(0);
  h.AddValue(58'000, 3);
  h.AddValue(120'000);
  h.Add(Key2D(900, 4), 3600);
  auto back = SparseHistogram::Decode(h.Encode());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, h);
  EXPECT_EQ(back->TotalWeight(), 3605u);
}

TEST(SparseHistogram, RejectsCorruptBlobs) {
  EXPECT_EQ(SparseHistogram::Decode(std::string("\x85", 1)).status().code(), Code::kDataLoss);
  // A repeated key (delta 0 after the first cell).
  EXPECT_EQ(SparseHistogram::Decode(std::string("\x01\x01\x00\x01", 4)).status().code(),
            Code::kDataLoss);
  EXPECT_TRUE(SparseHistogram::Decode("").ok());
}

TEST(SparseHistogram, RejectsAKeyDeltaThatWouldWrapAround) {
  // Found by ingest_fuzz: key 5, then a delta of 2^64 - 1 would wrap to key 4.
  std::string blob("\x05\x01", 2);
  blob += std::string(9, '\xff') + "\x01";  // varint 2^64 - 1
  blob += "\x01";                           // its weight
  EXPECT_EQ(SparseHistogram::Decode(blob).status().code(), Code::kDataLoss);
  // Past 2^32 - 1 without wrapping is refused too.
  std::string big("\x80\x80\x80\x80\x10\x01", 6);  // key 2^32
  EXPECT_EQ(SparseHistogram::Decode(big).status().code(), Code::kDataLoss);
}

TEST(SparseHistogram, QuantilesAreNearestRank) {
  SparseHistogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.AddValue(v * 1000);
  EXPECT_NEAR(h.Quantile(0.5), 50'000, 250);
  EXPECT_NEAR(h.Quantile(0.95), 95'000, 400);
  EXPECT_NEAR(h.Quantile(1.0), 100'000, 400);
  EXPECT_EQ(SparseHistogram().Quantile(0.5), 0);
}

TEST(SparseHistogram, MergeAddsWeights) {
  SparseHistogram a, b;
  a.AddValue(10);
  b.AddValue(10, 2);
  b.AddValue(20);
  a.Merge(b);
  EXPECT_EQ(a.Weight(buckets::IndexOf(10)), 3u);
  EXPECT_EQ(a.TotalWeight(), 4u);
}

TEST(Histogram, KeysPastTheLastBucketSaturate) {
  // A key from a damaged blob decodes; its bounds saturate, never shift out of range.
  EXPECT_EQ(buckets::LowerBound(0xFFFFFFFFu, 4), UINT64_MAX);
  EXPECT_EQ(buckets::UpperBound(0xFFFFFFFFu, 4), UINT64_MAX);
  const std::uint32_t last = buckets::IndexOf(UINT64_MAX, 4);
  EXPECT_LE(buckets::LowerBound(last, 4), UINT64_MAX);
  EXPECT_EQ(buckets::UpperBound(last, 4), UINT64_MAX);
  EXPECT_EQ(buckets::LowerBound(last + 1, 4), UINT64_MAX);
}

}  // namespace
}  // namespace deskpulse
