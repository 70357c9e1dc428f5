#include "collector/api/auth_limit.h"

#include <algorithm>

namespace deskpulse::collector::api {

std::int64_t FailedAuthLimiter::RefusedForMs(const std::string& peer, std::int64_t now_ms) const {
  const auto it = peers_.find(peer);
  if (it == peers_.end()) return 0;
  const std::int64_t end = it->second.start_ms + options_.window_ms;
  if (now_ms >= end || it->second.failures < options_.max_failures) return 0;
  return end - now_ms;
}

void FailedAuthLimiter::MakeRoom(std::int64_t now_ms) {
  std::erase_if(peers_,
                [&](const auto& p) { return now_ms >= p.second.start_ms + options_.window_ms; });
  if (peers_.size() < options_.max_peers) return;
  // Still full of live windows: forget the oldest one.
  const auto oldest = std::min_element(
      peers_.begin(), peers_.end(),
      [](const auto& a, const auto& b) { return a.second.start_ms < b.second.start_ms; });
  peers_.erase(oldest);
}

bool FailedAuthLimiter::Fail(const std::string& peer, std::int64_t now_ms) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    if (peers_.size() >= options_.max_peers) MakeRoom(now_ms);
    it = peers_.emplace(peer, Window{now_ms, 0}).first;
  } else if (now_ms >= it->second.start_ms + options_.window_ms) {
    it->second = Window{now_ms, 0};
  }
  it->second.failures += 1;
  return it->second.failures == options_.max_failures;
}

}  // namespace deskpulse::collector::api
