#include "deskpulse/common/host_port.h"

#include <gtest/gtest.h>

namespace deskpulse {
namespace {

TEST(HostPort, Parses) {
  auto a = ParseHostPort("127.0.0.1:7741", "--listen");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7741);
  auto b = ParseHostPort("[::1]:0", "--listen");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
}

TEST(HostPort, ErrorsNameTheFlag) {
  for (const char* bad : {"localhost", ":80", "host:99999", "host:x1", "[::1:80"}) {
    auto r = ParseHostPort(bad, "--collector");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--collector"), std::string::npos);
  }
}

TEST(HostPort, ListsAreCommaSeparatedAndChecked) {
  auto l = ParseHostPortList("a.example:7741, [::1]:7742,b:1", "collector.address");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_EQ(l->size(), 3u);
  EXPECT_EQ((*l)[1].host, "::1");
  EXPECT_EQ((*l)[2].port, 1);
  for (const char* bad : {"", "a:1,", "a:1,,b:2", "a:1,a:1", "a:1,b"}) {
    auto r = ParseHostPortList(bad, "collector.address");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("collector.address"), std::string::npos);
  }
}

}  // namespace
}  // namespace deskpulse
