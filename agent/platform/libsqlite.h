#pragma once

#include <memory>

#include "agent/platform/dynamic_library.h"
#include "deskpulse/common/sqlite_api.h"
#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// libsqlite3.so.0, loaded while a peripheral catalog is read and unloaded
/// after, so that an endpoint pays for SQLite's pages only while a new device
/// is being classified. The agent itself links only libc.
class SqliteLibrary {
 public:
  static Result<SqliteLibrary> Load();
  /// Valid while this object lives.
  const SqliteApi& api() const { return *api_; }

 private:
  SqliteLibrary(std::unique_ptr<DynamicLibrary> lib, std::unique_ptr<SqliteApi> api)
      : lib_(std::move(lib)), api_(std::move(api)) {}
  std::unique_ptr<DynamicLibrary> lib_;
  std::unique_ptr<SqliteApi> api_;  // stable address for readers holding it
};

}  // namespace deskpulse::agent
