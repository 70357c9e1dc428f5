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

namespace deskpulse::agent {
namespace {

// Power cuts: what is on disk after one is the state file as it was some
// time ago and the segment without its unsynced tail.
class PowerCutTest : public ::testing::Test {
 protected:
  std::string dir() const { return tmp_.File("spool"); }

  /// Appends reports through `last`; returns their payloads by seq.
  void AppendThrough(Spool& s, std::uint64_t last) {
    while (s.last_seq() < last) {
      auto r = MakeReport(30);
      ASSERT_TRUE(s.Append(r, /*sync=*/false).ok());
    }
  }
  std::string ReadState() {
    std::ifstream in(dir() + "/state");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void WriteState(const std::string& text) { std::ofstream(dir() + "/state") << text; }
  /// Cuts the newest segment down to its first `keep` records.
  void CutNewestSegment(std::size_t keep) {
    const auto files = SegmentFiles(dir());
    ASSERT_FALSE(files.empty());
    std::ifstream in(files.back(), std::ios::binary);
    const std::string bytes(std::istreambuf_iterator<char>(in), {});
    const SegmentScan scan = ScanSegment(bytes);
    ASSERT_GE(scan.records.size(), keep);
    const auto end = keep == 0 ? 0 : scan.records[keep - 1].offset + scan.records[keep - 1].length;
    fs::resize_file(files.back(), end);
  }
  static std::vector<std::uint64_t> InnerSeqs(const Entries& e) {
    std::vector<std::uint64_t> out;
    for (const auto& [seq, bytes] : e) {
      v1::Report r;
      EXPECT_TRUE(r.ParseFromString(bytes));
      EXPECT_EQ(r.seq(), seq) << "the report's own seq matches its record's";
      out.push_back(r.seq());
    }
    return out;
  }

  testing::TempDir tmp_;
};

TEST_F(PowerCutTest, ReportsMadeAfterALostTailAreRenumberedPastTheCollector) {
  std::string stale_state;
  {
    auto s = OpenSpool(dir());
    AppendThrough(*s, 15);
    ASSERT_TRUE(s->Sync().ok());
    stale_state = ReadState();  // the state file as of seq 15
    AppendThrough(*s, 20);
    auto resume = s->Resume(0);
    ASSERT_TRUE(resume.ok());
    s->Acknowledge(20);  // the collector has 1..20
  }
  // The power cut: the acknowledged tail 16..20 never reached the disk, nor
  // did the newer state.
  CutNewestSegment(15);
  WriteState(stale_state);

  auto s = OpenSpool(dir());
  EXPECT_EQ(s->last_seq(), 15u);
  AppendThrough(*s, 21);  // six reports made after the restart: 16..21 locally
  auto resume = s->Resume(20);
  ASSERT_TRUE(resume.ok()) << resume.status().ToString();
  EXPECT_EQ(resume->event, ResumePoint::Event::kLostLocalState);
  EXPECT_NE(resume->detail.find("renumbered from 21"), std::string::npos) << resume->detail;
  EXPECT_EQ(resume->send_after, 20u);
  Entries got;
  s->Peek(resume->send_after, 100, &got);
  EXPECT_EQ(InnerSeqs(got), (std::vector<std::uint64_t>{21, 22, 23, 24, 25, 26}));
  EXPECT_EQ(s->stats().lost_state_events, 1u);
  auto next = MakeReport();
  EXPECT_EQ(*s->Append(next), 27u);

  // Durable: a restart sees the new numbering and the counter.
  s.reset();
  s = OpenSpool(dir());
  EXPECT_EQ(s->last_seq(), 27u);
  EXPECT_EQ(s->stats().lost_state_events, 1u);
  got.clear();
  s->Peek(20, 100, &got);
  EXPECT_EQ(InnerSeqs(got), (std::vector<std::uint64_t>{21, 22, 23, 24, 25, 26, 27}));
  // The next Welcome is the collector's own acknowledgement: nothing more to do.
  resume = s->Resume(26);
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(resume->event, ResumePoint::Event::kNone);
  EXPECT_EQ(s->stats().lost_state_events, 1u);
}

TEST_F(PowerCutTest, RestartsBeforeAnyWelcomeKeepTheFirstRestartPoint) {
  std::string stale_state;
  {
    auto s = OpenSpool(dir());
    AppendThrough(*s, 10);
    ASSERT_TRUE(s->Sync().ok());
    stale_state = ReadState();
    AppendThrough(*s, 14);
    ASSERT_TRUE(s->Resume(0).ok());
    s->Acknowledge(14);
  }
  CutNewestSegment(10);
  WriteState(stale_state);
  {
    auto s = OpenSpool(dir());  // offline: 11, 12 made, then restarted again
    AppendThrough(*s, 12);
  }
  auto s = OpenSpool(dir());
  AppendThrough(*s, 13);
  auto resume = s->Resume(14);
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(resume->event, ResumePoint::Event::kLostLocalState);
  Entries got;
  s->Peek(14, 100, &got);
  // 11..13 were all made after the first restart: all of them move.
  EXPECT_EQ(InnerSeqs(got), (std::vector<std::uint64_t>{15, 16, 17}));
}

TEST_F(PowerCutTest, AnInterruptedRenumberingIsUndoneOrFinished) {
  {
    auto s = OpenSpool(dir());
    AppendThrough(*s, 5);
  }
  const std::string state = ReadState();
  // Not committed (the state still says 5): the copy is dropped.
  {
    std::ofstream tmp(dir() + "/renumber.tmp", std::ios::binary);
    for (std::uint64_t seq = 9; seq <= 11; ++seq) {
      auto r = MakeReport();
      r.set_seq(seq);
      tmp << EncodeRecord(seq, r.SerializeAsString());
    }
  }
  {
    auto s = OpenSpool(dir());
    EXPECT_FALSE(fs::exists(dir() + "/renumber.tmp"));
    Entries got;
    s->Peek(0, 100, &got);
    EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  }
  // Committed (the state names seq 11): the copy replaces the old segments.
  {
    std::ofstream tmp(dir() + "/renumber.tmp", std::ios::binary);
    for (std::uint64_t seq = 9; seq <= 11; ++seq) {
      auto r = MakeReport();
      r.set_seq(seq);
      tmp << EncodeRecord(seq, r.SerializeAsString());
    }
  }
  const std::string epoch_line = state.substr(0, state.find('\n') + 1);
  WriteState(epoch_line +
             "acked 8\nlast_seq 11\ndropped 0\ncorrupt 0\ncollector_acked 8\nlost_state 1\n");
  auto s = OpenSpool(dir());
  EXPECT_FALSE(fs::exists(dir() + "/renumber.tmp"));
  Entries got;
  s->Peek(8, 100, &got);
  EXPECT_EQ(InnerSeqs(got), (std::vector<std::uint64_t>{9, 10, 11}));
  EXPECT_EQ(SegmentFiles(dir()).size(), 1u);
}

TEST_F(PowerCutTest, ACollectorThatForgotGetsWhatTheSpoolStillHolds) {
  auto s = OpenSpool(dir());
  AppendThrough(*s, 10);
  ASSERT_TRUE(s->Resume(0).ok());
  s->Acknowledge(10);
  EXPECT_EQ(s->CollectorAcked(), 10u);
  auto resume = s->Resume(4);  // its WAL was lost: it holds only 1..4
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(resume->event, ResumePoint::Event::kCollectorForgot);
  EXPECT_NE(resume->detail.find("resending the 6"), std::string::npos) << resume->detail;
  EXPECT_EQ(resume->send_after, 4u);
  Entries got;
  s->Peek(4, 100, &got);
  EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(s->stats().collector_regressions, 1u);
  EXPECT_EQ(s->CollectorAcked(), 4u);  // counted once, not at every reconnect
  resume = s->Resume(4);
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(s->stats().collector_regressions, 1u);
}

TEST_F(PowerCutTest, ARejectedReportIsCountedAndNeverSentAgain) {
  auto s = OpenSpool(dir());
  AppendThrough(*s, 5);
  ASSERT_TRUE(s->Resume(0).ok());
  s->Acknowledge(2);
  s->Reject(3);
  EXPECT_EQ(s->stats().rejected_reports, 1u);
  // The collector holds 1..2: sending resumes after the rejected one.
  auto resume = s->Resume(2);
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(resume->event, ResumePoint::Event::kNone);
  EXPECT_EQ(resume->send_after, 3u);
  // Even a forgetful collector does not get it again.
  resume = s->Resume(1);
  ASSERT_TRUE(resume.ok());
  EXPECT_EQ(resume->event, ResumePoint::Event::kCollectorForgot);
  Entries got;
  s->Peek(1, 100, &got);
  EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{2, 4, 5}));
  s.reset();
  s = OpenSpool(dir());
  EXPECT_EQ(s->stats().rejected_reports, 1u);
}

TEST_F(PowerCutTest, DamagedRecordsAreCountedOneByOne) {
  {
    auto s = OpenSpool(dir());
    AppendThrough(*s, 10);
  }
  const auto file = SegmentFiles(dir()).back();
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const SegmentScan clean = ScanSegment(bytes, 1);
  ASSERT_EQ(clean.records.size(), 10u);
  // A flipped payload byte in each of the last three records ...
  for (std::size_t i = 7; i < 10; ++i) bytes[clean.records[i].offset + 3] ^= 0x5a;
  // ... and a damaged header (its magic) in the fourth: 4 records lost.
  bytes[clean.records[3].offset - 20] ^= 0x01;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  auto s = OpenSpool(dir());
  EXPECT_EQ(s->stats().corrupt_records, 4u);
  Entries got;
  s->Peek(0, 100, &got);
  EXPECT_EQ(Seqs(got), (std::vector<std::uint64_t>{1, 2, 3, 5, 6, 7}));
}

}  // namespace
}  // namespace deskpulse::agent
