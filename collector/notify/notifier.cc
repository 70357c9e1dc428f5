#include "collector/notify/notifier.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>

#include "deskpulse/common/logging.h"

namespace deskpulse::collector::notify {
namespace {

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// A response body is read and thrown away, at most this much of it.
constexpr std::size_t kMaxResponseBytes = std::size_t{64} * 1024;

std::size_t Discard(char*, std::size_t size, std::size_t n, void* seen) {
  auto* total = static_cast<std::size_t*>(seen);
  *total += size * n;
  return *total > kMaxResponseBytes ? 0 : size * n;  // 0 aborts the transfer
}

}  // namespace

struct Notifier::Impl {
  struct Hook {
    const WebhookOptions* options = nullptr;
    std::int64_t next_claim_ms = 0;
    bool failing = false;  // logged as failing; its recovery is logged once
    // The request in flight.
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::size_t response_bytes = 0;
    WebhookDelivery delivery;
  };

  const NotifierOptions& options;
  StoreOptions store_options;
  Inputs inputs;
  std::unique_ptr<Store> store;
  CURLM* multi = nullptr;
  std::vector<Hook> hooks;
  ConditionTracker conditions;
  std::mt19937_64 rng{std::random_device{}()};
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<bool> woken{false};
  mutable std::mutex mu;
  NotifierStats stats;

  Impl(const NotifierOptions& o, StoreOptions s, Inputs i)
      : options(o), store_options(std::move(s)), inputs(std::move(i)) {}

