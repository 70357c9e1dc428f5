#pragma once

// The collector's durable store, as the rest of the collector sees it: an
// ingest side (credentials, streams, batch commits and the maintenance that
// trails them) and a read side (what reports and scores read). Two backends
// implement it, each in its own folder: SQLite (store/sqlite/, one collector,
// the embedded default) and PostgreSQL (store/postgres/, shared by several
// collectors). `OpenStore` chooses one by the form of `--db`.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "collector/scoring/score.h"
#include "collector/store/rollup.h"
#include "collector/store/signal_rows.h"
#include "deskpulse/common/histogram.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::collector {

struct StoreOptions {
  /// A file path (SQLite) or a postgresql:// or postgres:// URI (PostgreSQL).
  std::string db;
  bool read_only = false;
  /// Make the store when there is none: a new SQLite file, or the schema in an
  /// empty PostgreSQL database. `serve`, `token create` and `api-token create`
  /// do; a command that only uses a store refuses a missing one (NotFound), so
  /// a typo in --db never leaves an empty store behind.
  bool create_if_missing = true;
  /// The ingest writer's store (`serve`): SQLite takes the file's writer lock
  /// and checkpoints its WAL in the background; PostgreSQL registers the
  /// collector so that others can finish its rollups if it dies.
  bool serving = false;
  /// Run a quick integrity check when opening (serve does), and refuse a
  /// damaged store unless `allow_damaged`.
  bool check_at_open = false;
  bool allow_damaged = false;
  int raw_retention_days = 14;
  int hourly_retention_days = 93;
  int daily_retention_days = 400;  // 13 months
  /// How often a round of rollup flushes starts.
  std::chrono::milliseconds rollup_flush_interval{5000};
  /// SQLite: how often the WAL is checkpointed into the database file.
  std::chrono::milliseconds checkpoint_interval{250};
  std::chrono::milliseconds retention_interval{3'600'000};
  /// PostgreSQL: a collector whose heartbeat is older than this is taken for
  /// dead, and the others finish the rollups it left pending.
  std::chrono::milliseconds collector_lease{30'000};
};

struct Customer {
  std::int64_t id = 0;
  std::string name;
  bool operator==(const Customer&) const = default;
};

/// A registered (agent_id, epoch) stream, as the store holds it.
struct StreamInfo {
  std::int64_t customer_id = 0;
  std::int64_t endpoint_id = 0;
  std::int64_t stream_id = 0;
  std::uint64_t last_acked_seq = 0;
  bool operator==(const StreamInfo&) const = default;
};

/// A report accepted from the wire: its exact bytes and the decoded form.
struct IncomingReport {
  std::string bytes;
  deskpulse::v1::Report report;
};

/// One batch to commit. acked_through and duplicates are filled in by
/// CommitBatches.
struct BatchWrite {
  StreamInfo stream;  // as returned at registration
  std::vector<IncomingReport> reports;
  std::uint64_t acked_through = 0;
  std::size_t duplicates = 0;  // reports at or below the stream's watermark, skipped
};

/// A raw report row as read back (inspection and checks).
struct RawReport {
  std::int64_t customer_id = 0;
  std::int64_t endpoint_id = 0;
  std::int64_t stream_id = 0;
  std::int64_t seq = 0;
  std::int64_t received_at_ms = 0;
  deskpulse::v1::Report report;
};

/// What an integrity check found (`deskpulse-collector check`).
struct IntegrityReport {
  bool full = false;
  std::vector<std::string> problems;  // the first ones, each naming what is damaged
  std::uint64_t more_problems = 0;    // beyond those listed
  std::int64_t rows_checked = 0;      // raw report rows whose checksum was checked
  std::int64_t damaged_rows = 0;
  bool ok() const { return problems.empty(); }
};

/// The store's counters, as a snapshot.
struct StoreStats {
  /// Raw rows whose body failed its checksum when read back: left out of
  /// rollups and scores, and logged with the row.
  std::uint64_t damaged_rows = 0;
  std::uint64_t rollup_flushes = 0;
  /// Reports committed by this collector whose rollups are not written yet:
  /// what scores do not show yet, and what a stop may leave to the next start.
  std::uint64_t rollup_backlog_reports = 0;
  std::uint64_t rollup_flush_failures = 0;
  SparseHistogram flush_us;  // one rollup flush transaction
  /// Reports rolled up from the raw rows rather than from memory: after a
  /// failed commit, at open, or (PostgreSQL) for a collector that died.
  std::uint64_t reports_replayed = 0;
  std::uint64_t checkpoints = 0;  // SQLite WAL checkpoints
  std::uint64_t retention_passes = 0;
  /// PostgreSQL: batches whose stream another collector had advanced first.
  std::uint64_t watermark_races = 0;
};

/// The ingest side. Not thread-safe: the ingest writer thread owns it.
class IngestStore {
 public:
  virtual ~IngestStore() = default;

