#include "agent/probes/stability/stability_probe.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "agent/platform/libsystemd.h"
#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

constexpr const char* kCoredumpMatch = "MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1";

// A journal field's value ("FIELD=value" → "value"), or "".
std::string Field(const LibSystemd& sd, sd_journal* j, const char* field) {
  const void* data = nullptr;
  std::size_t len = 0;
  if (sd.journal_get_data(j, field, &data, &len) < 0) return {};
  std::string_view v(static_cast<const char*>(data), len);
  const std::size_t eq = v.find('=');
  return eq == std::string_view::npos ? std::string{} : std::string(v.substr(eq + 1));
}

// Journal files live in <dir>/<machine-id>/*.journal.
bool HasJournalFiles(const std::string& dir) {
  std::error_code ec;
  for (const auto& machine : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code ec2;
    for (const auto& f : std::filesystem::directory_iterator(machine.path(), ec2)) {
      const std::string name = f.path().filename().string();
      if (name.size() > 8 && (name.ends_with(".journal") || name.ends_with(".journal~"))) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

StabilityProbe::StabilityProbe(StabilityConfig config, const std::string& state_dir,
                               RunHistory history)
    : config_(std::move(config)),
      cursor_file_(state_dir.empty() ? std::string() : state_dir + "/journal-cursor"),
      history_(std::move(history)) {}

void StabilityProbe::Collect(const CycleContext& ctx, v1::Report& report) {
  v1::StabilityReport* st = report.mutable_stability();
  if (auto up = ReadUptime(config_.proc); up.ok()) {
    st->set_uptime_s(*up > 0 ? static_cast<std::uint64_t>(*up) : 0);  // whole seconds, down
  } else {
    AddUnavailable(report, "stability.uptime", up.status().message());
  }
  if (ctx.first_cycle && !history_.previous_boot_id.empty() && !history_.previous_clean) {
    auto boot_id = ReadBootId(config_.proc);
    auto* crash = st->add_crashes();
    crash->set_at_unix_ms(history_.previous_seen_unix_ms);
    if (boot_id.ok() && *boot_id != history_.previous_boot_id) {
      crash->set_component(v1::CRASH_COMPONENT_OS);
      crash->set_reason("boot " + history_.previous_boot_id +
                        " ended without a clean shutdown (power loss, hard reset or kernel crash)");
      const std::int64_t down = BootedAtUnixMs() - history_.previous_seen_unix_ms;
      if (history_.previous_seen_unix_ms > 0 && down > 0) {
        crash->set_downtime_ms(static_cast<std::uint64_t>(down));
      }
    } else {
      crash->set_component(v1::CRASH_COMPONENT_AGENT);
      crash->set_reason("the agent stopped without a clean shutdown and was restarted");
      const std::int64_t down = ctx.now_unix_ms - history_.previous_seen_unix_ms;
      if (history_.previous_seen_unix_ms > 0 && down > 0) {
        crash->set_downtime_ms(static_cast<std::uint64_t>(down));
      }
    }
  }
  if (config_.journal) CollectCoredumps(report);
}

void StabilityProbe::CollectCoredumps(v1::Report& report) {
  std::string why;
  // No journal files: do not map libsystemd (and its dependencies, ~1 MB) at all.
  if (config_.journal_dir.empty() && !HasJournalFiles("/var/log/journal") &&
      !HasJournalFiles("/run/log/journal")) {
    why =
        "no systemd journal on this machine (no journal files under /var/log/journal or "
        "/run/log/journal)";
  }
  auto lib = why.empty() ? LibSystemd::Get() : Result<const LibSystemd*>(Unavailable(why));
  if (why.empty() && !lib.ok()) why = lib.status().message();
  if (!why.empty()) {
    if (!journal_reported_) AddUnavailable(report, "stability.crashes", why);
    journal_reported_ = true;
    return;
  }
  const LibSystemd& sd = **lib;
  sd_journal* j = nullptr;
  int r = config_.journal_dir.empty()
              ? sd.journal_open(&j, SD_JOURNAL_LOCAL_ONLY)
              : sd.journal_open_directory(&j, config_.journal_dir.c_str(), 0);
  if (r < 0) {
    if (!journal_reported_) {
      AddUnavailable(report, "stability.crashes",
                     std::string("cannot open the journal: ") + std::strerror(-r));
    }
    journal_reported_ = true;
    return;
  }
  sd.journal_add_match(j, kCoredumpMatch, 0);
  // Resume after the last record seen. On the very first run start at the
  // end, so old history is not reported as new crashes.
  auto cursor = cursor_file_.empty() ? std::nullopt : ReadLine(cursor_file_);
  if (!cursor && journal_positioned_) cursor = std::string();  // was empty: read from the head
  std::string last_cursor;
  if (cursor && !cursor->empty() && sd.journal_seek_cursor(j, cursor->c_str()) >= 0) {
    // journal_next() lands on the cursor's own record first: skipped below.
  } else if (cursor) {
    sd.journal_seek_head(j);
  } else {
    sd.journal_seek_tail(j);
    if (sd.journal_previous(j) > 0) {
      char* c = nullptr;
      if (sd.journal_get_cursor(j, &c) >= 0 && c != nullptr) {
        last_cursor = c;
        std::free(c);
      }
    }
  }
  journal_positioned_ = true;
  int taken = 0;
  while (sd.journal_next(j) > 0) {
    char* c = nullptr;
    if (sd.journal_get_cursor(j, &c) >= 0 && c != nullptr) {
      last_cursor = c;
      std::free(c);
    }
    if (cursor && last_cursor == *cursor) continue;
    if (++taken > 100) break;  // a crash storm: report the first hundred this cycle
    const std::string comm = Field(sd, j, "COREDUMP_COMM");
    const std::string exe = Field(sd, j, "COREDUMP_EXE");
    const std::string signal = Field(sd, j, "COREDUMP_SIGNAL_NAME");
    v1::CrashComponent component = v1::CRASH_COMPONENT_UNSPECIFIED;
    if (comm == "deskpulse-agent") {
      component = v1::CRASH_COMPONENT_AGENT;
    } else if (std::find(config_.vdi_clients.begin(), config_.vdi_clients.end(), comm) !=
               config_.vdi_clients.end()) {
      component = v1::CRASH_COMPONENT_VDI_CLIENT;
    } else {
      continue;  // other programs' crashes are not the desktop's stability signal
    }
    std::uint64_t usec = 0;
    sd.journal_get_realtime_usec(j, &usec);
    auto* crash = report.mutable_stability()->add_crashes();
    crash->set_component(component);
    crash->set_at_unix_ms(static_cast<std::int64_t>(usec / 1000));
    crash->set_reason((exe.empty() ? comm : exe) + " dumped core" +
                      (signal.empty() ? "" : " (" + signal + ")"));
  }
  sd.journal_close(j);
  if (!cursor_file_.empty() && !last_cursor.empty() && (!cursor || last_cursor != *cursor)) {
    (void)WriteFileAtomically(cursor_file_, last_cursor + "\n");
  }
}

}  // namespace deskpulse::agent
