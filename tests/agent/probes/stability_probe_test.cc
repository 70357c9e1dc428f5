#include "agent/probes/stability/stability_probe.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>

namespace deskpulse::agent {
namespace {

const std::string kData = std::string(DESKPULSE_TEST_DATA) + "/stability";

StabilityConfig Fixture(const std::string& name) {
  StabilityConfig c;
  c.proc = kData + "/" + name;
  c.journal = false;
  return c;
}

TEST(StabilityProbe, UptimeFromProc) {
  StabilityProbe probe(Fixture("proc-basic"), "", {});
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
  EXPECT_EQ(r.stability().uptime_s(), 2286u);
  EXPECT_EQ(r.stability().crashes_size(), 0);
  EXPECT_EQ(r.unavailable_size(), 0);
}

TEST(StabilityProbe, GarbledUptimeIsUnavailableNamingTheFile) {
  StabilityProbe probe(Fixture("proc-garbled"), "", {});
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60}, r);
  EXPECT_FALSE(r.stability().has_uptime_s());
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "stability.uptime");
  EXPECT_NE(r.unavailable(0).reason().find("proc-garbled/uptime"), std::string::npos);
}

TEST(StabilityProbe, UncleanEndOfThePreviousBootIsAnOsCrash) {
  RunHistory h{.previous_boot_id = "0d1e2f3a-0000-4000-8000-000000000000",
               .previous_clean = false,
               .previous_seen_unix_ms = 1'000,
               .restarts = 4};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 5'000'000, .window_s = 60, .first_cycle = true}, r);
  ASSERT_EQ(r.stability().crashes_size(), 1);
  EXPECT_EQ(r.stability().crashes(0).component(), v1::CRASH_COMPONENT_OS);
  EXPECT_NE(r.stability().crashes(0).reason().find("0d1e2f3a"), std::string::npos);
  // Only on the first cycle.
  v1::Report next;
  probe.Collect({.now_unix_ms = 5'060'000, .window_s = 60}, next);
  EXPECT_EQ(next.stability().crashes_size(), 0);
}

TEST(StabilityProbe, SameBootWithoutCleanStopIsAnAgentCrash) {
  RunHistory h{.previous_boot_id = "e1793abe-a8b2-4b1d-834f-4bfe62357cbc",
               .previous_clean = false,
               .previous_seen_unix_ms = 1'000'000};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1'030'000, .window_s = 60, .first_cycle = true}, r);
  ASSERT_EQ(r.stability().crashes_size(), 1);
  EXPECT_EQ(r.stability().crashes(0).component(), v1::CRASH_COMPONENT_AGENT);
  EXPECT_EQ(r.stability().crashes(0).downtime_ms(), 30'000u);
}

TEST(StabilityProbe, CleanStopIsNoCrash) {
  RunHistory h{.previous_boot_id = "0d1e2f3a-0000-4000-8000-000000000000", .previous_clean = true};
  StabilityProbe probe(Fixture("proc-basic"), "", h);
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
  EXPECT_EQ(r.stability().crashes_size(), 0);
}

}  // namespace
}  // namespace deskpulse::agent

namespace deskpulse::agent {
namespace {

// Journal files built at test time from export-format fixtures by
// systemd-journal-remote (a real journal file is 8 MB: not checked in).
class JournalDir {
 public:
  JournalDir() {
    char tmpl[] = "/tmp/deskpulse-journal-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~JournalDir() { std::system(("rm -rf " + dir_).c_str()); }
  bool Add(const std::string& export_file, const std::string& name) {
    const std::string cmd = "/lib/systemd/systemd-journal-remote -o " + dir_ + "/" + name +
                            ".journal - < " + kData + "/journal-coredumps/" + export_file + " 2>" +
                            dir_ + "/" + name + ".log";
    return std::system(cmd.c_str()) == 0;
  }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

TEST(StabilityProbe, CoreDumpsFromTheJournalOnlyNewOnesAndOnlyTheDesktopsOwn) {
  JournalDir journal;
  ASSERT_TRUE(journal.Add("before.export", "system")) << "systemd-journal-remote failed";
  char tmpl[] = "/tmp/deskpulse-state-XXXXXX";
  const std::string state = ::mkdtemp(tmpl);
  StabilityConfig c = Fixture("proc-basic");
  c.journal = true;
  c.journal_dir = journal.path();
  {
    StabilityProbe probe(c, state, {});
    v1::Report r;
    probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
    // The first start begins at the journal's end: yesterday's crash is history, not news.
    EXPECT_EQ(r.stability().crashes_size(), 0);
    EXPECT_EQ(r.unavailable_size(), 0) << r.unavailable(0).reason();
  }
  ASSERT_TRUE(journal.Add("after.export", "system@later"));
  {
    // A restarted agent resumes at its saved cursor.
    StabilityProbe probe(c, state, {});
    v1::Report r;
    probe.Collect({.now_unix_ms = 2, .window_s = 60, .first_cycle = false}, r);
    ASSERT_EQ(r.stability().crashes_size(), 2);  // the calculator is not the desktop's business
    const auto& vdi = r.stability().crashes(0);
    EXPECT_EQ(vdi.component(), v1::CRASH_COMPONENT_VDI_CLIENT);
    EXPECT_EQ(vdi.reason(), "/usr/lib/vmware/view/bin/vmware-view dumped core (SIGABRT)");
    EXPECT_EQ(vdi.at_unix_ms(), 1763883660000);
    const auto& agent = r.stability().crashes(1);
    EXPECT_EQ(agent.component(), v1::CRASH_COMPONENT_AGENT);
    EXPECT_EQ(agent.reason(), "/usr/bin/deskpulse-agent dumped core (SIGBUS)");

    v1::Report again;
    probe.Collect({.now_unix_ms = 3, .window_s = 60, .first_cycle = false}, again);
    EXPECT_EQ(again.stability().crashes_size(), 0) << "each crash is reported once";
  }
  std::system(("rm -rf " + state).c_str());
}

TEST(StabilityProbe, AnUnreadableJournalDirectoryIsUnavailable) {
  StabilityConfig c = Fixture("proc-basic");
  c.journal = true;
  c.journal_dir = kData + "/does-not-exist";
  StabilityProbe probe(c, "", {});
  v1::Report r;
  probe.Collect({.now_unix_ms = 1, .window_s = 60, .first_cycle = true}, r);
  ASSERT_EQ(r.unavailable_size(), 1);
  EXPECT_EQ(r.unavailable(0).measurement(), "stability.crashes");
  EXPECT_EQ(r.unavailable(0).reason(), "cannot open the journal: No such file or directory");
}

}  // namespace
}  // namespace deskpulse::agent
