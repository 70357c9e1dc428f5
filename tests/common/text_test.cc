#include "deskpulse/common/text.h"

#include <gtest/gtest.h>

namespace deskpulse {
namespace {

TEST(Counted, OneIsSingularEverythingElsePlural) {
  EXPECT_EQ(Counted(1, "respondent"), "1 respondent");
  EXPECT_EQ(Counted(41, "respondent"), "41 respondents");
  EXPECT_EQ(Counted(0, "model"), "0 models");
  EXPECT_EQ(Counted(-1, "day"), "-1 days");
  EXPECT_EQ(Counted(1, "entry", "entries"), "1 entry");
  EXPECT_EQ(Counted(2, "entry", "entries"), "2 entries");
}

TEST(CountedRounded, TheNounAgreesWithTheNumberPrinted) {
  EXPECT_EQ(CountedRounded(0.6, "day"), "1 day");
  EXPECT_EQ(CountedRounded(1.4, "day"), "1 day");
  EXPECT_EQ(CountedRounded(1.6, "day"), "2 days");
  EXPECT_EQ(CountedRounded(0.4, "day"), "0 days");
  EXPECT_EQ(CountedRounded(-0.2, "day"), "0 days");  // never "-0"
  EXPECT_EQ(CountedRounded(104.2, "day"), "104 days");
}

TEST(Noun, Agrees) {
  EXPECT_EQ(Noun(1, "model", "models"), "model");
  EXPECT_EQ(Noun(3, "model", "models"), "models");
}

}  // namespace
}  // namespace deskpulse
