#include "agent/spool/spool.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "tests/fakes/temp_dir.h"

namespace deskpulse::agent {
namespace {

namespace fs = std::filesystem;
using Entries = std::vector<std::pair<std::uint64_t, std::string>>;

v1::Report MakeReport(std::size_t pad = 0) {
  v1::Report r;
  r.set_observed_at_unix_ms(1'790'000'000'000);
  auto* u = r.add_unavailable();
  u->set_measurement("boot.phases");
  u->set_reason(std::string(pad, 'x'));
  return r;
}

std::unique_ptr<Spool> OpenSpool(const std::string& dir, std::uint64_t max = 64ull << 20) {
  auto s = Spool::Open({dir, max, /*fsync=*/false});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<std::uint64_t> Seqs(const Entries& e) {
  std::vector<std::uint64_t> out;
  for (const auto& [seq, bytes] : e) out.push_back(seq);
  return out;
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".seg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Spool, AppendsPeeksAndAcknowledgesAcrossRestarts) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("spool");
  std::uint64_t epoch = 0;
  {
    auto spool = OpenSpool(dir);
    epoch = spool->epoch();
    EXPECT_NE(epoch, 0u);
    for (int i = 0; i < 10; ++i) {
      auto r = MakeReport();
      auto seq = spool->Append(r);
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, static_cast<std::uint64_t>(i + 1));
      EXPECT_EQ(r.seq(), *seq);
    }
    Entries got;
    spool->Peek(0, 4, &got);
    EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{1, 2, 3, 4}));
    v1::Report back;
    ASSERT_TRUE(back.ParseFromString(got[2].second));
    EXPECT_EQ(back.seq(), 3u);
    spool->Acknowledge(4);
    EXPECT_EQ(spool->stats().depth_reports, 6u);
  }
  // A restart (or kill -9: nothing here depends on a clean close) resumes.
  auto spool = OpenSpool(dir);
  EXPECT_EQ(spool->epoch(), epoch);
  EXPECT_EQ(spool->acked_through(), 4u);
  EXPECT_EQ(spool->recovery_note(), "");
  Entries got;
  spool->Peek(spool->acked_through(), 100, &got);
  EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{5, 6, 7, 8, 9, 10}));
  auto r = MakeReport();
  EXPECT_EQ(*spool->Append(r), 11u);
  spool->Acknowledge(11);
  EXPECT_EQ(spool->stats().depth_reports, 0u);
  // Only the segment being appended to is left (not re-created for every report).
  EXPECT_EQ(SegmentFiles(dir).size(), 1u);
  got.clear();
  spool->Peek(11, 100, &got);
  EXPECT_TRUE(got.empty());
}

TEST(Spool, FullSpoolDropsOldestAndCountsIt) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("spool");
  const std::uint64_t max = 128u << 10;
  auto spool = OpenSpool(dir, max);
  for (int i = 0; i < 1000; ++i) {
    auto r = MakeReport(500);
    ASSERT_TRUE(spool->Append(r).ok());
  }
  const SpoolStats st = spool->stats();
  EXPECT_LE(st.bytes, max);
  EXPECT_GT(st.dropped_reports, 0u);
  EXPECT_EQ(st.dropped_reports + st.depth_reports, 1000u);
  Entries got;
  spool->Peek(0, 2000, &got);
  ASSERT_EQ(got.size(), st.depth_reports);
  // The newest survive, in order, with no gap among them.
  EXPECT_EQ(got.back().first, 1000u);
  EXPECT_EQ(got.front().first, 1000u - got.size() + 1);
  // The counter survives a restart.
  spool.reset();
  spool = OpenSpool(dir, max);
  EXPECT_EQ(spool->stats().dropped_reports, st.dropped_reports);
}

TEST(Spool, CorruptRecordIsSkippedAndCountedOnce) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("spool");
  {
    auto spool = OpenSpool(dir);
    for (int i = 0; i < 5; ++i) {
      auto r = MakeReport(40);
      ASSERT_TRUE(spool->Append(r).ok());
    }
  }
  const auto files = SegmentFiles(dir);
  ASSERT_EQ(files.size(), 1u);
  {
    // Flip a byte inside the third record's payload.
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    const auto record = fs::file_size(files[0]) / 5;
    f.seekp(static_cast<std::streamoff>(2 * record + 30));
    f.put('\x7f');
  }
  for (int restart = 0; restart < 2; ++restart) {
    auto spool = OpenSpool(dir);
    EXPECT_EQ(spool->stats().corrupt_records, 1u);
    Entries got;
    spool->Peek(0, 100, &got);
    EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{1, 2, 4, 5}));
  }
}

TEST(Spool, TornTailIsCutAndAppendsContinue) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("spool");
  {
    auto spool = OpenSpool(dir);
    for (int i = 0; i < 3; ++i) {
      auto r = MakeReport();
      ASSERT_TRUE(spool->Append(r).ok());
    }
  }
  {
    // Half a record, as a power cut mid-write leaves it.
    auto r = MakeReport();
    std::string partial = EncodeRecord(4, r.SerializeAsString());
    std::ofstream(SegmentFiles(dir)[0], std::ios::app | std::ios::binary)
        << partial.substr(0, partial.size() / 2);
  }
  auto spool = OpenSpool(dir);
  EXPECT_EQ(spool->stats().corrupt_records, 1u);
  EXPECT_EQ(spool->last_seq(), 3u);
  auto r = MakeReport();
  EXPECT_EQ(*spool->Append(r), 4u);
  Entries got;
  spool->Peek(0, 100, &got);
  EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{1, 2, 3, 4}));
}

TEST(Spool, LostStateStartsANewEpochAndNeverReusesSeqs) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("spool");
  std::uint64_t epoch = 0;
  {
    auto spool = OpenSpool(dir);
    epoch = spool->epoch();
    for (int i = 0; i < 3; ++i) {
      auto r = MakeReport();
      ASSERT_TRUE(spool->Append(r).ok());
    }
  }
  std::ofstream(dir + "/state") << "epoch banana\n";
  auto spool = OpenSpool(dir);
  EXPECT_NE(spool->epoch(), epoch);
  EXPECT_NE(spool->recovery_note().find("damaged"), std::string::npos);
  EXPECT_EQ(spool->stats().dropped_reports, 3u);
  auto r = MakeReport();
  EXPECT_EQ(*spool->Append(r), 1u);  // seq 1 of a new epoch, not of the old one
}

TEST(Spool, ScanSurvivesArbitraryBytes) {
  std::mt19937_64 rng(7);
  std::string good;
  for (std::uint64_t s = 1; s <= 20; ++s) good += EncodeRecord(s, std::string(s * 3, 'r'));
  for (int round = 0; round < 2000; ++round) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    bytes.resize(bytes.size() - rng() % 40);
    const SegmentScan scan = ScanSegment(bytes);
    std::uint64_t prev = 0;
    for (const auto& rec : scan.records) {
      EXPECT_GT(rec.seq, prev);
      prev = rec.seq;
      EXPECT_LE(rec.offset + rec.length, bytes.size());
    }
    EXPECT_LE(scan.records.size() + scan.corrupt, 20u + static_cast<unsigned>(flips) + 1);
  }
}

}  // namespace
}  // namespace deskpulse::agent