  virtual Result<Customer> EnsureCustomer(const std::string& name, std::int64_t now_ms) = 0;
  /// Creates a new enrollment token for `customer` (created if new); only its
  /// SHA-256 is stored.
  virtual Result<std::string> CreateToken(const std::string& customer, std::int64_t now_ms) = 0;
  /// The customer a token belongs to; kUnauthenticated if unknown or revoked.
  virtual Result<Customer> Authenticate(const std::string& token) = 0;
  /// Authenticates each Hello's credential and registers its stream, in one
  /// transaction; one result per Hello, in order. A stream's watermark is the
  /// store's, whichever collector advanced it.
  virtual std::vector<Result<StreamInfo>> AuthenticateAndRegister(
      std::span<const deskpulse::v1::Hello> hellos, std::int64_t now_ms) = 0;
  /// Commits every batch in one transaction. Each stream's watermark is
  /// checked and advanced inside that transaction: reports at or below it are
  /// skipped as duplicates, whoever stored them. On failure nothing durable
  /// changes. The rollups catch up in Maintain.
  virtual Status CommitBatches(std::span<BatchWrite> batches, std::int64_t now_ms) = 0;
  /// One short step of whatever background work is due (a slice of rollups,
  /// retention); returns when the next step is due. Called by the writer
  /// between commits, so no step holds commits up for long.
  virtual std::chrono::steady_clock::time_point Maintain(std::int64_t now_ms) = 0;
  /// Rolls up what was committed so far (at stop), until `deadline`: what is
  /// left then (DeadlineExceeded) is rolled up from the stored rows later, by
  /// SQLite at the next open and on PostgreSQL by any collector, so a bounded
  /// stop loses nothing.
  virtual Status FlushRollups(std::chrono::steady_clock::time_point deadline) = 0;
  /// Rolls up everything committed so far, however long it takes.
  Status FlushRollups() { return FlushRollups(std::chrono::steady_clock::time_point::max()); }
  /// Deletes raw reports and rollups past their retention.
  virtual Status ApplyRetention(std::int64_t now_ms) = 0;
  /// Thread-safe.
  virtual StoreStats stats() const = 0;
};

/// An endpoint as registered: what its latest Hello said, and when it was
/// seen (observed time of its newest report rolled up).
struct EndpointInfo {
  std::int64_t id = 0;
  std::int64_t customer_id = 0;
  std::string agent_id, hostname, os, kernel, agent_version;
  std::int64_t role = 0;  // deskpulse.v1.Hello.Role
  std::string site, pool;
  std::int64_t first_seen_ms = 0;
  std::int64_t last_seen_ms = 0;  // 0: no report rolled up yet
  /// Its newest report as of the last rollup flush (LoadEndpoint only).
  std::optional<deskpulse::v1::Report> latest_report;
};

/// The read side: what reports, scores and checks read.
class ReadStore {
 public:
  virtual ~ReadStore() = default;

