#include "agent/platform/libsystemd.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace deskpulse::agent {

Result<const LibSystemd*> LibSystemd::Get() {
  static std::once_flag once;
  static LibSystemd instance;
  static Status status;
  std::call_once(once, [] {
    auto lib = DynamicLibrary::Open("libsystemd.so.0");
    if (!lib.ok()) {
      status = lib.status();
      return;
    }
    instance.lib_ = std::make_unique<DynamicLibrary>(std::move(*lib));
    const DynamicLibrary& l = *instance.lib_;
    LibSystemd& s = instance;
    for (const Status& st : {l.Bind("sd_bus_open_system", &s.bus_open_system),
                             l.Bind("sd_bus_new", &s.bus_new),
                             l.Bind("sd_bus_set_address", &s.bus_set_address),
                             l.Bind("sd_bus_set_bus_client", &s.bus_set_bus_client),
                             l.Bind("sd_bus_start", &s.bus_start),
                             l.Bind("sd_bus_flush_close_unref", &s.bus_flush_close_unref),
                             l.Bind("sd_bus_get_property_trivial", &s.bus_get_property_trivial),
                             l.Bind("sd_bus_get_property_string", &s.bus_get_property_string),
                             l.Bind("sd_bus_call_method", &s.bus_call_method),
                             l.Bind("sd_bus_message_read", &s.message_read),
                             l.Bind("sd_bus_message_enter_container", &s.message_enter_container),
                             l.Bind("sd_bus_message_exit_container", &s.message_exit_container),
                             l.Bind("sd_bus_message_unref", &s.message_unref),
                             l.Bind("sd_bus_error_free", &s.error_free),
                             l.Bind("sd_journal_open", &s.journal_open),
                             l.Bind("sd_journal_open_directory", &s.journal_open_directory),
                             l.Bind("sd_journal_close", &s.journal_close),
                             l.Bind("sd_journal_add_match", &s.journal_add_match),
                             l.Bind("sd_journal_add_disjunction", &s.journal_add_disjunction),
                             l.Bind("sd_journal_next", &s.journal_next),
                             l.Bind("sd_journal_get_data", &s.journal_get_data),
                             l.Bind("sd_journal_get_realtime_usec", &s.journal_get_realtime_usec),
                             l.Bind("sd_journal_seek_tail", &s.journal_seek_tail),
                             l.Bind("sd_journal_seek_head", &s.journal_seek_head),
                             l.Bind("sd_journal_previous", &s.journal_previous),
                             l.Bind("sd_journal_get_cursor", &s.journal_get_cursor),
                             l.Bind("sd_journal_seek_cursor", &s.journal_seek_cursor)}) {
      if (!st.ok()) {
        status = st;
        return;
      }
    }
  });
  if (!status.ok()) return status;
  return &instance;
}

std::string BusErrorText(const LibSystemd& sd, sd_bus_error* error, int r) {
  std::string text;
  if (error != nullptr && error->name != nullptr) {
    text = std::string(error->name) + ": " + (error->message ? error->message : "");
  } else {
    text = std::strerror(-r);
  }
  if (error != nullptr) sd.error_free(error);
  return text;
}

Result<BusConnection> BusConnection::Open(const std::string& address) {
  // No socket, no bus: say so without mapping libsystemd and its dependencies
  // (~1 MB) on machines that have no systemd at all.
  const char* env = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  const std::string where = !address.empty() ? address
                            : env != nullptr ? std::string(env)
                                             : "unix:path=/run/dbus/system_bus_socket";
  if (where.rfind("unix:path=", 0) == 0 && where.find_first_of(",;") == std::string::npos &&
      ::access(where.c_str() + 10, F_OK) != 0) {
    return Unavailable("no system bus at " + where + " (" + std::strerror(errno) + ")");
  }
  auto sd = LibSystemd::Get();
  if (!sd.ok()) return sd.status();
  const LibSystemd& s = **sd;
  sd_bus* bus = nullptr;
  int r = 0;
  if (address.empty()) {
    r = s.bus_open_system(&bus);
  } else {
    r = s.bus_new(&bus);
    if (r >= 0) r = s.bus_set_address(bus, address.c_str());
    if (r >= 0) r = s.bus_set_bus_client(bus, 1);
    if (r >= 0) r = s.bus_start(bus);
  }
  if (r < 0) {
    if (bus != nullptr) s.bus_flush_close_unref(bus);
    return Unavailable("no system bus at " + where + " (" + std::strerror(-r) + ")");
  }
  return BusConnection(*sd, bus);
}

BusConnection::~BusConnection() {
  if (bus_ != nullptr) sd_->bus_flush_close_unref(bus_);
}

Result<std::uint64_t> BusConnection::GetU64(const char* service, const char* path,
                                            const char* interface, const char* property) const {
  sd_bus_error error{nullptr, nullptr, 0};  // SD_BUS_ERROR_NULL (a C99 compound literal)
  std::uint64_t v = 0;
  const int r =
      sd_->bus_get_property_trivial(bus_, service, path, interface, property, &error, 't', &v);
  if (r < 0) {
    return Unavailable(std::string(interface) + "." + property + ": " +
                       BusErrorText(*sd_, &error, r));
  }
  sd_->error_free(&error);
  return v;
}

Result<std::string> BusConnection::GetString(const char* service, const char* path,
                                             const char* interface, const char* property) const {
  sd_bus_error error{nullptr, nullptr, 0};  // SD_BUS_ERROR_NULL (a C99 compound literal)
  char* v = nullptr;
  const int r = sd_->bus_get_property_string(bus_, service, path, interface, property, &error, &v);
  if (r < 0) {
    return Unavailable(std::string(interface) + "." + property + ": " +
                       BusErrorText(*sd_, &error, r));
  }
  sd_->error_free(&error);
  std::string out = v ? v : "";
  std::free(v);
  return out;
}

}  // namespace deskpulse::agent
