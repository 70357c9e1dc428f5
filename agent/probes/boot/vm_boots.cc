#include "agent/probes/boot/vm_boots.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <chrono>

#include "agent/platform/dynamic_library.h"
#include "agent/platform/proc.h"

namespace deskpulse::agent {

namespace v1 = deskpulse::v1;

void VmBootTracker::PoweredOn(const std::string& uuid, const std::string& name,
                              std::int64_t at_ms) {
  pending_[uuid] = Pending{name, at_ms};
}

void VmBootTracker::Stopped(const std::string& uuid) { pending_.erase(uuid); }

void VmBootTracker::GuestReady(const std::string& uuid, std::int64_t at_ms) {
  auto it = pending_.find(uuid);
  if (it == pending_.end()) return;  // the agent reconnected in a running guest: not a boot
  v1::VmBoot b;
  b.set_vm_name(it->second.name);
  b.set_vm_uuid(uuid);
  b.set_powered_on_at_unix_ms(it->second.on_ms);
  if (at_ms >= it->second.on_ms) {
    b.set_power_on_to_ready_ms(static_cast<std::uint64_t>(at_ms - it->second.on_ms));
  }
  done_.push_back(std::move(b));
  pending_.erase(it);
}

std::vector<v1::VmBoot> VmBootTracker::Take(std::int64_t now_ms) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now_ms - it->second.on_ms < ready_timeout_ms_) {
      ++it;
      continue;
    }
    v1::VmBoot b;  // no guest agent, or it never came up: power-on only
    b.set_vm_name(it->second.name);
    b.set_vm_uuid(it->first);
    b.set_powered_on_at_unix_ms(it->second.on_ms);
    done_.push_back(std::move(b));
    it = pending_.erase(it);
  }
  std::vector<v1::VmBoot> out;
  out.swap(done_);
  return out;
}

struct LibvirtVmWatcher::Api {
  explicit Api(DynamicLibrary l) : lib(std::move(l)) {}
  DynamicLibrary lib;
  decltype(&::virEventRegisterDefaultImpl) register_default = nullptr;
  decltype(&::virEventRunDefaultImpl) run_default = nullptr;
  decltype(&::virEventAddTimeout) add_timeout = nullptr;
  decltype(&::virEventUpdateTimeout) update_timeout = nullptr;
  decltype(&::virEventRemoveTimeout) remove_timeout = nullptr;
  decltype(&::virConnectOpenReadOnly) open = nullptr;
  decltype(&::virConnectClose) close = nullptr;
  decltype(&::virConnectSetKeepAlive) keepalive = nullptr;
  decltype(&::virConnectRegisterCloseCallback) on_close = nullptr;
  decltype(&::virConnectDomainEventRegisterAny) register_event = nullptr;
  decltype(&::virConnectDomainEventDeregisterAny) deregister_event = nullptr;
  decltype(&::virDomainGetName) name = nullptr;
  decltype(&::virDomainGetUUIDString) uuid = nullptr;
  decltype(&::virGetLastErrorMessage) last_error = nullptr;
  decltype(&::virSetErrorFunc) set_error_func = nullptr;
};

namespace {

std::string Uuid(const LibvirtVmWatcher::Api& api, virDomainPtr dom) {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  return api.uuid(dom, buf) == 0 ? std::string(buf) : std::string();
}

// libvirt's callbacks carry `opaque` = the watcher, which outlives its connection.
void LifecycleCb(virConnectPtr, virDomainPtr dom, int event, int /*detail*/, void* opaque) {
  auto* w = static_cast<LibvirtVmWatcher*>(opaque);
  const char* name = w->api().name(dom);
  w->OnLifecycle(Uuid(w->api(), dom), name ? name : "", event);
}

void AgentCb(virConnectPtr, virDomainPtr dom, int state, int /*reason*/, void* opaque) {
  auto* w = static_cast<LibvirtVmWatcher*>(opaque);
  w->OnAgent(Uuid(w->api(), dom), state);
}

void ClosedCb(virConnectPtr, int reason, void* opaque) {
  static_cast<LibvirtVmWatcher*>(opaque)->OnClosed(reason);
}

void WakeCb(int, void*) {}

// libvirt prints every error to stderr unless told otherwise; ours are reported as data.
void QuietErrors(void*, virErrorPtr) {}

}  // namespace