  void Run() {
    std::int64_t next_check = 0;
    std::int64_t next_prune = 0;
    while (!stop.load()) {
      const std::int64_t now = NowMs();
      if (woken.exchange(false)) {
        for (Hook& h : hooks) h.next_claim_ms = std::min(h.next_claim_ms, now);
      }
      if (inputs && now >= next_check) {
        Check(now);
        next_check = now + options.check_interval.count();
      }
      if (now >= next_prune) {
        auto pruned = store->PruneDeliveries(now - options.keep_finished.count());
        if (!pruned.ok()) spdlog::warn("webhooks: pruning: {}", pruned.status().message());
        next_prune = now + 3'600'000;
      }
      for (Hook& h : hooks) {
        if (h.easy == nullptr && now >= h.next_claim_ms) Claim(h, now);
      }
      int running = 0;
      curl_multi_perform(multi, &running);
      Finish();
      std::int64_t wait = std::min<std::int64_t>(next_check - NowMs(), 1'000);
      for (const Hook& h : hooks) {
        if (h.easy == nullptr) wait = std::min(wait, h.next_claim_ms - NowMs());
      }
      if (wait > 0) curl_multi_poll(multi, nullptr, 0, static_cast<int>(wait), nullptr);
    }
    // What is in flight is dropped, unrecorded: its lease runs out and it is
    // sent again (by the next start or another collector), so a hanging
    // receiver cannot hold up a shutdown.
    Finish();
    for (Hook& h : hooks) {
      if (h.easy == nullptr) continue;
      curl_multi_remove_handle(multi, h.easy);
      curl_easy_cleanup(h.easy);
      curl_slist_free_all(h.headers);
      h.easy = nullptr;
      h.headers = nullptr;
    }
  }

  void Check(std::int64_t now) {
    const auto in = inputs();
    if (!in) return;
    std::vector<WebhookDelivery> deliveries;
    for (const Event& e : conditions.Update(*in, now, options.collector)) {
      spdlog::warn("webhooks: condition {} started: {}",
                   e.payload["condition"]["name"].get<std::string>(),
                   e.payload["condition"]["summary"].get<std::string>());
      auto d = DeliveriesFor(e, options.webhooks);
      deliveries.insert(deliveries.end(), d.begin(), d.end());
    }
    if (deliveries.empty()) return;
    auto added = store->EnqueueDeliveries(deliveries, now);
    if (!added.ok()) {
      spdlog::error("webhooks: queuing {} deliveries failed: {}", deliveries.size(),
                    added.status().message());
      return;
    }
    std::lock_guard lock(mu);
    stats.queued += *added;
  }

  void Claim(Hook& h, std::int64_t now) {
    const WebhookOptions& w = *h.options;
    // The lease outlasts the request, so no other collector sends it meanwhile.
    auto claimed = store->ClaimDeliveries(w.name, now, w.timeout.count() + 30'000, 1);
    h.next_claim_ms = now + options.poll_interval.count();
    if (!claimed.ok()) {
      spdlog::warn("webhooks: {}: reading its queue: {}", w.name, claimed.status().message());
      return;
    }
    if (claimed->empty()) return;
    h.delivery = std::move(claimed->front());
    Send(h, now);
  }

  void Send(Hook& h, std::int64_t now) {
    const WebhookOptions& w = *h.options;
    h.easy = curl_easy_init();
    h.response_bytes = 0;
    const std::string type = h.delivery.event_key.substr(0, h.delivery.event_key.find(':'));
    h.headers = curl_slist_append(nullptr, "Content-Type: application/json");
    h.headers = curl_slist_append(h.headers, ("Idempotency-Key: " + h.delivery.event_key).c_str());
    h.headers = curl_slist_append(h.headers, ("X-DeskPulse-Event: " + type).c_str());
    h.headers = curl_slist_append(
        h.headers,
        ("X-DeskPulse-Signature: " + Sign(w.secret, now / 1000, h.delivery.payload)).c_str());
    h.headers = curl_slist_append(h.headers, "Expect:");  // no 100-continue round trip
    curl_easy_setopt(h.easy, CURLOPT_URL, w.url.c_str());
    curl_easy_setopt(h.easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h.easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h.easy, CURLOPT_TIMEOUT_MS, static_cast<long>(w.timeout.count()));
    curl_easy_setopt(h.easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min<std::int64_t>(w.timeout.count(), 5'000)));
    curl_easy_setopt(h.easy, CURLOPT_USERAGENT, "deskpulse-collector/" DESKPULSE_VERSION);
    curl_easy_setopt(h.easy, CURLOPT_HTTPHEADER, h.headers);
    curl_easy_setopt(h.easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(h.delivery.payload.size()));
    curl_easy_setopt(h.easy, CURLOPT_POSTFIELDS, h.delivery.payload.c_str());
    curl_easy_setopt(h.easy, CURLOPT_WRITEFUNCTION, Discard);
    curl_easy_setopt(h.easy, CURLOPT_WRITEDATA, &h.response_bytes);
    if (!w.ca_file.empty()) curl_easy_setopt(h.easy, CURLOPT_CAINFO, w.ca_file.c_str());
    curl_easy_setopt(h.easy, CURLOPT_PRIVATE, &h);
    curl_multi_add_handle(multi, h.easy);
  }

  void Finish() {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      Hook* h = nullptr;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &h);
      long code = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      std::string error;
      if (m->data.result != CURLE_OK) {
        error = curl_easy_strerror(m->data.result);
      } else if (code < 200 || code > 299) {
        error = fmt::format("HTTP {}", code);
      }
      curl_multi_remove_handle(multi, h->easy);
      curl_easy_cleanup(h->easy);
      curl_slist_free_all(h->headers);
      h->easy = nullptr;
      h->headers = nullptr;
      Done(*h, error);
    }
  }

  void Done(Hook& h, const std::string& error) {
    const WebhookOptions& w = *h.options;
    const std::int64_t now = NowMs();
    const WebhookDelivery& d = h.delivery;
    if (error.empty()) {
      if (Status s = store->CompleteDelivery(d.id, now); !s.ok()) {
        // It was delivered; the lease lapses and it may be sent again, which
        // the idempotency key makes harmless.
        spdlog::warn("webhooks: {}: recording delivery {}: {}", w.name, d.id, s.message());
      }
      if (h.failing) spdlog::info("webhooks: {}: delivering again", w.name);
      h.failing = false;
      h.next_claim_ms = now;  // the next one, if any, at once
      std::lock_guard lock(mu);
      ++stats.delivered;
      return;
    }
    const bool abandon = now - d.created_ms >= w.give_up_after.count();
    const std::int64_t retry_at = now + Backoff(w, d.attempts, rng).count();
    if (Status s = store->FailDelivery(d.id, error, retry_at, abandon); !s.ok()) {
      spdlog::warn("webhooks: {}: recording a failed delivery: {}", w.name, s.message());
    }
    if (abandon) {
      spdlog::error("webhooks: {}: gave up on {} after {} attempts over {} s: {}", w.name,
                    EscapeForLog(d.event_key), d.attempts, (now - d.created_ms) / 1000,
                    EscapeForLog(error));
    } else if (!h.failing) {
      spdlog::warn("webhooks: {}: delivery failed ({}); retrying with backoff", w.name,
                   EscapeForLog(error));
    }
    h.failing = !abandon;
    h.next_claim_ms = abandon ? now : retry_at;
    std::lock_guard lock(mu);
    ++stats.failed_attempts;
    if (abandon) ++stats.abandoned;
  }
};

Notifier::Notifier(NotifierOptions options, StoreOptions store, Inputs inputs)
    : options_(std::move(options)),
      impl_(std::make_unique<Impl>(options_, std::move(store), std::move(inputs))) {}

Notifier::~Notifier() { Stop(); }

Status Notifier::Start() {
  Impl& m = *impl_;
  DP_ASSIGN_OR_RETURN(m.store, OpenSideConnection(m.store_options));
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  m.multi = curl_multi_init();
  if (m.multi == nullptr) return Status(Code::kInternal, "webhooks: curl_multi_init failed");
  for (const WebhookOptions& w : options_.webhooks) {
    Impl::Hook h;
    h.options = &w;
    m.hooks.push_back(std::move(h));
  }
  m.thread = std::thread([&m] { m.Run(); });
  return Status::Ok();
}

void Notifier::Stop() {
  Impl& m = *impl_;
  m.stop.store(true);
  if (m.multi) curl_multi_wakeup(m.multi);
  if (m.thread.joinable()) m.thread.join();
  if (m.multi) {
    curl_multi_cleanup(m.multi);
    m.multi = nullptr;
  }
}

void Notifier::Wake() {
  impl_->woken.store(true);
  if (impl_->multi) curl_multi_wakeup(impl_->multi);
}

void Notifier::CountQueued(std::size_t n) {
  std::lock_guard lock(impl_->mu);
  impl_->stats.queued += n;
}

NotifierStats Notifier::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

}  // namespace deskpulse::collector::notify
