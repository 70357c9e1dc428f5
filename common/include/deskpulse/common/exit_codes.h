#pragma once

#include <cstdio>
#include <exception>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Exit codes shared by the DeskPulse binaries: one per kind of failure.
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,    // a bug or an unexpected failure
  kExitUsage = 2,       // bad flags, config or arguments
  kExitStore = 3,       // the database cannot be opened, migrated or written
  kExitNetwork = 4,     // cannot listen, or the collector cannot be reached
  kExitNotFound = 5,    // a named thing (customer, file) does not exist
  kExitAuth = 6,        // a credential was refused
  kExitIncomplete = 7,  // the work ran but did not finish (e.g. reports left unacknowledged)
  kExitDamaged = 8,     // the store is damaged (check, or serve's start-up check)
};

inline int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kInvalidArgument:
      return kExitUsage;
    case Code::kNotFound:
      return kExitNotFound;
    case Code::kUnauthenticated:
    case Code::kPermissionDenied:
      return kExitAuth;
    case Code::kDataLoss:
      return kExitDamaged;
    case Code::kIo:
    case Code::kResourceExhausted:
      return kExitStore;
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
      return kExitNetwork;
    default:
      return kExitInternal;
  }
}

/// Runs a program's main body. Errors are Status values, so an exception that
/// escapes it is a bug: it is reported and the program exits 1, rather than
/// terminating without a word.
template <typename Body>
int GuardMain(const char* program, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", program, e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: internal error: an unknown exception\n", program);
  }
  return kExitInternal;
}

}  // namespace deskpulse
