#include "agent/core/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "agent/core/identity.h"
#include "agent/platform/proc.h"
#include "agent/probes/builtin.h"
#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/report_limits.h"
#include "deskpulse/common/tls_mbedtls.h"

namespace deskpulse::agent {
namespace {

constexpr std::int64_t kUnavailableRepeatMs = std::int64_t{3600} * 1000;

std::uint64_t CpuUs() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000 +
         static_cast<std::uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

std::uint64_t RssBytes() {
  auto statm = ReadLine("/proc/self/statm");
  if (!statm) return 0;
  std::istringstream in(*statm);
  std::uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::string OsName() {
  auto text = ReadSmallFile("/etc/os-release");
  if (!text.ok()) return "Linux";
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("PRETTY_NAME=")) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return "Linux";
}

}  // namespace

Agent::Agent(AgentConfig config) : config_(std::move(config)) {}
Agent::~Agent() = default;

Result<std::unique_ptr<Agent>> Agent::Create(AgentConfig config, bool once) {
  std::unique_ptr<Agent> a(new Agent(std::move(config)));
  a->once_ = once;
  const AgentConfig& c = a->config_;
  if (auto b = ReadBootId(c.stability.proc); b.ok()) a->boot_id_ = *b;
  if (once) {
    a->probes_ = BuiltinProbes(c, "", a->history_);
    return a;
  }
  std::error_code ec;
  std::filesystem::create_directories(c.state_dir, ec);
  if (ec) return IoError("cannot create state_dir " + c.state_dir + ": " + ec.message());
  ::chmod(c.state_dir.c_str(), 0700);

  auto id = LoadOrCreateIdentity(c.state_dir, c.machine_id_file);
  if (!id.ok()) return id.status();
  a->agent_id_ = id->agent_id;
  const std::string spool_dir = c.state_dir + "/spool";
  if (!id->created_because.empty()) {
    spdlog::info("new agent identity {}: {}", id->agent_id, id->created_because);
    // Reports spooled under another identity (the image's template) are not ours to send.
    std::filesystem::remove_all(spool_dir, ec);
  }

  // How the previous run ended.
  const std::string run_file = c.state_dir + "/run";
  if (auto text = ReadSmallFile(run_file); text.ok()) {
    std::istringstream in(*text);
    std::string key;
    while (in >> key) {
      if (key == "boot_id")
        in >> a->history_.previous_boot_id;
      else if (key == "clean") {
        int v = 1;
        in >> v;
        a->history_.previous_clean = v != 0;
      } else if (key == "seen")
        in >> a->history_.previous_seen_unix_ms;
      else if (key == "starts")
        in >> a->history_.restarts;
    }
  }

  auto spool = Spool::Open({spool_dir, c.spool_max_bytes, c.spool_fsync});
  if (!spool.ok()) return spool.status();
  a->spool_ = std::move(*spool);
  if (!a->spool_->recovery_note().empty()) {
    spdlog::warn("{}: starting epoch {}", a->spool_->recovery_note(), a->spool_->epoch());
  }
  a->probes_ = BuiltinProbes(c, c.state_dir, a->history_);
  a->WriteRunState(false);
  return a;
}

void Agent::WriteRunState(bool clean) {
  std::ostringstream s;
  s << "boot_id " << (boot_id_.empty() ? "-" : boot_id_) << "\nclean " << (clean ? 1 : 0)
    << "\nseen " << NowUnixMs() << "\nstarts " << history_.restarts + 1 << "\n";
  std::string text = s.str();
  const std::string path = config_.state_dir + "/run";
  if (clean || run_fd_ < 0) {
    // Start and clean stop: durably, by rename.
    if (run_fd_ >= 0) {
      ::close(run_fd_);
      run_fd_ = -1;
    }
    if (Status st = WriteFileAtomically(path, text); !st.ok()) spdlog::warn("{}", st.message());
    if (!clean) run_fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    return;
  }
  // The per-cycle heartbeat: the same block rewritten in place, padded to a
  // fixed size, without an fsync (old or new content survives a power loss;
  // the "seen" time is then at most a writeback interval old).
  text.resize(std::max<std::size_t>(text.size(), 160), ' ');
  if (::pwrite(run_fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    spdlog::warn("{}: {}", path, std::strerror(errno));
  }
}

void Agent::SpoolReport(v1::Report& report) {
  // Within the wire's limits, so the collector never refuses what we made.
  if (const std::size_t cut = ClampReport(&report); cut > 0 && !warned_clamp_) {
    warned_clamp_ = true;
    spdlog::warn("report cut to the wire's limits ({} fields over them; docs/protocol.md)", cut);
  }
  auto seq = spool_->Append(report, /*sync=*/false);
  if (!seq.ok()) {
    spdlog::error("spool: {}", seq.status().message());
    return;
  }
  if (uplink_) uplink_->Notify();
  if (sync_armed_) return;  // the pending sync covers this report too
  sync_armed_ = true;
  sync_timer_->expires_after(std::chrono::milliseconds(500));
  sync_timer_->async_wait([this](std::error_code ec) {
    sync_armed_ = false;
    if (ec || spool_->acked_through() >= spool_->last_seq()) return;
    if (Status st = spool_->Sync(); !st.ok()) spdlog::error("spool: {}", st.message());
  });
}

void Agent::Dedup(v1::Report& report) {
  const std::int64_t now = report.observed_at_unix_ms();
  auto* list = report.mutable_unavailable();
  std::map<std::string, std::pair<std::string, std::int64_t>> next;
  for (int i = 0; i < list->size();) {
    const auto& u = list->Get(i);
    auto it = unavailable_sent_.find(u.measurement());
    const bool repeat = it != unavailable_sent_.end() && it->second.first == u.reason() &&
                        now - it->second.second < kUnavailableRepeatMs;
    next[u.measurement()] = repeat ? it->second : std::make_pair(u.reason(), now);
    if (repeat) {
      list->DeleteSubrange(i, 1);
    } else {
      ++i;
    }
  }
  unavailable_sent_ = std::move(next);
}

v1::Report Agent::Cycle(bool first) {
  v1::Report report;
  CycleContext ctx;
  ctx.now_unix_ms = NowUnixMs();
  ctx.window_s = static_cast<std::uint32_t>(config_.interval_s);
  ctx.first_cycle = first;
  report.set_observed_at_unix_ms(ctx.now_unix_ms);
  for (auto& probe : probes_) probe->Collect(ctx, report);

  v1::AgentHealth* h = report.mutable_agent_health();
  if (const std::uint64_t rss = RssBytes(); rss > 0) h->set_rss_bytes(rss);
  const std::uint64_t cpu = CpuUs();
  if (!first) h->set_cpu_us(cpu - last_cpu_us_);  // over the whole interval
  last_cpu_us_ = cpu;
  h->set_restarts(history_.restarts);  // starts before this one
  if (spool_) {
    const SpoolStats s = spool_->stats();
    h->set_spool_depth_reports(s.depth_reports);
    h->set_spool_bytes(s.bytes);
    h->set_dropped_reports(s.dropped_reports);
    h->set_corrupt_records(s.corrupt_records);
    h->set_rejected_reports(s.rejected_reports);
    h->set_lost_state_events(s.lost_state_events);
    h->set_collector_regressions(s.collector_regressions);
  }
  return report;
}

v1::Report Agent::CollectOnce() { return Cycle(true); }

void Agent::ArmCycle() {
  cycle_timer_->expires_after(std::chrono::seconds(config_.interval_s));
  cycle_timer_->async_wait([this](std::error_code ec) {
    if (ec) return;
    v1::Report report = Cycle(first_cycle_);
    first_cycle_ = false;
    Dedup(report);
    if (sink_) sink_(report);
    SpoolReport(report);
    WriteRunState(false);
    ArmCycle();
  });
}

int Agent::Run() {
  if (config_.has_collector) {
    UplinkOptions o;
    o.collectors = config_.collectors;
    o.credential = config_.token;
    o.agent_id = agent_id_;
    o.epoch = spool_->epoch();
    o.max_batch_reports = static_cast<std::size_t>(config_.batch_reports);
    o.backoff_max = std::chrono::seconds(config_.backoff_max_s);
    o.refused_backoff_min = std::chrono::seconds(config_.refused_retry_min_s);
    o.refused_backoff_max = std::chrono::seconds(config_.refused_retry_max_s);
    o.log_connection_changes = true;
    if (!config_.ca_file.empty()) {
      auto tls = MakeMbedTlsClient(TlsOptions{.ca_file = config_.ca_file});
      if (!tls.ok()) {
        spdlog::error("collector.ca_file: {}", tls.status().message());
        return kExitUsage;
      }
      o.tls = *tls;
    } else if (!config_.plaintext) {
      for (const auto& c : config_.collectors) {
        if (IsLoopbackHost(c.host)) continue;
        spdlog::error(
            "{}: collector {} is not a loopback address: set collector.ca_file for "
            "TLS, or collector.plaintext = true",
            config_.source, c.host);
        return kExitUsage;
      }
    }
    utsname u{};
    ::uname(&u);
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    o.host.set_hostname(host);
    o.host.set_os(OsName());
    o.host.set_kernel(u.release);
    o.host.set_agent_version(DESKPULSE_VERSION);
    o.host.set_role(config_.role);
    o.host.set_site(config_.site);
    o.host.set_pool(config_.pool);
    std::uint64_t seed = 0;
    for (char ch : agent_id_) seed = seed * 131 + static_cast<unsigned char>(ch);
    uplink_ = std::make_unique<Uplink>(io_.get_executor(), std::move(o), *spool_, seed);
    asio::co_spawn(io_, uplink_->Run(), asio::detached);
  } else {
    spdlog::warn("{}: no collector.address: reports stay in the spool", config_.source);
  }

  // Before anything else runs: a stop during start-up is still a clean stop.
  cycle_timer_ = std::make_unique<asio::steady_timer>(io_);
  sync_timer_ = std::make_unique<asio::steady_timer>(io_);
  asio::signal_set signals(io_, SIGTERM, SIGINT);
  signals.async_wait([this](std::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    cycle_timer_->cancel();  // the first cycle may not have armed it yet: harmless
    if (uplink_) uplink_->Stop();
    io_.stop();
  });
  sigset_t stop;  // held since main(): deliver any that arrived meanwhile
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);

  for (auto& p : probes_) p->Start(io_.get_executor());
  // The first report goes out at once, then every interval.
  cycle_timer_->expires_after(std::chrono::seconds(0));
  {
    v1::Report report = Cycle(true);
    first_cycle_ = false;
    Dedup(report);
    if (sink_) sink_(report);
    SpoolReport(report);
  }
  ArmCycle();

  spdlog::info("agent {} epoch {} started: interval {} s, {} probes, spool {}", agent_id_,
               spool_->epoch(), config_.interval_s, probes_.size(), config_.state_dir + "/spool");
  io_.run();
  if (Status st = spool_->Sync(); !st.ok()) spdlog::error("spool: {}", st.message());
  WriteRunState(true);
  return kExitOk;
}

}  // namespace deskpulse::agent
