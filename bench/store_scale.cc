// deskpulse-store-scale: fills a store through the ingest interface with N
// endpoints × D days of reports (one a day each, with a boot, a session window
// and two devices), then times the score query for one customer and for all
// of them. Prints figures; asserts none (docs/quality.md: ≤ 10 ms one customer,
// ≤ 2 s all, at 100,000 endpoints × 30 days).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "collector/reports/scores.h"
#include "collector/store/store.h"
#include "deskpulse/common/cli.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace dc = deskpulse::collector;
namespace v1 = deskpulse::v1;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

v1::Report MakeReport(std::uint64_t seq, std::int64_t at_ms, int endpoint, int day) {
  v1::Report r;
  r.set_seq(seq);
  r.set_observed_at_unix_ms(at_ms);
  auto* b = r.mutable_boot();
  b->set_boot_id("b" + std::to_string(endpoint) + "-" + std::to_string(day));
  b->set_booted_at_unix_ms(at_ms - 60'000);
  b->set_login_ready_ms(20'000 +
                        static_cast<std::uint64_t>((endpoint * 7919 + day * 104729) % 60'000));
  auto* w = r.add_sessions();
  w->set_window_start_unix_ms(at_ms - 60'000);
  w->set_window_s(60);
  w->set_protocol(endpoint % 2 ? v1::DISPLAY_PROTOCOL_ICA : v1::DISPLAY_PROTOCOL_BLAST);
  w->set_rtt_p95_us(15'000 + static_cast<std::uint64_t>((endpoint * 31 + day) % 150'000));
  w->set_retransmit_ppm(static_cast<std::uint32_t>((endpoint + day) % 5000));
  r.mutable_stability()->set_session_s(3600);
  for (int d = 0; d < 2; ++d) {
    auto* p = r.add_peripherals();
    p->set_bus(v1::PERIPHERAL_BUS_USB);
    p->set_vendor_id(0x03f0);
    p->set_product_id(static_cast<std::uint32_t>(0x2b00 + d + (endpoint % 40)));
    p->set_serial_hash("s" + std::to_string(endpoint) + "-" + std::to_string(d));
    p->set_state((endpoint + d) % 9 == 0 ? v1::DEVICE_STATE_NO_DRIVER : v1::DEVICE_STATE_WORKING);
  }
  return r;
}

}  // namespace

static int Main(int argc, char** argv) {
  CLI::App app{
      "deskpulse-store-scale: fills a store with N endpoints x D days and times the "
      "score queries (bench/store_scale.py runs it on both backends)",
      "deskpulse-store-scale"};
  app.set_version_flag("--version", std::string("deskpulse-store-scale ") + DESKPULSE_VERSION);
  std::string db;
  int endpoints = 100'000;
  int customers = 500;
  int days = 30;
  int repeats = 20;
  app.add_option("--db", db, "store: an SQLite file or a postgresql:// URI (fresh)")->required();
  app.add_option("--endpoints", endpoints, "endpoints to fill")
      ->check(deskpulse::cli::WholeNumber(1, 10'000'000));
  app.add_option("--customers", customers, "customers the endpoints are dealt to")
      ->check(deskpulse::cli::WholeNumber(1, 100'000));
  app.add_option("--days", days, "days of history per endpoint")
      ->check(deskpulse::cli::WholeNumber(1, 400));
  app.add_option("--repeats", repeats, "timed runs of each query")
      ->check(deskpulse::cli::WholeNumber(1, 1000));
  bool query_only = false;
  app.add_flag("--query-only", query_only,
               "time the queries on a store an earlier run filled (same --days)");
  if (auto done = deskpulse::cli::Parse(app, argc, argv)) return *done;
  (void)deskpulse::SetUpLogging("store-scale", "warn");

  auto opened = dc::OpenStore({.db = db});
  if (!opened.ok()) {
    std::fprintf(stderr, "store: %s\n", opened.status().message().c_str());
    return 1;
  }
  dc::Store& store = **opened;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  const std::int64_t today = dc::FloorTo(now, dc::kDayMs);

  // Register every endpoint (one stream each).
  const auto t_reg = Clock::now();
  std::vector<std::string> tokens;
  for (int c = 0; !query_only && c < customers; ++c) {
    auto t = store.CreateToken("customer-" + std::to_string(c), now);
    if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().message().c_str()), 1;
    tokens.push_back(*t);
  }
  std::vector<dc::StreamInfo> streams;
  streams.reserve(static_cast<std::size_t>(endpoints));
  for (int first = 0; !query_only && first < endpoints; first += 1000) {
    std::vector<v1::Hello> hellos;
    for (int e = first; e < std::min(endpoints, first + 1000); ++e) {
      v1::Hello h;
      h.set_protocol_version(1);
      h.set_agent_id("ep-" + std::to_string(e));
      h.set_epoch(1);
      h.set_credential(tokens[static_cast<std::size_t>(e % customers)]);
      h.mutable_host()->set_site("site-" + std::to_string(e % 7));
      h.mutable_host()->set_pool("pool-" + std::to_string(e % 3));
      hellos.push_back(std::move(h));
    }
    for (auto& r : store.AuthenticateAndRegister(hellos, now)) {
      if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().message().c_str()), 1;
      streams.push_back(*r);
    }
  }
  const double reg_ms = Ms(Clock::now() - t_reg);

  // D days of one report per endpoint, committed in groups, rolled up daily.
  const auto t_fill = Clock::now();
  std::int64_t reports = 0;
  constexpr int kGroup = 4000;
  for (int d = 0; !query_only && d < days; ++d) {
    const std::int64_t day_start = today - (days - 1 - d) * dc::kDayMs;
    for (int first = 0; first < endpoints; first += kGroup) {
      std::vector<dc::BatchWrite> group;
      for (int e = first; e < std::min(endpoints, first + kGroup); ++e) {
        dc::BatchWrite b;
        b.stream = streams[static_cast<std::size_t>(e)];
        dc::IncomingReport in;
        const std::uint64_t seq = static_cast<std::uint64_t>(d) + 1;
        const std::int64_t offset_ms = std::int64_t{e % 86'000} * 1000 + 3'600'000;
        in.report = MakeReport(seq, day_start + offset_ms, e, d);
        in.bytes = in.report.SerializeAsString();
        b.reports.push_back(std::move(in));
        group.push_back(std::move(b));
      }
      if (auto s = store.CommitBatches(group, now); !s.ok()) {
        return std::fprintf(stderr, "commit: %s\n", s.message().c_str()), 1;
      }
      reports += static_cast<std::int64_t>(group.size());
    }
    if (auto s = store.FlushRollups(); !s.ok()) {
      return std::fprintf(stderr, "rollups: %s\n", s.message().c_str()), 1;
    }
  }
  const double fill_ms = Ms(Clock::now() - t_fill);

  // The score queries, as `scores` runs them.
  deskpulse::scoring::Policy policy;
  policy.window_days = std::min(days, 30);
  const std::int64_t to = today + dc::kDayMs;
  const std::int64_t from = to - policy.window_days * dc::kDayMs;
  auto customers_list = store.ListCustomers();
  if (!customers_list.ok()) return 1;
  std::vector<double> one, all;
  for (int i = 0; i < repeats; ++i) {
    const auto& c = (*customers_list)[static_cast<std::size_t>(i) % customers_list->size()];
    const auto t0 = Clock::now();
    auto w = store.LoadWindow(c.id, from, to);
    if (!w.ok()) return std::fprintf(stderr, "%s\n", w.status().message().c_str()), 1;
    const auto score = deskpulse::scoring::ScoreWindow(*w, policy);
    one.push_back(Ms(Clock::now() - t0));
    if (i == 0 && !score.tps) std::fprintf(stderr, "warning: no TPS for %s\n", c.name.c_str());
  }
  for (int i = 0; i < std::max(3, repeats / 5); ++i) {
    const auto t0 = Clock::now();
    auto scores = dc::ScoreAllCustomers(store, policy, now);
    if (!scores.ok()) return std::fprintf(stderr, "%s\n", scores.status().message().c_str()), 1;
    all.push_back(Ms(Clock::now() - t0));
  }
  std::sort(one.begin(), one.end());
  std::sort(all.begin(), all.end());
  auto median = [](const std::vector<double>& v) { return v[v.size() / 2]; };
  std::printf(
      "{\"backend\":\"%s\",\"endpoints\":%d,\"customers\":%d,\"days\":%d,\"reports\":%lld,"
      "\"register_s\":%.1f,\"fill_s\":%.1f,\"fill_reports_per_s\":%.0f,"
      "\"one_customer_ms\":{\"median\":%.2f,\"max\":%.2f},"
      "\"all_customers_ms\":{\"median\":%.1f,\"max\":%.1f}}\n",
      std::string(store.backend()).c_str(), endpoints, customers, days,
      static_cast<long long>(reports), reg_ms / 1000, fill_ms / 1000,
      static_cast<double>(reports) / (fill_ms / 1000), median(one), one.back(), median(all),
      all.back());
  return 0;
}

int main(int argc, char** argv) {
  return deskpulse::GuardMain("deskpulse-store-scale", [&] { return Main(argc, argv); });
}
