#include "agent/probes/boot/boot_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "agent/platform/libsystemd.h"
#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kLogind = "org.freedesktop.login1";

// Whole milliseconds, truncated: systemd-analyze prints 332.503 ms as "332ms".
std::uint64_t Ms(std::uint64_t us) { return us / 1000; }

std::optional<std::uint64_t> ParseU64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p == s.data()) return std::nullopt;
  return v;
}

// The earliest greeter (login screen) session's start, µs CLOCK_MONOTONIC.
std::optional<std::uint64_t> GreeterStartUs(const BusConnection& bus) {
  const LibSystemd& sd = bus.sd();
  sd_bus_error error{nullptr, nullptr, 0};  // SD_BUS_ERROR_NULL (a C99 compound literal)
  sd_bus_message* reply = nullptr;
  int r = sd.bus_call_method(bus.get(), kLogind, "/org/freedesktop/login1",
                             "org.freedesktop.login1.Manager", "ListSessions", &error, &reply, "");
  sd.error_free(&error);
  if (r < 0) return std::nullopt;
  std::vector<std::string> paths;
  if (sd.message_enter_container(reply, 'a', "(susso)") >= 0) {
    const char *id = nullptr, *user = nullptr, *seat = nullptr, *path = nullptr;
    std::uint32_t uid = 0;
    while (sd.message_read(reply, "(susso)", &id, &uid, &user, &seat, &path) > 0) {
      paths.emplace_back(path);
    }
    sd.message_exit_container(reply);
  }
  sd.message_unref(reply);
  std::optional<std::uint64_t> earliest;
  for (const auto& p : paths) {
    auto cls = bus.GetString(kLogind, p.c_str(), "org.freedesktop.login1.Session", "Class");
    if (!cls.ok() || *cls != "greeter") continue;
    auto ts =
        bus.GetU64(kLogind, p.c_str(), "org.freedesktop.login1.Session", "TimestampMonotonic");
    if (ts.ok() && *ts > 0 && (!earliest || *ts < *earliest)) earliest = *ts;
  }
  return earliest;
}

// default.target (graphical or multi-user on kiosks) reached, µs CLOCK_MONOTONIC.
std::optional<std::uint64_t> DefaultTargetUs(const BusConnection& bus) {
  const LibSystemd& sd = bus.sd();
  sd_bus_error error{nullptr, nullptr, 0};  // SD_BUS_ERROR_NULL (a C99 compound literal)
  sd_bus_message* reply = nullptr;
  int r = sd.bus_call_method(bus.get(), kSystemd, kManagerPath, kManager, "GetUnit", &error, &reply,
                             "s", "default.target");
  sd.error_free(&error);
  if (r < 0) return std::nullopt;
  const char* path = nullptr;
  std::string unit;
  if (sd.message_read(reply, "o", &path) > 0 && path != nullptr) unit = path;
  sd.message_unref(reply);
  if (unit.empty()) return std::nullopt;
  auto ts = bus.GetU64(kSystemd, unit.c_str(), "org.freedesktop.systemd1.Unit",
                       "ActiveEnterTimestampMonotonic");
  if (!ts.ok() || *ts == 0) return std::nullopt;
  return *ts;
}

}  // namespace

void ComputePhases(const ManagerTimestamps& t, v1::BootReport* out) {
  if (t.in_container) {
    if (t.finish_us >= t.userspace_us && t.userspace_us > 0) {
      out->set_userspace_ms(Ms(t.finish_us - t.userspace_us));
      out->set_total_ms(Ms(t.finish_us - t.userspace_us));
    }
    return;
  }
  if (t.firmware_us > 0 && t.firmware_us >= t.loader_us) {
    out->set_firmware_ms(Ms(t.firmware_us - t.loader_us));
  }
  if (t.loader_us > 0) out->set_loader_ms(Ms(t.loader_us));
  if (t.initrd_us > 0) {
    out->set_kernel_ms(Ms(t.initrd_us));
    if (t.userspace_us >= t.initrd_us) out->set_initrd_ms(Ms(t.userspace_us - t.initrd_us));
  } else if (t.userspace_us > 0) {
    out->set_kernel_ms(Ms(t.userspace_us));
  }
  if (t.finish_us > 0 && t.finish_us >= t.userspace_us && t.userspace_us > 0) {
    out->set_userspace_ms(Ms(t.finish_us - t.userspace_us));
    // Firmware and loader count backwards from kernel start.
    out->set_total_ms(Ms(t.finish_us + t.firmware_us));
  }
}

std::optional<std::uint64_t> FindInitHandOffUs(std::string_view text) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const std::size_t semi = line.find(';');
    if (semi == std::string_view::npos) continue;
    std::string_view msg = line.substr(semi + 1);
    if (!msg.starts_with("Run ") || !msg.ends_with(" as init process")) continue;
    // "pri,seq,timestamp_us,flags"
    std::string_view prefix = line.substr(0, semi);
    const std::size_t c1 = prefix.find(',');
    const std::size_t c2 = c1 == std::string_view::npos ? c1 : prefix.find(',', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    const std::size_t c3 = prefix.find(',', c2 + 1);
    if (auto us =
            ParseU64(prefix.substr(c2 + 1, c3 == std::string_view::npos ? c3 : c3 - c2 - 1))) {
      return us;
    }
  }
  return std::nullopt;
}

