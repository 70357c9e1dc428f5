#include "collector/app/serve_config.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cctype>
#include <fstream>

#include "deskpulse/common/config.h"
#include "deskpulse/common/host_port.h"
#include "deskpulse/common/tls_openssl.h"

namespace deskpulse::collector {
namespace {

// One key in seconds (fractions allowed) into a duration in milliseconds.
Status GetSeconds(ConfigReader& cfg, std::string_view key, double min, double max,
                  std::chrono::milliseconds* out) {
  double secs = static_cast<double>(out->count()) / 1000;
  DP_RETURN_IF_ERROR(cfg.GetDouble(key, min, max, &secs));
  *out = std::chrono::milliseconds(static_cast<std::int64_t>(secs * 1000));
  return Status::Ok();
}

template <typename T>
Status GetCount(ConfigReader& cfg, std::string_view key, std::int64_t min, std::int64_t max,
                T* out) {
  auto v = static_cast<std::int64_t>(*out);
  DP_RETURN_IF_ERROR(cfg.GetInt(key, min, max, &v));
  *out = static_cast<T>(v);
  return Status::Ok();
}

/// A file's contents without trailing whitespace (a secret, written by hand).
Result<std::string> ReadSecret(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(fmt::format("{}: cannot read '{}'", key, path));
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > 4096)
      return InvalidArgument(fmt::format("{}: '{}' is over 4 KiB", key, path));
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

/// [notify] and each [webhooks.NAME] table.
Status ReadWebhooks(ConfigReader& cfg, std::optional<notify::NotifierOptions>* out) {
  notify::NotifierOptions n;
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "notify.check_interval_s", 1, 3600, &n.check_interval));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "notify.poll_interval_s", 0.1, 3600, &n.poll_interval));
  std::vector<std::string> names;
  DP_RETURN_IF_ERROR(cfg.GetTableNames("webhooks", &names));
  for (const std::string& name : names) {
    const std::string k = "webhooks." + name + ".";
    notify::WebhookOptions w;
    w.name = name;
    DP_RETURN_IF_ERROR(cfg.GetString(k + "url", &w.url));
    if (w.url.empty()) return InvalidArgument(cfg.source() + ": key '" + k + "url' is required");
    std::string secret_file;
    DP_RETURN_IF_ERROR(cfg.GetString(k + "secret_file", &secret_file));
    if (secret_file.empty()) {
      return InvalidArgument(cfg.source() + ": key '" + k +
                             "secret_file' is required: every delivery is signed");
    }
    DP_ASSIGN_OR_RETURN(w.secret, ReadSecret(secret_file, k + "secret_file"));
    std::vector<std::string> events;
    DP_RETURN_IF_ERROR(cfg.GetStringList(k + "events", &events));
    for (const std::string& e : events) {
      if (e != notify::kRiskRaised && e != notify::kConditionStarted) {
        return InvalidArgument(fmt::format(
            "{}: key '{}events': unknown event '{}' (there are {} "
            "and {})",
            cfg.source(), k, e.substr(0, 64), notify::kRiskRaised, notify::kConditionStarted));
      }
      w.events.insert(e);
    }
    DP_RETURN_IF_ERROR(cfg.GetString(k + "ca_file", &w.ca_file));
    DP_RETURN_IF_ERROR(GetSeconds(cfg, k + "timeout_s", 0.1, 300, &w.timeout));
    DP_RETURN_IF_ERROR(GetSeconds(cfg, k + "retry_initial_s", 0.1, 3600, &w.retry_initial));
    DP_RETURN_IF_ERROR(GetSeconds(cfg, k + "retry_max_s", 1, 86400, &w.retry_max));
    DP_RETURN_IF_ERROR(GetSeconds(cfg, k + "give_up_after_s", 60, 30 * 86400, &w.give_up_after));
    bool plaintext = false;
    DP_RETURN_IF_ERROR(cfg.GetBool(k + "allow_plaintext", &plaintext));
    if (Status s = notify::CheckWebhook(w, plaintext); !s.ok()) {
      return InvalidArgument(cfg.source() + ": " + s.message());
    }
    n.webhooks.push_back(std::move(w));
  }
  if (!n.webhooks.empty()) *out = std::move(n);
  return Status::Ok();
}

