// The agent's command line: every form it accepts, and errors that name the argument.
#include "agent/core/command_line.h"

#include <gtest/gtest.h>

#include "tests/fakes/temp_dir.h"

namespace deskpulse::agent {
namespace {

using Command = CommandLine::Command;

class CommandLineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.File("agent.toml");
    std::FILE* f = std::fopen(config_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }

  std::string Error(const std::vector<std::string>& args) {
    auto r = ParseCommandLine(args);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string("(parsed)") : r.status().message();
  }

  deskpulse::testing::TempDir dir_;
  std::string config_;
};

TEST_F(CommandLineTest, DaemonTakesAConfigInEitherForm) {
  for (const auto& args : {std::vector<std::string>{"--config", config_},
                           std::vector<std::string>{"--config=" + config_}}) {
    auto r = ParseCommandLine(args);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->command, Command::kRun);
    EXPECT_EQ(r->config_path, config_);
    EXPECT_FALSE(r->once);
  }
}

TEST_F(CommandLineTest, OnceAndPrintNeedNoConfig) {
  auto r = ParseCommandLine({"--once", "--print"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->once);
  EXPECT_TRUE(r->print);
  EXPECT_TRUE(r->config_path.empty());
}

TEST_F(CommandLineTest, SubcommandsTakeTheirOwnOptions) {
  auto v = ParseCommandLine({"validate", "--config", config_});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->command, Command::kValidate);
  EXPECT_EQ(v->config_path, config_);

  auto m = ParseCommandLine({"mark-desktop-ready", "--mark-dir=/run/deskpulse"});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->command, Command::kMarkDesktopReady);
  EXPECT_EQ(m->mark_dir, "/run/deskpulse");
}

TEST_F(CommandLineTest, HelpAndVersionWinWherePlaced) {
  EXPECT_EQ(ParseCommandLine({"--help"})->command, Command::kHelp);
  EXPECT_EQ(ParseCommandLine({"-h"})->command, Command::kHelp);
  EXPECT_EQ(ParseCommandLine({"validate", "--help"})->command, Command::kHelp);
  EXPECT_EQ(ParseCommandLine({"--version"})->command, Command::kVersion);
  EXPECT_EQ(ParseCommandLine({"--once", "--version"})->command, Command::kVersion);
  EXPECT_NE(UsageText().find("mark-desktop-ready"), std::string::npos);
}

TEST_F(CommandLineTest, ErrorsNameTheArgument) {
  EXPECT_EQ(Error({"--confg", config_}), "unknown option --confg");
  EXPECT_EQ(Error({"--config"}), "--config needs a value");
  EXPECT_EQ(Error({"--config="}), "--config needs a value");
  EXPECT_EQ(Error({"--once=yes"}), "--once takes no value");
  EXPECT_EQ(Error({"--once", "extra"}), "unexpected argument 'extra'");
  EXPECT_EQ(Error({"--config", "/nonexistent/agent.toml"}),
            "--config: no such file: /nonexistent/agent.toml");
  EXPECT_EQ(Error({"--config", dir_.File("")}), "--config: no such file: " + dir_.File(""));
  EXPECT_EQ(Error({}), "give --config FILE (or --once --print for a one-off look)");
  EXPECT_EQ(Error({"validate"}), "validate needs --config FILE");
  EXPECT_EQ(Error({"validate", "--once"}), "unknown option --once for validate");
  EXPECT_EQ(Error({"mark-desktop-ready", "--print"}),
            "unknown option --print for mark-desktop-ready");
}

}  // namespace
}  // namespace deskpulse::agent
