// deskpulse-fleetsim: N simulated agents of M customers speaking the real protocol.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "agent/fleetsim/model.h"
#include "agent/uplink/uplink.h"
#include "deskpulse/common/cli.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/host_port.h"
#include "deskpulse/common/logging.h"
#include "deskpulse/common/text.h"
#include "deskpulse/common/tls_openssl.h"

namespace dp = deskpulse;
namespace fs = deskpulse::fleetsim;
namespace v1 = deskpulse::v1;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Flags {
  std::string collector;
  std::string tokens;
  std::string catalog;
  int endpoints = 0;
  int days = 0;
  std::uint64_t seed = 1;
  double duration_s = 0;
  double rate = 0;
  int live_interval_s = 10;
  int batch = 100;
  int window = 2;
  int linger_ms = 0;
  std::string ca_file;
  bool plaintext = false;
  std::shared_ptr<dp::TlsClient> tls;  // built from ca_file
  double timeout_s = 600;
  std::string acked_file;
  double progress_s = 0;
  std::string log_level = "info";
  double ramp_s = 0;
  std::string from;                                // --from, as given
  std::vector<asio::ip::address> local_addresses;  // parsed from it
};

/// --from: addresses, or IPv4 ranges such as 127.0.1.1-127.0.1.16.
dp::Result<std::vector<asio::ip::address>> ParseFrom(const std::string& list) {
  std::vector<asio::ip::address> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    at = comma + 1;
    const std::size_t dash = item.find('-');
    asio::error_code ec;
    const auto first = asio::ip::make_address(item.substr(0, dash), ec);
    if (ec) return dp::InvalidArgument("--from: '" + item + "' is not an address");
    if (dash == std::string::npos) {
      out.push_back(first);
      continue;
    }
    const auto last = asio::ip::make_address(item.substr(dash + 1), ec);
    if (ec || !first.is_v4() || !last.is_v4() || last.to_v4().to_uint() < first.to_v4().to_uint() ||
        last.to_v4().to_uint() - first.to_v4().to_uint() >= 4096) {
      return dp::InvalidArgument("--from: '" + item +
                                 "' is not a range of at most 4,096 IPv4 addresses");
    }
    for (auto a = first.to_v4().to_uint(); a <= last.to_v4().to_uint(); ++a) {
      out.emplace_back(asio::ip::address_v4(a));
    }
  }
  return out;
}

/// One simulated agent: its endpoint model, the reports not yet acknowledged,
/// and its uplink.
class SimAgent : public dp::agent::ReportQueue {
 public:
  SimAgent(asio::io_context& io, const fs::CustomerSpec& customer,
           const fs::CustomerDevices& devices, int index, const Flags& f,
           const std::vector<dp::HostPort>& collectors, std::int64_t history_start_ms)
      : endpoint_(customer, devices, index, f.seed, history_start_ms),
        history_done_(f.days <= 0),
        linger_ms_(f.linger_ms),
        batch_(static_cast<std::size_t>(f.batch)),
        uplink_(io.get_executor(), MakeOptions(customer, endpoint_, index, f, collectors), *this,
                f.seed * 7919 + static_cast<std::uint64_t>(index)) {}

  void Peek(std::uint64_t after_seq, std::size_t max,
            std::vector<std::pair<std::uint64_t, std::string>>* out) override {
    auto it = std::upper_bound(pending_.begin(), pending_.end(), after_seq,
                               [](std::uint64_t s, const auto& p) { return s < p.first; });
    for (; it != pending_.end() && out->size() < max; ++it) out->push_back(*it);
  }
  void Acknowledge(std::uint64_t seq) override {
    while (!pending_.empty() && pending_.front().first <= seq) pending_.pop_front();
  }

  /// Generate up to `budget` reports; returns how many were made.
  std::size_t Produce(std::size_t budget, std::int64_t now_ms, bool live, std::size_t cap,
                      std::uint32_t live_window_s) {
    std::size_t made = 0;
    v1::Report r;
    while (made < budget && pending_.size() < cap) {
      if (!history_done_) {
        if (!endpoint_.NextHistory(now_ms, &r)) {
          history_done_ = true;
          continue;
        }
      } else if (live) {
        endpoint_.Live(now_ms, live_window_s, &r);
      } else {
        break;
      }
      pending_.emplace_back(r.seq(), r.SerializeAsString());
      ++made;
    }
    generated_ += made;
    // With a linger the uplink wakes itself for part-full batches; waking it on
    // every report would cost a coroutine resume per agent per tick.
    if (made > 0 && (linger_ms_ == 0 || pending_.size() >= batch_)) uplink_.Notify();
    return made;
  }