Status ReadFile(ConfigReader& cfg, ServeConfig* c, std::string* listen, TlsOptions* tls,
                bool* plaintext, std::string* http, api::ApiOptions* a) {
  StoreOptions& st = c->store;
  IngestOptions& in = c->ingest;
  WriterOptions& w = c->writer;
  // store.db: a file path or a postgresql:// URI (store.path is its older name).
  DP_RETURN_IF_ERROR(cfg.GetString("store.path", &st.db));
  DP_RETURN_IF_ERROR(cfg.GetString("store.db", &st.db));
  DP_RETURN_IF_ERROR(GetCount(cfg, "store.raw_retention_days", 1, 3650, &st.raw_retention_days));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "store.hourly_retention_days", 1, 3650, &st.hourly_retention_days));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "store.daily_retention_days", 1, 3650, &st.daily_retention_days));
  // At most 10 s: the WAL is the only durable copy of what was acknowledged
  // since the last checkpoint (docs/operations.md).
  std::int64_t checkpoint = st.checkpoint_interval.count();
  DP_RETURN_IF_ERROR(cfg.GetInt("store.checkpoint_interval_ms", 10, 10'000, &checkpoint));
  st.checkpoint_interval = std::chrono::milliseconds(checkpoint);
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "store.rollup_flush_s", 0.1, 3600, &st.rollup_flush_interval));
  // PostgreSQL: how long a silent collector counts as alive (its pending
  // rollups are finished by the others after that).
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "store.collector_lease_s", 0.5, 3600, &st.collector_lease));

  DP_RETURN_IF_ERROR(cfg.GetString("ingest.listen", listen));
  DP_RETURN_IF_ERROR(cfg.GetString("ingest.tls_cert_file", &tls->cert_file));
  DP_RETURN_IF_ERROR(cfg.GetString("ingest.tls_key_file", &tls->key_file));
  DP_RETURN_IF_ERROR(cfg.GetBool("ingest.plaintext", plaintext));
  DP_RETURN_IF_ERROR(cfg.GetString("ingest.node_name", &in.node_name));
  DP_RETURN_IF_ERROR(GetCount(cfg, "ingest.max_frame_bytes", 1024, 64 << 20, &in.max_frame_bytes));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "ingest.max_hello_frame_bytes", 1024, 64 << 10, &in.max_hello_frame_bytes));
  DP_RETURN_IF_ERROR(GetCount(cfg, "ingest.max_batch_reports", 1, 100000, &in.max_batch_reports));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "ingest.max_inflight_batches", 1, 1024, &in.max_inflight_batches));
  DP_RETURN_IF_ERROR(
      GetSeconds(cfg, "ingest.handshake_timeout_s", 0.1, 300, &in.handshake_timeout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "ingest.idle_timeout_s", 0.1, 86400, &in.idle_timeout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "ingest.frame_timeout_s", 0.1, 3600, &in.frame_timeout));
  std::int64_t max_connections = 0;  // 0: not in the file
  DP_RETURN_IF_ERROR(cfg.GetInt("ingest.max_connections", 1, 10'000'000, &max_connections));
  if (max_connections > 0) {
    in.max_connections = static_cast<std::size_t>(max_connections);
    in.max_connections_configured = true;
  }
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "ingest.max_pending_connections", 1, 1'000'000, &in.max_pending_connections));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "ingest.max_pending_per_peer", 1, 1'000'000, &in.max_pending_per_peer));
  std::int64_t buffered_mib = static_cast<std::int64_t>(in.max_buffered_bytes >> 20);
  DP_RETURN_IF_ERROR(cfg.GetInt("ingest.max_buffered_mib", 1, 1 << 20, &buffered_mib));
  in.max_buffered_bytes = static_cast<std::uint64_t>(buffered_mib) << 20;
  DP_RETURN_IF_ERROR(GetCount(cfg, "ingest.auth_failures_before_delay", 0, 1'000'000,
                              &in.auth.failures_before_delay));
  std::int64_t delay = in.auth.delay.count();
  DP_RETURN_IF_ERROR(cfg.GetInt("ingest.auth_failure_delay_ms", 0, 60'000, &delay));
  in.auth.delay = std::chrono::milliseconds(delay);
  DP_RETURN_IF_ERROR(GetCount(cfg, "ingest.auth_failures_before_lockout", 0, 1'000'000,
                              &in.auth.failures_before_lockout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "ingest.auth_failure_window_s", 1, 86400, &in.auth.window));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "ingest.auth_lockout_s", 1, 86400, &in.auth.lockout));
  double ms = static_cast<double>(w.group_commit_window.count()) / 1000;
  DP_RETURN_IF_ERROR(cfg.GetDouble("ingest.group_commit_ms", 0, 1000, &ms));
  w.group_commit_window = std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000));
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "ingest.group_commit_reports", 1, 1'000'000, &w.group_commit_reports));

  DP_RETURN_IF_ERROR(cfg.GetString("http.listen", http));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.health_refresh_s", 1, 86400, &a->refresh_interval));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.health_record_s", 1, 86400, &a->record_interval));
  DP_RETURN_IF_ERROR(cfg.GetString("http.catalog", &a->catalog));
  DP_RETURN_IF_ERROR(GetCount(cfg, "http.max_connections", 1, 100'000, &a->http.max_connections));
  DP_RETURN_IF_ERROR(GetCount(cfg, "http.max_connections_per_peer", 1, 100'000,
                              &a->http.max_connections_per_peer));
  DP_RETURN_IF_ERROR(
      GetSeconds(cfg, "http.handshake_timeout_s", 0.1, 3600, &a->http.handshake_timeout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.head_timeout_s", 0.1, 3600, &a->http.head_timeout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.idle_timeout_s", 0.1, 86400, &a->http.idle_timeout));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.body_timeout_s", 0.1, 3600, &a->http.body_timeout));
  std::size_t import_mib = a->max_import_bytes >> 20;
  DP_RETURN_IF_ERROR(GetCount(cfg, "http.max_import_mib", 1, 1024, &import_mib));
  a->max_import_bytes = import_mib << 20;
  DP_RETURN_IF_ERROR(
      GetCount(cfg, "http.failed_logins_per_window", 1, 1'000'000, &a->failed_auth.max_failures));
  std::chrono::milliseconds window{a->failed_auth.window_ms};
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "http.failed_login_window_s", 1, 86400, &window));
  a->failed_auth.window_ms = window.count();

  DP_RETURN_IF_ERROR(ReadWebhooks(cfg, &c->notify));

  DP_RETURN_IF_ERROR(cfg.GetString("log.level", &c->log_level));
  DP_RETURN_IF_ERROR(cfg.GetString("log.file", &c->log_file));
  DP_RETURN_IF_ERROR(GetSeconds(cfg, "log.summary_interval_s", 1, 3600, &in.log_summary_interval));
  return cfg.CheckNoUnknownKeys();
}

}  // namespace

