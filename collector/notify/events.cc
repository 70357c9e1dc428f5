#include "collector/notify/events.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "deskpulse/common/byte_stream.h"

namespace deskpulse::collector::notify {
namespace {

/// Unknown (no data yet) ranks with low: a customer's first data showing it
/// at low risk is no rise, at medium or high one is.
int RiskRank(std::string_view r) {
  if (r == "medium") return 2;
  if (r == "high") return 3;
  return 1;
}

}  // namespace

Status CheckWebhook(const WebhookOptions& w, bool allow_plaintext) {
  const std::string where = "webhooks." + w.name;
  CURLU* u = curl_url();
  if (u == nullptr) return Status(Code::kInternal, "out of memory");
  const CURLUcode parsed = curl_url_set(u, CURLUPART_URL, w.url.c_str(), 0);
  char* scheme = nullptr;
  char* host = nullptr;
  if (parsed == CURLUE_OK) {
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
  }
  const std::string s = scheme ? scheme : "";
  std::string h = host ? host : "";
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  if (parsed != CURLUE_OK) {
    return InvalidArgument(fmt::format("{}.url: '{}' is not a URL: {}", where, w.url.substr(0, 200),
                                       curl_url_strerror(parsed)));
  }
  if (s != "https" && s != "http") {
    return InvalidArgument(
        fmt::format("{}.url: the scheme must be https or http, not {}", where, s));
  }
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (s == "http" && !allow_plaintext && !IsLoopbackHost(h)) {
    return InvalidArgument(fmt::format(
        "{}.url: plain http to {} would send customers' names in clear: use https, or set "
        "{}.allow_plaintext = true",
        where, h, where));
  }
  if (w.secret.size() < 16) {
    return InvalidArgument(
        fmt::format("{}.secret_file: the signing secret must be at least 16 bytes", where));
  }
  return Status::Ok();
}

std::optional<Event> RiskRaised(const CustomerHealth& c) {
  if (!c.risk_change) return std::nullopt;
  const RiskEvent& r = *c.risk_change;
  if (RiskRank(r.to_risk) <= RiskRank(r.from_risk)) return std::nullopt;
  Event e;
  e.type = std::string(kRiskRaised);
  e.key = fmt::format("{}:{}:{}", kRiskRaised, r.customer_id, r.at_ms);
  const auto& h = c.health;
  nlohmann::json drivers = nlohmann::json::array();
  for (std::size_t i = 0; i < h.drivers.size() && i < 3; ++i) drivers.push_back(h.drivers[i].text);
  e.payload = {
      {"id", e.key},
      {"type", e.type},
      {"at_unix_ms", r.at_ms},
      {"customer", {{"id", r.customer_id}, {"name", c.technical.customer.name}}},
      {"risk", {{"from", r.from_risk}, {"to", r.to_risk}, {"reasons", r.reasons}}},
      {"tps", c.technical.score.tps ? nlohmann::json(*c.technical.score.tps) : nlohmann::json()},
      {"lhi", h.lhi ? nlohmann::json(*h.lhi) : nlohmann::json()},
      {"coverage", h.coverage},
      {"top_drivers", drivers},
  };
  return e;
}

std::vector<WebhookDelivery> DeliveriesFor(const Event& e,
                                           const std::vector<WebhookOptions>& webhooks) {
  std::vector<WebhookDelivery> out;
  const std::string body = e.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (const WebhookOptions& w : webhooks) {
    if (!w.events.empty() && !w.events.contains(e.type)) continue;
    WebhookDelivery d;
    d.webhook = w.name;
    d.event_key = e.key;
    d.payload = body;
    out.push_back(std::move(d));
  }
  return out;
}

std::string Sign(std::string_view secret, std::int64_t unix_s, std::string_view body) {
  const std::string t = std::to_string(unix_s);
  std::string signed_text = t + ".";
  signed_text.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &len);
  std::string hex;
  hex.reserve(std::size_t{len} * 2);
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", mac[i]);
  return "t=" + t + ",v1=" + hex;
}