  bool history_done() const { return history_done_; }
  bool drained() const { return pending_.empty(); }
  std::size_t pending() const { return pending_.size(); }
  std::uint64_t generated() const { return generated_; }
  dp::agent::Uplink& uplink() { return uplink_; }
  const fs::SimEndpoint& endpoint() const { return endpoint_; }

 private:
  static dp::agent::UplinkOptions MakeOptions(const fs::CustomerSpec& c, const fs::SimEndpoint& ep,
                                              int index, const Flags& f,
                                              const std::vector<dp::HostPort>& collectors) {
    dp::agent::UplinkOptions o;
    o.collectors = collectors;
    o.credential = c.token;
    o.agent_id = ep.agent_id();
    o.host = ep.facts();
    o.epoch = 1;
    o.max_batch_reports = static_cast<std::size_t>(f.batch);
    o.max_inflight_batches = f.window;
    o.linger = std::chrono::milliseconds(f.linger_ms);
    o.tls = f.tls;
    o.backoff_min = std::chrono::milliseconds(100);
    o.backoff_max = std::chrono::milliseconds(5000);
    if (!f.local_addresses.empty()) {
      o.local_address =
          f.local_addresses[static_cast<std::size_t>(index) % f.local_addresses.size()];
    }
    return o;
  }

  fs::SimEndpoint endpoint_;
  std::deque<std::pair<std::uint64_t, std::string>> pending_;
  bool history_done_;
  int linger_ms_;
  std::size_t batch_;
  std::uint64_t generated_ = 0;
  dp::agent::Uplink uplink_;
};

asio::awaitable<void> RunAfter(asio::io_context& io, Clock::duration delay, SimAgent* agent) {
  if (delay > Clock::duration::zero()) {
    asio::steady_timer wait(io, delay);
    co_await wait.async_wait(asio::use_awaitable);
  }
  co_await agent->uplink().Run();
}

