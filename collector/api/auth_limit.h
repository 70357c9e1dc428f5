#pragma once

// Failed API logins, limited per peer address: after `max_failures` bad
// tokens within a window the peer's calls are refused (429) until the window
// ends, and the limit is logged once per window, not once per try.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace deskpulse::collector::api {

class FailedAuthLimiter {
 public:
  struct Options {
    int max_failures = 10;
    std::int64_t window_ms = 60'000;
    /// Peers tracked at once: the table is bounded whatever the addresses.
    std::size_t max_peers = 4096;
  };
  explicit FailedAuthLimiter(Options options) : options_(options) {}

  /// How long `peer` is still refused; 0 when it may try.
  std::int64_t RefusedForMs(const std::string& peer, std::int64_t now_ms) const;
  /// Counts a failed login; true only for the failure that reaches the limit
  /// (the one to log).
  bool Fail(const std::string& peer, std::int64_t now_ms);
  std::size_t peers() const { return peers_.size(); }

 private:
  struct Window {
    std::int64_t start_ms = 0;
    int failures = 0;
  };
  void MakeRoom(std::int64_t now_ms);

  Options options_;
  std::unordered_map<std::string, Window> peers_;
};

}  // namespace deskpulse::collector::api
