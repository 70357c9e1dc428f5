#include "deskpulse/common/logging.h"

#include <gtest/gtest.h>

#include "deskpulse/common/crc32c.h"

namespace deskpulse {
namespace {

using namespace std::chrono_literals;

TEST(EscapeForLog, KeepsPrintableAsciiAndEscapesEverythingElse) {
  EXPECT_EQ(EscapeForLog("agent-7 ok"), "agent-7 ok");
  EXPECT_EQ(EscapeForLog("a\nb\x1b[31mc\\d"), "a\\x0ab\\x1b[31mc\\\\d");
  EXPECT_EQ(EscapeForLog(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9"), "caf\\xc3\\xa9");  // no bidi tricks either
  EXPECT_EQ(EscapeForLog(std::string(100, 'a'), 10), "aaaaaaaaaa...(+90 bytes)");
}

TEST(GroupThousands, Groups) {
  EXPECT_EQ(GroupThousands(0), "0");
  EXPECT_EQ(GroupThousands(999), "999");
  EXPECT_EQ(GroupThousands(1234), "1,234");
  EXPECT_EQ(GroupThousands(1234567), "1,234,567");
}

TEST(WarningSummary, FirstInFullThenOneLinePerInterval) {
  WarningSummary s(10s, 2);
  const auto t0 = WarningSummary::Clock::time_point{} + 1h;
  EXPECT_TRUE(s.Note("refused credentials", "10.1.2.3", t0));
  for (int i = 0; i < 1233; ++i) EXPECT_FALSE(s.Note("refused credentials", "10.1.2.3", t0 + 1s));
  EXPECT_TRUE(s.Note("refused credentials", "10.9.9.9", t0 + 1s));  // another source
  EXPECT_TRUE(s.Due(t0 + 5s).empty());
  auto lines = s.Due(t0 + 10s);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].Text(), "1,233 refused credentials from 10.1.2.3 in the last 10 s");
  // Quiet for an interval: forgotten, so the next one is in full again.
  EXPECT_TRUE(s.Due(t0 + 20s).empty());
  EXPECT_TRUE(s.Due(t0 + 30s).empty());
  EXPECT_TRUE(s.Note("refused credentials", "10.1.2.3", t0 + 31s));
}

TEST(WarningSummary, ManySourcesShareOneBucket) {
  WarningSummary s(10s, 2);
  const auto t0 = WarningSummary::Clock::time_point{} + 1h;
  for (int i = 0; i < 1000; ++i) {
    (void)s.Note("connections refused", "10.0.0." + std::to_string(i), t0);
    (void)s.Note("connections refused", "10.0.0." + std::to_string(i), t0);
  }
  const auto lines = s.Due(t0, /*flush=*/true);
  std::uint64_t total = 0;
  for (const auto& l : lines) total += l.count;
  EXPECT_LE(lines.size(), 3u) << "two sources and one bucket for the rest";
  EXPECT_GE(total, 1000u);
}

TEST(Crc32c, MatchesTheCastagnoliCheckValueAndChains) {
  EXPECT_EQ(Crc32c(0, "123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(Crc32c(0, "1234"), "56789"), 0xE3069283u);
  std::string big(10'000, 'x');
  big[5000] = 'y';
  EXPECT_NE(Crc32c(0, big), Crc32c(0, std::string(10'000, 'x')));
}

}  // namespace
}  // namespace deskpulse