int Run(Flags f) {
  auto collectors = dp::ParseHostPortList(f.collector, "--collector");
  if (!collectors.ok()) {
    spdlog::error("{}", collectors.status().message());
    return dp::kExitUsage;
  }
  if (!f.from.empty()) {
    auto from = ParseFrom(f.from);
    if (!from.ok()) {
      spdlog::error("{}", from.status().message());
      return dp::kExitUsage;
    }
    f.local_addresses = std::move(*from);
  }
  if (!f.ca_file.empty()) {
    auto tls = dp::MakeOpenSslClient({.ca_file = f.ca_file});
    if (!tls.ok()) {
      spdlog::error("--ca: {}", tls.status().message());
      return dp::kExitUsage;
    }
    f.tls = *tls;
  } else if (!f.plaintext) {
    for (const auto& c : *collectors) {
      if (dp::IsLoopbackHost(c.host)) continue;
      spdlog::error(
          "--collector {} is not a loopback address: give --ca to connect over TLS, "
          "or --plaintext to send credentials in clear explicitly",
          c.host);
      return dp::kExitUsage;
    }
  }
  auto customers = fs::ParseTokensFile(f.tokens);
  if (!customers.ok()) {
    spdlog::error("{}", customers.status().message());
    return dp::ExitCodeFor(customers.status());
  }
  // Each customer's device models, drawn from the peripheral catalog (real ids).
  std::vector<fs::CustomerDevices> devices;
  for (const auto& c : *customers) {
    auto d = fs::DrawCustomerDevices(f.catalog, c.name, f.seed);
    if (!d.ok()) {
      spdlog::error("--catalog: {} (build one with: deskpulse-catalog build --out FILE)",
                    d.status().message());
      return dp::ExitCodeFor(d.status());
    }
    devices.push_back(std::move(*d));
  }
  asio::io_context io(1);
  // --progress: each interval's acknowledgements and their latency, so that a
  // long run's tail can be placed in time.
  std::vector<dp::SparseHistogram::Cell> progress_before;
  std::uint64_t progress_acked_before = 0;
  auto progress_next = Clock::now();
  const auto progress_t0 = Clock::now();
  const std::int64_t start_ms = NowMs();
  const std::int64_t history_start = start_ms - static_cast<std::int64_t>(f.days) * 86'400'000;

  std::vector<std::unique_ptr<SimAgent>> agents;
  agents.reserve(static_cast<std::size_t>(f.endpoints));
  for (int i = 0; i < f.endpoints; ++i) {
    // Deal endpoints to customers in turn; the model gets the endpoint's index
    // within its customer, which also picks its site.
    const auto n = static_cast<int>(customers->size());
    const auto& c = (*customers)[static_cast<std::size_t>(i % n)];
    agents.push_back(std::make_unique<SimAgent>(io, c, devices[static_cast<std::size_t>(i % n)],
                                                i / n, f, *collectors, history_start));
  }
  // --ramp: agents come up one after another over that time, as a fleet
  // does, rather than all in the same millisecond.
  for (std::size_t i = 0; i < agents.size(); ++i) {
    const auto delay = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
        f.ramp_s * static_cast<double>(i) / static_cast<double>(agents.size())));
    asio::co_spawn(io, RunAfter(io, delay, agents[i].get()), asio::detached);
  }

  // A ticker feeds every agent: as fast as the window allows when --rate is 0,
  // else an even share of --rate. Live reports start once history is sent.
  const auto t0 = Clock::now();
  const auto live_until =
      t0 + std::chrono::milliseconds(static_cast<std::int64_t>(f.duration_s * 1000));
  const auto give_up =
      t0 + std::chrono::milliseconds(static_cast<std::int64_t>(f.timeout_s * 1000));
  const std::size_t cap =
      static_cast<std::size_t>(f.batch) * static_cast<std::size_t>(f.window) * 2;
  const double per_agent_rate = f.rate > 0 ? f.rate / f.endpoints : 0;
  std::vector<double> credit(agents.size(), 0.0);
  std::vector<Clock::time_point> next_live(agents.size(), t0);
  int exit_code = dp::kExitOk;
  bool finished = false;
  asio::steady_timer tick(io);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  auto signals_cancel = [&] {
    asio::error_code ignored;
    signals.cancel(ignored);
  };
  auto last = t0;
  std::function<void()> on_tick = [&] {
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - last).count();
    last = now;
    const bool live = now < live_until;
    const std::int64_t wall_ms = NowMs();
    bool all_done = true;
    bool all_refused = true;
    for (std::size_t i = 0; i < agents.size(); ++i) {
      auto& a = *agents[i];
      all_refused = all_refused && a.uplink().refused();
      std::size_t budget = cap;
      if (per_agent_rate > 0) {
        credit[i] = std::min(credit[i] + per_agent_rate * dt, per_agent_rate + 1.0);
        budget = static_cast<std::size_t>(credit[i]);
      }
      bool live_now = false;
      if (live && a.history_done()) {
        if (per_agent_rate > 0) {
          live_now = true;
        } else if (now >= next_live[i]) {
          live_now = true;
          budget = 1;
          next_live[i] = now + std::chrono::seconds(f.live_interval_s);
        }
      }
      const std::size_t made =
          a.Produce(budget, wall_ms, live_now, cap, static_cast<std::uint32_t>(f.live_interval_s));
      if (per_agent_rate > 0) credit[i] -= static_cast<double>(made);
      if (!a.history_done() || !a.drained() || live) all_done = false;
    }
    if (f.progress_s > 0 && now >= progress_next) {
      progress_next =
          now + std::chrono::milliseconds(static_cast<std::int64_t>(f.progress_s * 1000));
      std::vector<dp::SparseHistogram::Cell> cells;
      std::uint64_t acked_now = 0;
      for (auto& a : agents) {
        const auto& c = a->uplink().stats().ack_latency_us.cells();
        cells.insert(cells.end(), c.begin(), c.end());
        acked_now += a->uplink().acked_through();
      }
      const dp::SparseHistogram total = dp::SparseHistogram::FromCells(std::move(cells));
      dp::SparseHistogram interval;  // total minus what the previous line had
      std::size_t j = 0;
      for (const auto& [key, weight] : total.cells()) {
        while (j < progress_before.size() && progress_before[j].first < key) ++j;
        const std::uint64_t had = j < progress_before.size() && progress_before[j].first == key
                                      ? progress_before[j].second
                                      : 0;
        if (weight > had) interval.Add(key, weight - had);
      }
      progress_before = total.cells();
      std::cerr << nlohmann::json{{"t_s", std::chrono::duration<double>(now - progress_t0).count()},
                                  {"acked_per_s",
                                   static_cast<double>(acked_now - progress_acked_before) /
                                       f.progress_s},
                                  {"ack_ms",
                                   {{"p50", interval.Quantile(0.50) / 1000},
                                    {"p99", interval.Quantile(0.99) / 1000},
                                    {"max", interval.Quantile(1.0) / 1000}}}}
                       .dump()
                << std::endl;
      progress_acked_before = acked_now;
    }
    if (all_done || all_refused || now >= give_up) {
      if (!all_done) exit_code = all_refused ? dp::kExitAuth : dp::kExitIncomplete;
      finished = true;
      signals_cancel();
      for (auto& a : agents) a->uplink().Stop();
      return;
    }
    tick.expires_after(std::chrono::milliseconds(10));
    tick.async_wait([&](const asio::error_code& ec) {
      if (!ec) on_tick();
    });
  };
  signals.async_wait([&](const asio::error_code& ec, int) {
    if (ec || finished) return;
    spdlog::warn("interrupted: stopping with reports unacknowledged");
    exit_code = dp::kExitIncomplete;
    finished = true;
    tick.cancel();
    for (auto& a : agents) a->uplink().Stop();
  });
  on_tick();
  io.run();  // returns once every uplink has stopped
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  std::uint64_t generated = 0;
  std::uint64_t acked = 0;
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t sent = 0;
  std::uint64_t failovers = 0;
  std::map<std::string, std::uint64_t> per_collector;  // where each endpoint ended up
  dp::SparseHistogram latency;
  for (auto& a : agents) {
    generated += a->generated();
    acked += a->uplink().acked_through();
    const auto& st = a->uplink().stats();
    connects += st.connects;
    connect_failures += st.connect_failures;
    sent += st.reports_sent;
    failovers += a->uplink().failovers();
    const auto& on = a->uplink().collector();
    per_collector[on.host + ":" + std::to_string(on.port)] += 1;
    latency.Merge(st.ack_latency_us);
  }
  if (!f.acked_file.empty()) {
    std::ofstream out(f.acked_file);
    for (auto& a : agents) {
      out << a->endpoint().agent_id() << " 1 " << a->uplink().acked_through() << " "
          << a->generated() << "\n";
    }
  }
  nlohmann::json summary = {{"endpoints", f.endpoints},
                            {"customers", customers->size()},
                            {"reports_generated", generated},
                            {"reports_acked", acked},
                            {"reports_sent", sent},
                            {"resent", sent > acked ? sent - acked : 0},
                            {"connects", connects},
                            {"connect_failures", connect_failures},
                            {"failovers", failovers},
                            {"endpoints_by_collector", per_collector},
                            {"elapsed_s", elapsed},
                            {"acked_per_s", elapsed > 0 ? static_cast<double>(acked) / elapsed : 0},
                            {"ack_latency_ms",
                             {{"p50", latency.Quantile(0.50) / 1000},
                              {"p90", latency.Quantile(0.90) / 1000},
                              {"p99", latency.Quantile(0.99) / 1000},
                              {"max", latency.Quantile(1.0) / 1000}}}};
  std::cout << summary.dump() << std::endl;
  spdlog::info(
      "{} of {}: {} generated, {} acknowledged in {:.1f} s "
      "({:.0f}/s), ack p50 {:.1f} ms p99 {:.1f} ms, {} connects",
      dp::Counted(f.endpoints, "endpoint"),
      dp::Counted(static_cast<std::int64_t>(customers->size()), "customer"),
      dp::Counted(static_cast<std::int64_t>(generated), "report"), acked, elapsed,
      elapsed > 0 ? static_cast<double>(acked) / elapsed : 0.0, latency.Quantile(0.5) / 1000,
      latency.Quantile(0.99) / 1000, connects);
  if (exit_code == dp::kExitOk && acked != generated) exit_code = dp::kExitIncomplete;
  return exit_code;
}

}  // namespace