  /// Every customer, by name.
  virtual Result<std::vector<Customer>> ListCustomers() = 0;
  /// Rollup figures of one customer for days [from_ms, to_ms).
  virtual Result<scoring::WindowRollup> LoadWindow(std::int64_t customer_id, std::int64_t from_ms,
                                                   std::int64_t to_ms) = 0;
  /// The same for every customer at once, by customer id: fleet-wide views
  /// take a few queries in all, not a round of them per customer. A customer
  /// with nothing in the window is absent.
  virtual Result<std::map<std::int64_t, scoring::WindowRollup>> LoadWindows(std::int64_t from_ms,
                                                                            std::int64_t to_ms) = 0;
  /// A customer's endpoints, by id.
  virtual Result<std::vector<EndpointInfo>> ListEndpoints(std::int64_t customer_id) = 0;
  /// One endpoint of a customer with its latest report; nullopt when the
  /// customer has no such endpoint.
  virtual Result<std::optional<EndpointInfo>> LoadEndpoint(std::int64_t customer_id,
                                                           std::int64_t endpoint_id) = 0;
  /// Each endpoint's day rollups for [from_ms, to_ms), by endpoint id: what
  /// drivers break down by site and pool. Endpoints with nothing in the
  /// window are absent; `endpoints` is 1 and peripherals are not filled.
  virtual Result<std::map<std::int64_t, scoring::WindowRollup>> LoadEndpointWindows(
      std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) = 0;
  /// One endpoint's day rollups for [from_ms, to_ms), by day start.
  virtual Result<std::map<std::int64_t, scoring::WindowRollup>> LoadEndpointDays(
      std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms,
      std::int64_t to_ms) = 0;
  /// A customer's own day rollups (its customer-level rows) for [from_ms,
  /// to_ms), by day start; `endpoints` is how many endpoints reported that day.
  virtual Result<std::map<std::int64_t, scoring::WindowRollup>> LoadCustomerDays(
      std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) = 0;
  /// One metric's day cells of each of a customer's endpoints for [from_ms,
  /// to_ms): by endpoint id, then day start. What series by site are made of.
  virtual Result<std::map<std::int64_t, std::map<std::int64_t, RollupCell>>> LoadEndpointDayCells(
      std::int64_t customer_id, Metric metric, std::int64_t from_ms, std::int64_t to_ms) = 0;
  /// A customer's device instances seen since `from_ms`, by endpoint and key.
  virtual Result<std::vector<PeripheralInstance>> LoadPeripheralInstances(std::int64_t customer_id,
                                                                          std::int64_t from_ms) = 0;
  /// The same for one of its endpoints, by key.
  virtual Result<std::vector<PeripheralInstance>> LoadEndpointPeripheralInstances(
      std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms) = 0;
  virtual Result<std::int64_t> CountRawReports() = 0;
  /// Every stream with its watermark, by stream id.
  virtual Result<std::vector<StreamInfo>> ListStreams() = 0;
  /// Every rollup row, in key order.
  virtual Result<std::vector<RollupRow>> LoadRollupRows() = 0;
  /// Every raw report whose body is sound, in no particular order; damaged
  /// rows are counted and logged, never handed to `fn`.
  virtual Status ForEachRawReport(const std::function<void(const RawReport&)>& fn) = 0;
  /// The backend's own structural check; with `full` also every raw row's
  /// checksum, every rollup histogram and each stream's watermark against its
  /// stored rows.
  virtual Result<IntegrityReport> Check(bool full) = 0;
};

/// Business signals imported per customer (docs/signals.md).
class SignalStore {
 public:
  virtual ~SignalStore() = default;

  /// Stores every row of `batch` in one transaction, each replacing the row
  /// with its natural key. A row naming an unknown customer fails the whole
  /// import (kNotFound, naming the row): nothing is stored. The same bytes
  /// of the same kind imported again store nothing and say so.
  virtual Result<ImportResult> ImportSignals(const SignalBatch& batch, std::int64_t now_ms) = 0;
  /// The latest `limit` imports, newest first.
  virtual Result<std::vector<ImportRecord>> ListImports(std::size_t limit) = 0;
  /// One customer's signals, each list by its key (date, ticket id), and
  /// its overrides (expired ones too: scoring ignores them).
  virtual Result<CustomerSignals> LoadSignals(std::int64_t customer_id) = 0;

