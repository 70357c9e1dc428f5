#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"

namespace deskpulse::agent {

/// VM power-on → guest-ready on a hypervisor host, from libvirt's events
/// (pure state machine; `LibvirtVmWatcher` feeds it).
class VmBootTracker {
 public:
  explicit VmBootTracker(std::int64_t ready_timeout_ms) : ready_timeout_ms_(ready_timeout_ms) {}
  /// A domain started (lifecycle STARTED).
  void PoweredOn(const std::string& uuid, const std::string& name, std::int64_t at_ms);
  /// A domain stopped or crashed before its guest was ready: nothing to time.
  void Stopped(const std::string& uuid);
  /// qemu-guest-agent connected (agent lifecycle CONNECTED): guest user space is up.
  void GuestReady(const std::string& uuid, std::int64_t at_ms);
  /// Boots finished by now: timed ones, and those whose guest never said it was
  /// ready within the timeout (power-on only; the ready time stays absent).
  std::vector<deskpulse::v1::VmBoot> Take(std::int64_t now_ms);

 private:
  struct Pending {
    std::string name;
    std::int64_t on_ms = 0;
  };
  std::int64_t ready_timeout_ms_;
  std::map<std::string, Pending> pending_;
  std::vector<deskpulse::v1::VmBoot> done_;
};

/// Watches a libvirt connection (read-only is enough for events) on its own
/// thread running libvirt's default event loop. libvirt is loaded at run time
/// (`libvirt.so.0`) and only when a URI is configured.
class LibvirtVmWatcher {
 public:
  static Result<std::unique_ptr<LibvirtVmWatcher>> Start(const std::string& uri,
                                                         std::int64_t ready_timeout_ms);
  ~LibvirtVmWatcher();
  /// Finished boots since the last call.
  std::vector<deskpulse::v1::VmBoot> Take(std::int64_t now_ms);
  /// Why the connection is down now (it is retried), or "".
  std::string Problem();

  // libvirt calls these on the event thread.
  void OnLifecycle(const std::string& uuid, const std::string& name, int event);
  void OnAgent(const std::string& uuid, int state);
  void OnClosed(int reason);

  struct Api;
  const Api& api() const { return *api_; }

 private:
  LibvirtVmWatcher(std::unique_ptr<Api> api, std::string uri, std::int64_t ready_timeout_ms);
  void Loop();
  bool Connect();
  void Disconnect();

  std::unique_ptr<Api> api_;
  std::string uri_;
  std::mutex mu_;
  VmBootTracker tracker_;
  std::string problem_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};
  void* conn_ = nullptr;
  int lifecycle_cb_ = -1, agent_cb_ = -1;
  int wake_timer_ = -1;
  std::thread thread_;
};

}  // namespace deskpulse::agent