void ReadFpdt(const std::string& dir, v1::BootReport* out) {
  auto launch = ReadLine(dir + "/bootloader_launch_ns");
  auto exit = ReadLine(dir + "/exitbootservice_end_ns");
  if (!launch || !exit) return;
  auto l = ParseU64(*launch);
  auto e = ParseU64(*exit);
  if (!l || !e || *l == 0 || *e < *l) return;
  out->set_firmware_ms(*l / 1'000'000);
  out->set_loader_ms((*e - *l) / 1'000'000);
}

std::optional<std::uint64_t> ReadDesktopMark(const std::string& mark_dir,
                                             const std::string& boot_id) {
  std::optional<std::uint64_t> earliest;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(mark_dir, ec)) {
    if (!entry.path().filename().string().starts_with("desktop-ready")) continue;
    auto line = ReadLine(entry.path().string());
    if (!line) continue;
    std::istringstream in(*line);
    std::string id;
    std::uint64_t us = 0;
    if (!(in >> id >> us) || id != boot_id || us == 0) continue;
    if (!earliest || us < *earliest) earliest = us;
  }
  return earliest;
}

Status WriteDesktopMark(const std::string& mark_dir, const std::string& proc_root) {
  timespec mono{};
  ::clock_gettime(CLOCK_MONOTONIC, &mono);
  const std::uint64_t us = static_cast<std::uint64_t>(mono.tv_sec) * 1'000'000 +
                           static_cast<std::uint64_t>(mono.tv_nsec) / 1000;
  auto boot_id = ReadBootId(proc_root);
  if (!boot_id.ok()) return boot_id.status();
  // One file per user: the directory is a sticky drop box shared by all users.
  const std::string path = mark_dir + "/desktop-ready-" + std::to_string(::getuid());
  if (auto old = ReadLine(path)) {
    std::istringstream in(*old);
    std::string id;
    if (in >> id && id == *boot_id) return Status::Ok();  // the first mark of a boot counts
  }
  return WriteFileAtomically(path, *boot_id + " " + std::to_string(us) + "\n");
}

BootProbe::BootProbe(BootConfig config, const std::string& state_dir, std::string proc_root,
                     v1::EndpointRole role)
    : config_(std::move(config)),
      state_file_(state_dir.empty() ? std::string() : state_dir + "/boot-reported"),
      proc_root_(std::move(proc_root)),
      role_(role) {
  if (auto line = state_file_.empty() ? std::nullopt : ReadLine(state_file_)) {
    std::istringstream in(*line);
    int desktop = 0;
    if (in >> reported_.boot_id >> desktop) reported_.desktop = desktop != 0;
  }
  // Users' sessions drop their marks here: world-writable, sticky, not listable.
  if (::mkdir(config_.mark_dir.c_str(), 01733) == 0) ::chmod(config_.mark_dir.c_str(), 01733);
}

void BootProbe::SaveReported() {
  if (state_file_.empty()) return;
  (void)WriteFileAtomically(state_file_,
                            reported_.boot_id + " " + (reported_.desktop ? "1" : "0") + "\n");
}

bool BootProbe::FromSystemd(v1::BootReport* boot, bool* pending, std::string* why) {
  auto bus = BusConnection::Open(config_.system_bus);
  if (!bus.ok()) {
    *why = bus.status().message();
    return false;
  }
  ManagerTimestamps t;
  struct {
    const char* name;
    std::uint64_t* out;
  } props[] = {{"FirmwareTimestampMonotonic", &t.firmware_us},
               {"LoaderTimestampMonotonic", &t.loader_us},
               {"InitRDTimestampMonotonic", &t.initrd_us},
               {"UserspaceTimestampMonotonic", &t.userspace_us},
               {"FinishTimestampMonotonic", &t.finish_us}};
  for (auto& p : props) {
    auto v = bus->GetU64(kSystemd, kManagerPath, kManager, p.name);
    if (!v.ok()) {
      *why = "systemd manager: " + v.status().message();
      return false;
    }
    *p.out = *v;
  }
  // In a container the manager never learns when the kernel started.
  auto kernel_realtime = bus->GetU64(kSystemd, kManagerPath, kManager, "KernelTimestamp");
  t.in_container = kernel_realtime.ok() && *kernel_realtime == 0 && t.userspace_us > 0;
  if (t.finish_us == 0) {
    *pending = true;  // still booting: try again next cycle
    return false;
  }
  ComputePhases(t, boot);
  if (!boot->has_firmware_ms()) ReadFpdt(config_.fpdt_dir, boot);
  boot->set_source(v1::BOOT_SOURCE_SYSTEMD);
  std::optional<std::uint64_t> login = GreeterStartUs(*bus);
  if (!login) login = DefaultTargetUs(*bus);
  if (t.in_container) {
    // The container's boot is its manager's start, on the host's clocks.
    if (login && *login >= t.userspace_us) boot->set_login_ready_ms(Ms(*login - t.userspace_us));
    auto started = bus->GetU64(kSystemd, kManagerPath, kManager, "UserspaceTimestamp");
    if (started.ok() && *started > 0) {
      boot->set_booted_at_unix_ms(static_cast<std::int64_t>(*started / 1000));
      // The kernel's boot_id is the host's: each container start is a boot.
      boot->set_boot_id(boot->boot_id() + "/" + std::to_string(t.userspace_us));
    }
    container_start_us_ = t.userspace_us;
    return true;
  }
  const std::uint64_t origin_us = t.firmware_us;  // power-on when known, else kernel start
  if (login) boot->set_login_ready_ms(Ms(origin_us + *login));
  return true;
}