Result<ServeConfig> LoadServeConfig(const ServeFlags& flags) {
  ServeConfig c;
  c.store.check_at_open = true;
  c.store.serving = true;
  std::string listen = "127.0.0.1:7741";
  TlsOptions tls;
  bool plaintext = false;
  std::string http;
  api::ApiOptions api;
  if (!flags.config.empty()) {
    DP_ASSIGN_OR_RETURN(auto cfg, ConfigReader::FromFile(flags.config));
    DP_RETURN_IF_ERROR(ReadFile(cfg, &c, &listen, &tls, &plaintext, &http, &api));
  }
  if (!flags.http.empty()) http = flags.http;
  if (!flags.catalog.empty()) api.catalog = flags.catalog;
  if (!flags.db.empty()) c.store.db = flags.db;
  c.store.allow_damaged = flags.allow_damaged;
  if (!flags.listen.empty()) listen = flags.listen;
  if (flags.log_level != "info") c.log_level = flags.log_level;
  if (!flags.log_file.empty()) c.log_file = flags.log_file;
  if (c.store.db.empty()) return InvalidArgument("--db (or store.db) is required");
  if (c.ingest.max_pending_per_peer > c.ingest.max_pending_connections) {
    return InvalidArgument(
        fmt::format("ingest.max_pending_per_peer ({}) is above ingest.max_pending_connections ({})",
                    c.ingest.max_pending_per_peer, c.ingest.max_pending_connections));
  }
  if (c.ingest.max_hello_frame_bytes > c.ingest.max_frame_bytes) {
    return InvalidArgument(
        fmt::format("ingest.max_hello_frame_bytes ({}) is above ingest.max_frame_bytes ({})",
                    c.ingest.max_hello_frame_bytes, c.ingest.max_frame_bytes));
  }
  DP_ASSIGN_OR_RETURN(auto hp, ParseHostPort(listen, "--listen"));
  c.ingest.host = hp.host;
  c.ingest.port = hp.port;

  // TLS unless told otherwise; plain TCP only on loopback or when asked for.
  if (!flags.tls_cert.empty()) tls.cert_file = flags.tls_cert;
  if (!flags.tls_key.empty()) tls.key_file = flags.tls_key;
  plaintext = plaintext || flags.plaintext;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return InvalidArgument("--tls-cert and --tls-key go together");
  }
  if (!tls.cert_file.empty()) {
    if (plaintext) return InvalidArgument("--plaintext contradicts --tls-cert/--tls-key");
    DP_ASSIGN_OR_RETURN(c.ingest.tls, MakeServerTlsContext(tls));
  } else if (!plaintext && !IsLoopbackHost(c.ingest.host)) {
    return InvalidArgument(
        "--listen " + listen +
        " is not a loopback address: agents' credentials would cross the "
        "network in clear. Give --tls-cert and --tls-key, or --plaintext to allow that "
        "explicitly");
  }
  if (!http.empty()) {
    // The API over the same TLS as ingest; in clear only where tokens stay
    // on the machine, or when asked for.
    DP_ASSIGN_OR_RETURN(auto ahp, ParseHostPort(http, "--http"));
    api.host = ahp.host;
    api.port = ahp.port;
    api.tls = c.ingest.tls;
    if (!api.tls && !plaintext && !IsLoopbackHost(api.host)) {
      return InvalidArgument("--http " + http +
                             " is not a loopback address: API tokens would cross the network "
                             "in clear. Give --tls-cert and --tls-key, or --plaintext");
    }
    c.api = api;
  }
  return c;
}

std::string RaiseDescriptorLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return "descriptor limit unknown";
  if (rl.rlim_cur >= rl.rlim_max) {
    return fmt::format("descriptor limit {}", static_cast<std::uint64_t>(rl.rlim_cur));
  }
  const auto before = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return fmt::format("descriptor limit {} (could not raise it to {})",
                       static_cast<std::uint64_t>(before), static_cast<std::uint64_t>(rl.rlim_max));
  }
  return fmt::format("descriptor limit {} (raised from {})",
                     static_cast<std::uint64_t>(rl.rlim_cur), static_cast<std::uint64_t>(before));
}

}  // namespace deskpulse::collector
