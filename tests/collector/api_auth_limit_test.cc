#include <gtest/gtest.h>

#include <string>

#include "collector/api/auth_limit.h"

namespace deskpulse::collector::api {
namespace {

TEST(FailedAuthLimiter, RefusesAPeerAtTheLimitUntilItsWindowEnds) {
  FailedAuthLimiter l({.max_failures = 3, .window_ms = 1000, .max_peers = 16});
  EXPECT_FALSE(l.Fail("10.0.0.1", 0));
  EXPECT_FALSE(l.Fail("10.0.0.1", 100));
  EXPECT_EQ(l.RefusedForMs("10.0.0.1", 100), 0);
  EXPECT_TRUE(l.Fail("10.0.0.1", 200));  // the one to log
  EXPECT_EQ(l.RefusedForMs("10.0.0.1", 200), 800);
  EXPECT_FALSE(l.Fail("10.0.0.1", 300));          // not logged again in the window
  EXPECT_EQ(l.RefusedForMs("10.0.0.2", 300), 0);  // another peer is not refused
  EXPECT_EQ(l.RefusedForMs("10.0.0.1", 999), 1);
  EXPECT_EQ(l.RefusedForMs("10.0.0.1", 1000), 0);
  // A new window counts from zero, and logs again when it reaches the limit.
  EXPECT_FALSE(l.Fail("10.0.0.1", 1000));
  EXPECT_FALSE(l.Fail("10.0.0.1", 1001));
  EXPECT_TRUE(l.Fail("10.0.0.1", 1002));
}

TEST(FailedAuthLimiter, TracksABoundedNumberOfPeers) {
  FailedAuthLimiter l({.max_failures = 2, .window_ms = 60'000, .max_peers = 100});
  for (int i = 0; i < 10'000; ++i) {
    l.Fail("peer-" + std::to_string(i), i);
    ASSERT_LE(l.peers(), 100u);
  }
  // The newest peers are still counted.
  EXPECT_TRUE(l.Fail("peer-9999", 10'000));
  EXPECT_GT(l.RefusedForMs("peer-9999", 10'000), 0);
}

}  // namespace
}  // namespace deskpulse::collector::api