  /// Sets an account manager's override of a business factor, replacing the
  /// customer's earlier one for that factor.
  virtual Status SetOverride(std::int64_t customer_id, const scoring::Override& o,
                             std::int64_t now_ms) = 0;
  /// Stores each record's day snapshot (replacing one recorded earlier that
  /// day) and, when its risk differs from the latest snapshot at or before
  /// that day, the change as an event with the record's reasons; returns
  /// the events, one slot per record. All in one transaction: a round of
  /// 500 customers is one commit, not 500 taking turns with ingest for the
  /// store's write lock. Records are applied in order, so a later record of
  /// the same customer sees an earlier one.
  virtual Result<std::vector<std::optional<RiskEvent>>> RecordHealthBatch(
      std::span<const HealthRecord> records, std::int64_t now_ms) = 0;
  /// One record: RecordHealthBatch of one.
  Result<std::optional<RiskEvent>> RecordHealth(const HealthSnapshot& snapshot,
                                                const std::vector<std::string>& reasons,
                                                std::int64_t now_ms);
  /// A customer's snapshots from `from_day_ms` on, oldest first.
  virtual Result<std::vector<HealthSnapshot>> LoadHistory(std::int64_t customer_id,
                                                          std::int64_t from_day_ms) = 0;
  /// A customer's risk changes, oldest first.
  virtual Result<std::vector<RiskEvent>> LoadRiskEvents(std::int64_t customer_id) = 0;
};

enum class ApiRole { kVendor, kCustomerAdmin };
const char* ApiRoleName(ApiRole r);  // "vendor", "customer-admin"
std::optional<ApiRole> ParseApiRole(std::string_view s);

/// An API bearer token as listed (never the token itself: only its hash is stored).
struct ApiToken {
  std::int64_t id = 0;
  ApiRole role = ApiRole::kCustomerAdmin;
  std::optional<Customer> customer;  // the customer-admin's customer
  std::int64_t created_ms = 0;
  std::optional<std::int64_t> revoked_ms;
  bool operator==(const ApiToken&) const = default;
};

/// API bearer tokens (docs/api.md).
class ApiTokenStore {
 public:
  virtual ~ApiTokenStore() = default;
  /// A new token, returned once; only its SHA-256 is stored. A
  /// customer-admin token needs its customer, a vendor token takes none.
  virtual Result<std::pair<ApiToken, std::string>> CreateApiToken(
      ApiRole role, std::optional<std::int64_t> customer_id, std::int64_t now_ms) = 0;
  /// Every token, by id.
  virtual Result<std::vector<ApiToken>> ListApiTokens() = 0;
  /// kNotFound when there is no such token; revoking twice keeps the first time.
  virtual Status RevokeApiToken(std::int64_t token_id, std::int64_t now_ms) = 0;
  /// The token's grant; kUnauthenticated when unknown or revoked.
  virtual Result<ApiToken> AuthenticateApiToken(const std::string& token) = 0;
};

/// One event for one webhook, held in the store until it is delivered
/// (docs/metrics.md, "Webhooks"), so none is lost to a restart.
struct WebhookDelivery {
  std::int64_t id = 0;
  std::string webhook;    // the configured webhook's name
  std::string event_key;  // the event's idempotency key, the same whoever queues it
  std::string payload;    // the JSON body
  std::int64_t created_ms = 0;
  std::int64_t attempts = 0;         // claims so far
  std::int64_t next_attempt_ms = 0;  // due then (a claim leases it until then)
  std::optional<std::int64_t> delivered_ms, abandoned_ms;
  std::string last_error;
  bool operator==(const WebhookDelivery&) const = default;
};

/// The webhooks' outbox. Queuing is idempotent by (webhook, event_key); a
/// claim leases a delivery, so two collectors sharing a store do not send it
/// at once.
class WebhookStore {
 public:
  virtual ~WebhookStore() = default;
  /// Queues each delivery (webhook, event_key, payload) due at once, unless
  /// one with its webhook and key is held already. Returns how many were new.
  virtual Result<std::size_t> EnqueueDeliveries(const std::vector<WebhookDelivery>& deliveries,
                                                std::int64_t now_ms) = 0;
  /// Up to `limit` of `webhook`'s deliveries due at `now_ms`, oldest due
  /// first, each counted as an attempt and leased until now + lease_ms.
  virtual Result<std::vector<WebhookDelivery>> ClaimDeliveries(const std::string& webhook,
                                                               std::int64_t now_ms,
                                                               std::int64_t lease_ms,
                                                               std::size_t limit) = 0;
  /// Delivered: never sent again.
  virtual Status CompleteDelivery(std::int64_t id, std::int64_t now_ms) = 0;
  /// Failed: due again at `retry_at_ms`, or, when `abandon`, never again.
  virtual Status FailDelivery(std::int64_t id, const std::string& error, std::int64_t retry_at_ms,
                              bool abandon) = 0;
  /// `webhook`'s deliveries, oldest first (inspection and tests).
  virtual Result<std::vector<WebhookDelivery>> ListDeliveries(const std::string& webhook) = 0;
  /// Forgets delivered and abandoned deliveries finished before `before_ms`.
  virtual Result<std::size_t> PruneDeliveries(std::int64_t before_ms) = 0;
};

/// Both sides of one backend.
class Store : public IngestStore,
              public ReadStore,
              public SignalStore,
              public ApiTokenStore,
              public WebhookStore {
 public:
  /// "sqlite" or "postgresql".
  virtual std::string_view backend() const = 0;
  /// The file path, or the URI without its password: safe to log.
  virtual const std::string& name() const = 0;
  virtual int schema_version() const = 0;
};

/// Opens (creating and migrating, unless read-only) the store `options.db`
/// names: a postgresql:// or postgres:// URI is PostgreSQL, anything else an
/// SQLite file.
Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options);

