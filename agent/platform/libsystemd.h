#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-journal.h>

#include <memory>
#include <string>

#include "agent/platform/dynamic_library.h"

namespace deskpulse::agent {

/// The parts of libsystemd the agent uses (sd-bus, sd-journal), loaded at
/// run time so the agent starts on images without it.
struct LibSystemd {
  decltype(&::sd_bus_open_system) bus_open_system = nullptr;
  decltype(&::sd_bus_new) bus_new = nullptr;
  decltype(&::sd_bus_set_address) bus_set_address = nullptr;
  decltype(&::sd_bus_set_bus_client) bus_set_bus_client = nullptr;
  decltype(&::sd_bus_start) bus_start = nullptr;
  decltype(&::sd_bus_flush_close_unref) bus_flush_close_unref = nullptr;
  decltype(&::sd_bus_get_property_trivial) bus_get_property_trivial = nullptr;
  decltype(&::sd_bus_get_property_string) bus_get_property_string = nullptr;
  decltype(&::sd_bus_call_method) bus_call_method = nullptr;
  decltype(&::sd_bus_message_read) message_read = nullptr;
  decltype(&::sd_bus_message_enter_container) message_enter_container = nullptr;
  decltype(&::sd_bus_message_exit_container) message_exit_container = nullptr;
  decltype(&::sd_bus_message_unref) message_unref = nullptr;
  decltype(&::sd_bus_error_free) error_free = nullptr;

  decltype(&::sd_journal_open) journal_open = nullptr;
  decltype(&::sd_journal_open_directory) journal_open_directory = nullptr;
  decltype(&::sd_journal_close) journal_close = nullptr;
  decltype(&::sd_journal_add_match) journal_add_match = nullptr;
  decltype(&::sd_journal_add_disjunction) journal_add_disjunction = nullptr;
  decltype(&::sd_journal_next) journal_next = nullptr;
  decltype(&::sd_journal_get_data) journal_get_data = nullptr;
  decltype(&::sd_journal_get_realtime_usec) journal_get_realtime_usec = nullptr;
  decltype(&::sd_journal_seek_tail) journal_seek_tail = nullptr;
  decltype(&::sd_journal_seek_head) journal_seek_head = nullptr;
  decltype(&::sd_journal_previous) journal_previous = nullptr;
  decltype(&::sd_journal_get_cursor) journal_get_cursor = nullptr;
  decltype(&::sd_journal_seek_cursor) journal_seek_cursor = nullptr;

  /// The process-wide instance, loaded on first use; an Unavailable status
  /// naming the library when it is not installed.
  static Result<const LibSystemd*> Get();

 private:
  std::unique_ptr<DynamicLibrary> lib_;
};

/// An sd-bus connection closed on destruction.
class BusConnection {
 public:
  /// `address` empty: the system bus (DBUS_SYSTEM_BUS_ADDRESS or the standard socket).
  static Result<BusConnection> Open(const std::string& address);
  BusConnection(BusConnection&& o) noexcept : sd_(o.sd_), bus_(o.bus_) { o.bus_ = nullptr; }
  BusConnection& operator=(BusConnection&&) = delete;
  ~BusConnection();

  /// A `t` (uint64) property; 0 when it is unset.
  Result<std::uint64_t> GetU64(const char* service, const char* path, const char* interface,
                               const char* property) const;
  Result<std::string> GetString(const char* service, const char* path, const char* interface,
                                const char* property) const;
  sd_bus* get() const { return bus_; }
  const LibSystemd& sd() const { return *sd_; }

 private:
  BusConnection(const LibSystemd* sd, sd_bus* bus) : sd_(sd), bus_(bus) {}
  const LibSystemd* sd_;
  sd_bus* bus_;
};

/// "name: message" for a failed sd-bus call.
std::string BusErrorText(const LibSystemd& sd, sd_bus_error* error, int r);

}  // namespace deskpulse::agent
