#pragma once

// Building reports and batches for store tests, and the check that a store's
// rollups equal a recomputation from its raw rows.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "collector/store/store.h"

namespace deskpulse::collector::testutil {

inline constexpr std::int64_t kNow = 1'795'000'000'000;  // fixed clock for the tests

inline v1::Hello MakeHello(const std::string& agent, const std::string& token,
                           std::uint64_t epoch = 1) {
  v1::Hello h;
  h.set_protocol_version(1);
  h.set_agent_id(agent);
  h.set_epoch(epoch);
  h.set_credential(token);
  h.mutable_host()->set_hostname("tc-" + agent);
  h.mutable_host()->set_site("site-" + agent.substr(0, 1));
  return h;
}

inline IncomingReport MakeReport(std::uint64_t seq, std::int64_t at_ms, std::uint64_t boot_ms = 0) {
  IncomingReport in;
  in.report.set_seq(seq);
  in.report.set_observed_at_unix_ms(at_ms);
  if (boot_ms > 0) {
    in.report.mutable_boot()->set_boot_id("b" + std::to_string(seq));
    in.report.mutable_boot()->set_login_ready_ms(boot_ms + seq);
  }
  if (seq % 3 == 0) {
    auto* w = in.report.add_sessions();
    w->set_window_start_unix_ms(at_ms);
    w->set_window_s(60);
    w->set_rtt_p95_us(20'000 + 1000 * seq);
  }
  in.bytes = in.report.SerializeAsString();
  return in;
}

inline BatchWrite MakeBatch(const StreamInfo& stream, std::uint64_t first, std::uint64_t last,
                            std::uint64_t boot_ms = 0) {
  BatchWrite b;
  b.stream = stream;
  for (std::uint64_t s = first; s <= last; ++s) {
    b.reports.push_back(
        MakeReport(s, kNow - 3600'000 + static_cast<std::int64_t>(s) * 1000, boot_ms));
  }
  return b;
}

inline StreamInfo Register(IngestStore& s, const std::string& customer, const std::string& agent,
                           std::uint64_t epoch = 1) {
  auto token = s.CreateToken(customer, kNow);
  EXPECT_TRUE(token.ok()) << token.status().ToString();
  const v1::Hello hello = MakeHello(agent, token.ok() ? *token : "", epoch);
  auto info = s.AuthenticateAndRegister(std::span(&hello, 1), kNow);
  EXPECT_TRUE(info[0].ok()) << info[0].status().ToString();
  return info[0].ok() ? *info[0] : StreamInfo{};
}

inline Status Commit(IngestStore& s, std::vector<BatchWrite>& batches, std::int64_t now_ms = kNow) {
  return s.CommitBatches(batches, now_ms);
}

/// The rollup rows a store should hold, recomputed from its raw rows.
inline std::vector<RollupRow> RecomputeRollups(ReadStore& store) {
  RollupAccumulator acc;
  const Status s = store.ForEachRawReport(
      [&](const RawReport& r) { acc.AddReport(r.customer_id, r.endpoint_id, r.report); });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return acc.Expand();
}

/// Rollup rows as comparable text (no difference from none at all).
inline std::vector<std::string> Describe(std::vector<RollupRow> rows) {
  return DiffRollups({}, std::move(rows));
}

/// Expects the store's rollups to equal a recomputation from its raw rows.
inline void ExpectRollupsMatchRawRows(ReadStore& store) {
  auto stored = store.LoadRollupRows();
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  const auto diff = DiffRollups(RecomputeRollups(store), *stored);
  EXPECT_TRUE(diff.empty()) << diff.size() << " rows differ, first: " << diff.front();
}

}  // namespace deskpulse::collector::testutil
