#include "deskpulse/common/config.h"

#include <gtest/gtest.h>

namespace deskpulse {
namespace {

TEST(Config, ReadsTypedValuesAndKeepsDefaults) {
  auto cfg = ConfigReader::FromString("[ingest]\nlisten = \"0.0.0.0:7741\"\nmax = 5\n", "t.toml");
  ASSERT_TRUE(cfg.ok());
  std::string listen = "default";
  std::int64_t max = 1;
  std::int64_t absent = 9;
  ASSERT_TRUE(cfg->GetString("ingest.listen", &listen).ok());
  ASSERT_TRUE(cfg->GetInt("ingest.max", 1, 10, &max).ok());
  ASSERT_TRUE(cfg->GetInt("ingest.absent", 1, 10, &absent).ok());
  EXPECT_EQ(listen, "0.0.0.0:7741");
  EXPECT_EQ(max, 5);
  EXPECT_EQ(absent, 9);
  EXPECT_TRUE(cfg->CheckNoUnknownKeys().ok());
}

TEST(Config, UnknownKeyIsAnErrorNamingIt) {
  auto cfg = ConfigReader::FromString("[ingest]\nlisen = \"x\"\n", "t.toml");
  ASSERT_TRUE(cfg.ok());
  std::string listen;
  ASSERT_TRUE(cfg->GetString("ingest.listen", &listen).ok());
  const Status s = cfg->CheckNoUnknownKeys();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("'ingest.lisen'"), std::string::npos) << s.message();
}

TEST(Config, WrongTypeAndRangeNameTheKey) {
  auto cfg = ConfigReader::FromString("[a]\nn = \"five\"\nm = 0\nb = 1\n", "t.toml");
  ASSERT_TRUE(cfg.ok());
  std::int64_t n = 1;
  Status s = cfg->GetInt("a.n", 1, 10, &n);
  EXPECT_NE(s.message().find("'a.n'"), std::string::npos);
  EXPECT_NE(s.message().find("integer"), std::string::npos);
  EXPECT_EQ(n, 1);  // untouched
  s = cfg->GetInt("a.m", 1, 10, &n);
  EXPECT_NE(s.message().find("'a.m'"), std::string::npos);
  EXPECT_NE(s.message().find("outside 1..10"), std::string::npos);
  bool b = false;
  s = cfg->GetBool("a.b", &b);
  EXPECT_NE(s.message().find("'a.b'"), std::string::npos);
}

TEST(Config, SyntaxErrorNamesFileAndLine) {
  auto cfg = ConfigReader::FromString("[a]\nx = = 1\n", "bad.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("bad.toml:2"), std::string::npos) << cfg.status().message();
}

TEST(Config, MissingFileIsNotFound) {
  auto cfg = ConfigReader::FromFile("/nonexistent/deskpulse.toml");
  EXPECT_EQ(cfg.status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace deskpulse

TEST(Config, ListsAreTypedAndRangeChecked) {
  auto r = deskpulse::ConfigReader::FromString(
      "ports = [3389, 1494]\nnames = [\"wfica\", \"xfreerdp\"]\nbad = [1, \"x\"]\nbig = [70000]\n",
      "agent.toml");
  ASSERT_TRUE(r.ok());
  std::vector<std::int64_t> ports;
  ASSERT_TRUE(r->GetIntList("ports", 1, 65535, &ports).ok());
  EXPECT_EQ(ports, (std::vector<std::int64_t>{3389, 1494}));
  std::vector<std::string> names;
  ASSERT_TRUE(r->GetStringList("names", &names).ok());
  EXPECT_EQ(names, (std::vector<std::string>{"wfica", "xfreerdp"}));
  std::vector<std::int64_t> bad;
  auto s = r->GetIntList("bad", 1, 65535, &bad);
  EXPECT_NE(s.message().find("key 'bad': element 1 is not an integer"), std::string::npos)
      << s.message();
  s = r->GetIntList("big", 1, 65535, &bad);
  EXPECT_NE(s.message().find("key 'big': element 0 (70000) is outside 1..65535"), std::string::npos)
      << s.message();
  std::vector<std::string> absent{"kept"};
  ASSERT_TRUE(r->GetStringList("nothing", &absent).ok());
  EXPECT_EQ(absent, std::vector<std::string>{"kept"});
}