bool BootProbe::FromKmsg(v1::BootReport* boot, std::string* why) {
  const int fd = ::open(config_.kmsg.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *why = config_.kmsg + ": " + std::strerror(errno);
    return false;
  }
  // /dev/kmsg returns one record per read(); a fixture file returns many.
  std::optional<std::uint64_t> handoff;
  std::string pending;
  char buf[8192];
  for (int reads = 0; reads < 100000 && !handoff; ++reads) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EPIPE) continue;  // overwritten while reading: go on
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    if (pending.back() != '\n') pending.push_back('\n');
    handoff = FindInitHandOffUs(pending);
    pending.clear();
  }
  ::close(fd);
  if (!handoff) {
    *why = config_.kmsg + ": no \"Run ... as init process\" record (the kernel log has moved on)";
    return false;
  }
  boot->set_kernel_ms(Ms(*handoff));
  ReadFpdt(config_.fpdt_dir, boot);
  boot->set_source(v1::BOOT_SOURCE_KMSG);
  return true;
}

BootProbe::~BootProbe() = default;

std::string BootProbe::LibvirtUri() const {
  if (config_.libvirt_uri == "none") return {};
  if (!config_.libvirt_uri.empty()) return config_.libvirt_uri;
  return role_ == v1::ENDPOINT_ROLE_VDI_HOST ? "qemu:///system" : "";
}

void BootProbe::Start(const asio::any_io_executor& /*executor*/) {
  const std::string uri = LibvirtUri();
  if (uri.empty()) return;
  auto w = LibvirtVmWatcher::Start(uri, std::int64_t(config_.vm_ready_timeout_s) * 1000);
  if (w.ok()) {
    vms_ = std::move(*w);
  } else {
    vms_error_ = w.status().message();
  }
}

void BootProbe::Collect(const CycleContext& ctx, v1::Report& report) {
  if (vms_) {
    for (auto& b : vms_->Take(ctx.now_unix_ms)) *report.add_vm_boots() = std::move(b);
    if (auto problem = vms_->Problem(); !problem.empty())
      AddUnavailable(report, "boot.vms", problem);
  } else if (!vms_error_.empty()) {
    AddUnavailable(report, "boot.vms", vms_error_);
  }
  auto boot_id = ReadBootId(proc_root_);
  if (!boot_id.ok()) {
    AddUnavailable(report, "boot", boot_id.status().message());
    return;
  }
  const auto mark = ReadDesktopMark(config_.mark_dir, *boot_id);
  if (reported_.boot_id == *boot_id && (reported_.desktop || !mark)) return;

  v1::BootReport boot;
  boot.set_boot_id(*boot_id);
  boot.set_booted_at_unix_ms(BootedAtUnixMs());
  bool pending = false;
  std::string bus_why;
  std::string kmsg_why;
  container_start_us_ = 0;
  if (FromSystemd(&boot, &pending, &bus_why)) {
    // A container's boot is keyed by its start too: already reported?
    if (boot.boot_id() == reported_.boot_id && (reported_.desktop || !mark)) return;
  } else {
    if (pending) return;
    boot.Clear();
    boot.set_boot_id(*boot_id);
    boot.set_booted_at_unix_ms(BootedAtUnixMs());
    if (!FromKmsg(&boot, &kmsg_why)) {
      AddUnavailable(report, "boot.phases", bus_why + "; " + kmsg_why);
      // Still key the boot and report the mark, if any.
    } else {
      AddUnavailable(report, "boot.systemd", bus_why);
    }
  }
  if (mark && container_start_us_ != 0) {
    if (*mark >= container_start_us_) boot.set_desktop_ready_ms(Ms(*mark - container_start_us_));
  } else if (mark) {
    // Power-on when firmware and loader are known, else kernel start.
    const std::uint64_t origin_ms = boot.firmware_ms() + boot.loader_ms();
    boot.set_desktop_ready_ms(origin_ms + Ms(*mark));
  }
  reported_ = {boot.boot_id(), mark.has_value()};
  *report.mutable_boot() = std::move(boot);
  SaveReported();
}

}  // namespace deskpulse::agent
