#pragma once

#include <string>

#include "collector/api/server.h"
#include "collector/ingest/server.h"
#include "collector/ingest/writer.h"
#include "collector/notify/notifier.h"
#include "collector/store/store.h"
#include "deskpulse/common/status.h"

namespace deskpulse::collector {

/// The `serve` flags (the command line wins over the config file).
struct ServeFlags {
  std::string db;
  std::string listen;
  std::string http;
  std::string config;
  std::string port_file;
  std::string http_port_file;
  std::string tls_cert;
  std::string tls_key;
  std::string catalog;
  bool plaintext = false;
  bool allow_damaged = false;
  std::string log_level = "info";
  std::string log_file;
};

/// Everything `serve` runs with, validated.
struct ServeConfig {
  StoreOptions store;
  IngestOptions ingest;
  WriterOptions writer;
  /// Set: serve the JSON API (--http or http.listen).
  std::optional<api::ApiOptions> api;
  /// Set: deliver webhooks ([webhooks.NAME] tables, docs/metrics.md).
  std::optional<notify::NotifierOptions> notify;
  std::string log_level = "info";
  std::string log_file;
};

/// Reads the [store], [ingest], [http], [notify], [webhooks.NAME] and [log] tables of
/// `flags.config` (every key optional; unknown keys and bad values are errors naming the key), then
/// applies the flags, and checks TLS versus plain TCP.
Result<ServeConfig> LoadServeConfig(const ServeFlags& flags);

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns a line for the log.
std::string RaiseDescriptorLimit();

}  // namespace deskpulse::collector