static int Main(int argc, char** argv) {
  CLI::App app{
      "deskpulse-fleetsim: simulates a fleet of DeskPulse agents of several customers "
      "speaking the real protocol to a collector.",
      "deskpulse-fleetsim"};
  app.set_version_flag("--version", std::string("deskpulse-fleetsim ") + DESKPULSE_VERSION);
  app.footer(
      "Prints a one-line JSON summary on stdout. Exit codes: 0 all acknowledged, 2 bad "
      "usage, 5 tokens file not found, 6 every credential refused, 7 reports left "
      "unacknowledged (timeout or interrupt).");
  Flags f;
  app.add_option("--collector", f.collector,
                 "collector HOST:PORT, or several sharing one store, comma-separated (each "
                 "endpoint starts at a random one and fails over to the next)")
      ->required();
  app.add_option("--tokens", f.tokens, "file of `customer token profile` lines")->required();
  app.add_option("--catalog", f.catalog,
                 "peripheral catalog (deskpulse-catalog build) the devices are drawn from")
      ->required();
  app.add_option("--endpoints", f.endpoints, "simulated endpoints, spread over the customers")
      ->required()
      ->check(dp::cli::WholeNumber(1, 1'000'000));
  app.add_option("--days", f.days, "days of history to backfill (simulated timestamps)")
      ->check(dp::cli::WholeNumber(0, 400));
  app.add_option("--seed", f.seed, "random seed (same seed, same fleet)");
  app.add_option("--duration", f.duration_s, "seconds of live reporting after the backfill")
      ->check(dp::cli::Number(0.0, 86400.0));
  app.add_option("--rate", f.rate, "total reports/s across the fleet (0: as fast as acks allow)")
      ->check(dp::cli::Number(0.0, 10'000'000.0));
  app.add_option("--interval", f.live_interval_s, "live report interval per agent, s (--rate 0)")
      ->check(dp::cli::WholeNumber(1, 3600));
  app.add_option("--batch", f.batch, "most reports per Batch")
      ->check(dp::cli::WholeNumber(1, 100000));
  app.add_option("--window", f.window, "Batches in flight per agent")
      ->check(dp::cli::WholeNumber(1, 64));
  app.add_option("--linger", f.linger_ms, "ms to let a part-full batch fill (0: send at once)")
      ->check(dp::cli::WholeNumber(0, 60000));
  app.add_option("--ca", f.ca_file, "PEM CA that signed the collector's certificate: use TLS");
  app.add_flag("--plaintext", f.plaintext, "plain TCP to a non-loopback collector");
  app.add_option("--timeout", f.timeout_s, "give up after this many seconds")
      ->check(dp::cli::Number(1.0, 864000.0));
  app.add_option("--acked-file", f.acked_file,
                 "write `agent_id epoch acked_through_seq generated` per agent");
  app.add_option("--progress", f.progress_s,
                 "every this many seconds, a JSON line on stderr: that interval's acks and "
                 "their latency")
      ->check(dp::cli::Number(0.1, 3600.0));
  app.add_option("--ramp", f.ramp_s,
                 "seconds over which the endpoints come up one after another (0: all at once, "
                 "a reconnect storm)")
      ->check(dp::cli::Number(0.0, 3600.0));
  app.add_option("--from", f.from,
                 "connect from these local addresses, endpoint i from the i-th (modulo): "
                 "addresses or IPv4 ranges, comma-separated, e.g. 127.0.1.1-127.0.1.16 so that a "
                 "collector on loopback sees 16 peers rather than one");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error")
      ->check(dp::cli::OneOf({"trace", "debug", "info", "warn", "error", "off"}));
  if (auto done = dp::cli::Parse(app, argc, argv)) return *done;
  if (auto s = dp::SetUpLogging("fleetsim", f.log_level); !s.ok()) {
    std::cerr << "deskpulse-fleetsim: " << s.message() << "\n";
    return dp::kExitUsage;
  }
  return Run(f);
}

int main(int argc, char** argv) {
  return dp::GuardMain("deskpulse-fleetsim", [&] { return Main(argc, argv); });
}