Result<std::unique_ptr<LibvirtVmWatcher>> LibvirtVmWatcher::Start(const std::string& uri,
                                                                  std::int64_t ready_timeout_ms) {
  DP_ASSIGN_OR_RETURN(DynamicLibrary lib, DynamicLibrary::Open("libvirt.so.0"));
  auto api = std::make_unique<Api>(std::move(lib));
  DP_RETURN_IF_ERROR(api->lib.Bind("virEventRegisterDefaultImpl", &api->register_default));
  DP_RETURN_IF_ERROR(api->lib.Bind("virEventRunDefaultImpl", &api->run_default));
  DP_RETURN_IF_ERROR(api->lib.Bind("virEventAddTimeout", &api->add_timeout));
  DP_RETURN_IF_ERROR(api->lib.Bind("virEventUpdateTimeout", &api->update_timeout));
  DP_RETURN_IF_ERROR(api->lib.Bind("virEventRemoveTimeout", &api->remove_timeout));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectOpenReadOnly", &api->open));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectClose", &api->close));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectSetKeepAlive", &api->keepalive));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectRegisterCloseCallback", &api->on_close));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectDomainEventRegisterAny", &api->register_event));
  DP_RETURN_IF_ERROR(api->lib.Bind("virConnectDomainEventDeregisterAny", &api->deregister_event));
  DP_RETURN_IF_ERROR(api->lib.Bind("virDomainGetName", &api->name));
  DP_RETURN_IF_ERROR(api->lib.Bind("virDomainGetUUIDString", &api->uuid));
  DP_RETURN_IF_ERROR(api->lib.Bind("virGetLastErrorMessage", &api->last_error));
  DP_RETURN_IF_ERROR(api->lib.Bind("virSetErrorFunc", &api->set_error_func));
  api->set_error_func(nullptr, QuietErrors);
  if (api->register_default() != 0) {
    return Unavailable(std::string("libvirt event loop: ") + api->last_error());
  }
  std::unique_ptr<LibvirtVmWatcher> w(new LibvirtVmWatcher(std::move(api), uri, ready_timeout_ms));
  w->Connect();  // a failure is recorded in Problem() and retried by the loop
  w->thread_ = std::thread([p = w.get()] { p->Loop(); });
  return w;
}

LibvirtVmWatcher::LibvirtVmWatcher(std::unique_ptr<Api> api, std::string uri,
                                   std::int64_t ready_timeout_ms)
    : api_(std::move(api)), uri_(std::move(uri)), tracker_(ready_timeout_ms) {}

LibvirtVmWatcher::~LibvirtVmWatcher() {
  stop_ = true;
  if (wake_timer_ >= 0) api_->update_timeout(wake_timer_, 0);  // wake the loop now
  if (thread_.joinable()) thread_.join();
  Disconnect();
}

bool LibvirtVmWatcher::Connect() {
  virConnectPtr c = api_->open(uri_.c_str());
  if (c == nullptr) {
    std::lock_guard lock(mu_);
    problem_ = "cannot connect to " + uri_ + ": " + api_->last_error();
    return false;
  }
  void* ctx = this;
  api_->keepalive(c, 5, 3);  // notice a dead libvirtd within ~20 s
  api_->on_close(c, ClosedCb, ctx, nullptr);
  lifecycle_cb_ = api_->register_event(c, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       VIR_DOMAIN_EVENT_CALLBACK(LifecycleCb), ctx, nullptr);
  agent_cb_ = api_->register_event(c, nullptr, VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                   VIR_DOMAIN_EVENT_CALLBACK(AgentCb), ctx, nullptr);
  conn_ = c;
  closed_ = false;
  std::lock_guard lock(mu_);
  problem_.clear();
  return true;
}

void LibvirtVmWatcher::Disconnect() {
  if (conn_ == nullptr) return;
  auto* c = static_cast<virConnectPtr>(conn_);
  if (lifecycle_cb_ >= 0) api_->deregister_event(c, lifecycle_cb_);
  if (agent_cb_ >= 0) api_->deregister_event(c, agent_cb_);
  lifecycle_cb_ = agent_cb_ = -1;
  api_->close(c);
  conn_ = nullptr;
}

void LibvirtVmWatcher::Loop() {
  // A periodic timer bounds each wait, so a stop or a reconnect is never stuck.
  wake_timer_ = api_->add_timeout(5000, WakeCb, nullptr, nullptr);
  auto next_try = std::chrono::steady_clock::now();
  while (!stop_) {
    if ((conn_ == nullptr || closed_) && std::chrono::steady_clock::now() >= next_try) {
      Disconnect();
      if (!Connect()) next_try = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    }
    if (api_->run_default() < 0) break;
  }
}

void LibvirtVmWatcher::OnLifecycle(const std::string& uuid, const std::string& name, int event) {
  std::lock_guard lock(mu_);
  if (event == VIR_DOMAIN_EVENT_STARTED) {
    tracker_.PoweredOn(uuid, name, NowUnixMs());
  } else if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED ||
             event == VIR_DOMAIN_EVENT_SHUTDOWN) {
    tracker_.Stopped(uuid);
  }
}

void LibvirtVmWatcher::OnAgent(const std::string& uuid, int state) {
  if (state != VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED) return;
  std::lock_guard lock(mu_);
  tracker_.GuestReady(uuid, NowUnixMs());
}

void LibvirtVmWatcher::OnClosed(int reason) {
  closed_ = true;
  std::lock_guard lock(mu_);
  problem_ =
      "connection to " + uri_ + " closed (reason " + std::to_string(reason) + "): reconnecting";
}

std::vector<v1::VmBoot> LibvirtVmWatcher::Take(std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  return tracker_.Take(now_ms);
}

std::string LibvirtVmWatcher::Problem() {
  std::lock_guard lock(mu_);
  return problem_;
}

}  // namespace deskpulse::agent
