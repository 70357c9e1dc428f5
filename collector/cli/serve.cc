#include "collector/app/serve.h"

#include "collector/cli/commands.h"
#include "deskpulse/common/catalog.h"

namespace deskpulse::collector::cli {

void AddServe(CLI::App& app, Run* run) {
  auto flags = std::make_shared<ServeFlags>();
  auto* s = app.add_subcommand("serve", "Receive reports from agents until SIGTERM");
  AddDbOption(s, &flags->db)
      ->description(
          "the store: an SQLite file (created if missing), or a postgresql:// URI shared with "
          "other "
          "collectors (give its password in PGPASSWORD or ~/.pgpass, not in the URI)");
  s->add_option("--listen", flags->listen, "HOST:PORT for agents (default 127.0.0.1:7741)");
  s->add_option("--http", flags->http,
                "HOST:PORT for the JSON API (docs/api.md); TLS with --tls-cert/--tls-key");
  s->add_option("--config", flags->config, "TOML config file; flags override it")
      ->check(CLI::ExistingFile);
  s->add_option("--port-file", flags->port_file, "write the bound port here (for --listen :0)");
  s->add_option("--http-port-file", flags->http_port_file,
                "write the API's bound port here (for --http :0)");
  s->add_option("--tls-cert", flags->tls_cert, "PEM certificate chain: agents connect over TLS");
  s->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  s->add_option("--catalog", flags->catalog,
                std::string("the API's peripheral catalog, for devices that arrive without a "
                            "verdict (default ") +
                    catalog::kDefaultPath + " when it exists)");
  s->add_flag("--plaintext", flags->plaintext,
              "accept plain TCP on a non-loopback address (loopback is always allowed)");
  s->add_flag("--allow-damaged", flags->allow_damaged,
              "serve even if the start-up check finds the store damaged");
  s->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error");
  s->add_option("--log-file", flags->log_file, "also write the log to this file");
  s->callback([run, flags] { *run = [flags] { return RunServe(*flags); }; });
}

}  // namespace deskpulse::collector::cli