/// Another connection to the store `serving` (serve's options) opens: for a
/// thread of serve's own (the API, the health book, the webhooks), not
/// serving, writable, without the integrity check at open.
Result<std::unique_ptr<Store>> OpenSideConnection(const StoreOptions& serving);

/// True when `db` is a PostgreSQL URI.
bool IsPostgresUri(std::string_view db);

/// `db` as it may be logged or shown: a URI's password (in the authority or
/// a `password=` parameter) replaced by "***".
std::string RedactDb(std::string_view db);

/// What to do about a store that is not there, to follow "no store at X".
std::string NoStoreHint();

/// The customer named `name`; NotFound names the store's customers (the first
/// ten), so a typo is seen at once.
Result<Customer> FindCustomerNamed(ReadStore& store, const std::string& name);

/// The schema version both backends' migrations end at.
int LatestSchemaVersion();

/// The error an import gets for a row whose customer the store does not know.
Status UnknownSignalCustomer(const SignalRow& row);

/// Why `role` cannot take `customer_id` (a customer-admin needs one, a vendor none), if so.
Status CheckApiGrant(ApiRole role, const std::optional<std::int64_t>& customer_id);

/// The event recording `snapshot` makes: its risk against `before`, the
/// latest snapshot's at or before its day (none: a first assessment, no event).
std::optional<RiskEvent> RiskChange(const HealthSnapshot& snapshot,
                                    const std::optional<std::string>& before,
                                    const std::vector<std::string>& reasons, std::int64_t now_ms);

/// Risk reasons as one stored text (a line each) and back.
std::string JoinReasons(const std::vector<std::string>& reasons);
std::vector<std::string> SplitReasons(std::string_view text);

/// Hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);
/// Hex SHA-256 of a token, as stored.
std::string HashToken(const std::string& token);
/// A new random token: `prefix` + 43 base64url characters (256 bits);
/// "dpt_" for enrollment, "dpa_" for the API.
Result<std::string> NewToken(std::string_view prefix = "dpt_");

}  // namespace deskpulse::collector