std::chrono::milliseconds Backoff(const WebhookOptions& w, std::int64_t attempts,
                                  std::mt19937_64& rng) {
  double ms = static_cast<double>(w.retry_initial.count());
  for (std::int64_t i = 1; i < attempts && ms < static_cast<double>(w.retry_max.count()); ++i) {
    ms *= 2;
  }
  ms = std::min(ms, static_cast<double>(w.retry_max.count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms * jitter(rng)));
}

void ConditionTracker::Judge(std::vector<Event>* out, const char* name, bool holds,
                             std::string summary, std::int64_t now_ms,
                             const std::string& collector) {
  State& s = states_[name];
  if (holds) {
    if (!s.active) {
      Event e;
      e.type = std::string(kConditionStarted);
      e.key = fmt::format("{}:{}:{}:{}", kConditionStarted, name, collector, now_ms);
      e.payload = {{"id", e.key},
                   {"type", e.type},
                   {"at_unix_ms", now_ms},
                   {"collector", collector},
                   {"condition", {{"name", name}, {"summary", std::move(summary)}}}};
      out->push_back(std::move(e));
    }
    s.active = true;
    s.last_held_ms = now_ms;
  } else if (s.active && now_ms - s.last_held_ms >= quiet_ms_) {
    s.active = false;
  }
}

std::vector<Event> ConditionTracker::Update(const ConditionInputs& in, std::int64_t now_ms,
                                            const std::string& collector) {
  std::vector<Event> out;
  if (!last_) {
    last_ = in;
    return out;
  }
  const ConditionInputs& was = *last_;
  // A counter below its last value is a restart of what counts it: no rise.
  auto rise = [](std::uint64_t now, std::uint64_t before) {
    return now > before ? now - before : 0;
  };
  const std::uint64_t failed = rise(in.commit_failures, was.commit_failures);
  Judge(&out, "store_commits_failing", failed > 0,
        fmt::format("{} group commits failed since the last check: agents are not being "
                    "acknowledged",
                    failed),
        now_ms, collector);
  const std::uint64_t behind = rise(in.streams_behind_agents, was.streams_behind_agents);
  Judge(
      &out, "acknowledged_reports_lost", behind > 0,
      fmt::format("{} acknowledged further than the store holds: it lost "
                  "acknowledged reports (a restored backup, a lost WAL)",
                  behind == 1 ? std::string("1 agent was") : fmt::format("{} agents were", behind)),
      now_ms, collector);
  const std::uint64_t dropped = in.agent_dropped_reports && was.agent_dropped_reports
                                    ? rise(*in.agent_dropped_reports, *was.agent_dropped_reports)
                                    : 0;
  Judge(&out, "agents_dropping_reports", dropped > 0,
        fmt::format("agents dropped {} spooled reports since the last check (spools full while "
                    "cut off from every collector)",
                    dropped),
        now_ms, collector);
  const std::uint64_t acks = rise(in.acks, was.acks);
  const std::uint64_t within = std::min(acks, rise(in.acks_within_bar, was.acks_within_bar));
  const bool slow = acks >= 100 && static_cast<double>(within) < 0.99 * static_cast<double>(acks);
  Judge(&out, "ack_latency_high", slow,
        fmt::format(
            "{:.1f}% of {} acknowledgements took longer than 50 ms since the last check "
            "(the bar is p99 within 50 ms)",
            acks ? 100.0 * static_cast<double>(acks - within) / static_cast<double>(acks) : 0.0,
            acks),
        now_ms, collector);
  last_ = in;
  return out;
}

std::vector<std::string> ConditionTracker::active() const {
  std::vector<std::string> out;
  for (const auto& [name, s] : states_) {
    if (s.active) out.push_back(name);
  }
  return out;
}

}  // namespace deskpulse::collector::notify
