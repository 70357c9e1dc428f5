#include <gtest/gtest.h>

#include "agent/core/config.h"

namespace deskpulse::agent {
namespace {

TEST(AgentConfig, TheShippedSampleParses) {
  // The sample names a token file that exists only on a real endpoint: give
  // the same file with an inline token instead.
  auto c = LoadAgentConfig(std::string(DESKPULSE_SOURCE_DIR) + "/agent/agent.sample.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(
      c.status().message().find("key 'collector.token_file': cannot read /etc/deskpulse/token"),
      std::string::npos)
      << c.status().message();
}

TEST(AgentConfig, DefaultsWithoutAFile) {
  auto c = ParseAgentConfig("", "(defaults)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->interval_s, 60);
  EXPECT_EQ(c->spool_max_bytes, 64ull << 20);
  EXPECT_EQ(c->session.rdp_ports, std::vector<std::uint16_t>{3389});
  EXPECT_FALSE(c->has_collector);
  EXPECT_EQ(c->refused_retry_min_s, 60);
  EXPECT_EQ(c->refused_retry_max_s, 900);
}

TEST(AgentConfig, ErrorsNameTheKey) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"[agent]\nintervall_s = 5\n", "key 'agent.intervall_s': unknown key"},
      {"[agent]\ninterval_s = 0\n", "key 'agent.interval_s': value 0 is outside 1..3600"},
      {"[agent]\nrole = \"laptop\"\n", "key 'agent.role': 'laptop' is not one of"},
      {"[probes.session]\nrdp_ports = [3389, 99999]\n",
       "key 'probes.session.rdp_ports': element 1"},
      {"[probes.session]\nprobe_targets = [\"nohost\"]\n",
       "probes.session.probe_targets' element 0"},
      {"[probes.session]\nprobe_interval_s = 5\n", "key 'probes.session.probe_interval_s'"},
      {"[collector]\naddress = \"c:7070\"\n", "key 'collector.token': required"},
      {"[spool]\nmax_bytes = 10\n", "key 'spool.max_bytes'"},
      {"[collector]\naddress = \"c:7070\"\ntoken = \"t\"\nca_file = \"x\"\nplaintext = true\n",
       "contradict"},
      {"[collector]\nrefused_retry_min_s = 0\n", "key 'collector.refused_retry_min_s'"},
      {"[collector]\nrefused_retry_min_s = 600\nrefused_retry_max_s = 60\n",
       "'collector.refused_retry_max_s' (60) is below 'collector.refused_retry_min_s' (600)"},
  };
  for (const auto& k : cases) {
    auto c = ParseAgentConfig(k.text, "agent.toml");
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_NE(c.status().message().find(k.expect), std::string::npos)
        << k.text << " → " << c.status().message();
  }
}

}  // namespace
}  // namespace deskpulse::agent
