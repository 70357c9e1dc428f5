#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "collector/store/postgres/connection.h"
#include "collector/store/store.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector {

/// The shared store on PostgreSQL: any number of collectors write one
/// database.
///
/// Exactly once: a batch's transaction locks its streams' rows (in key order,
/// so two collectors never deadlock), skips reports at or below the locked
/// watermark and advances it, so two collectors committing the same stream at
/// once serialise on the row and neither duplicates nor loses a report.
///
/// Rollups: the same transaction records the batch in `rollup_pending`; the
/// contribution, kept in memory, is added to the rollups by the transaction
/// that deletes that record. A collector that dies leaves its records, and any
/// other finishes them from the raw rows once its heartbeat is older than the
/// lease; a record taken by someone else is never counted twice, because only
/// the transaction that deletes it adds it. Histograms are merged in the
/// collector under row locks, so the result does not depend on commit order.
class PgStore final : public Store {
 public:
  static Result<std::unique_ptr<PgStore>> Open(const StoreOptions& options);
  ~PgStore() override;

  std::string_view backend() const override { return "postgresql"; }
  const std::string& name() const override { return name_; }
  int schema_version() const override { return schema_version_; }

  Result<Customer> EnsureCustomer(const std::string& name, std::int64_t now_ms) override;
  Result<std::string> CreateToken(const std::string& customer, std::int64_t now_ms) override;
  Result<Customer> Authenticate(const std::string& token) override;
  std::vector<Result<StreamInfo>> AuthenticateAndRegister(
      std::span<const deskpulse::v1::Hello> hellos, std::int64_t now_ms) override;
  Status CommitBatches(std::span<BatchWrite> batches, std::int64_t now_ms) override;
  std::chrono::steady_clock::time_point Maintain(std::int64_t now_ms) override;
  Status FlushRollups(std::chrono::steady_clock::time_point deadline) override;
  using IngestStore::FlushRollups;
  Status ApplyRetention(std::int64_t now_ms) override;
  StoreStats stats() const override;

  Result<std::vector<Customer>> ListCustomers() override;
  Result<scoring::WindowRollup> LoadWindow(std::int64_t customer_id, std::int64_t from_ms,
                                           std::int64_t to_ms) override;
  Result<std::map<std::int64_t, scoring::WindowRollup>> LoadWindows(std::int64_t from_ms,
                                                                    std::int64_t to_ms) override;
  Result<std::vector<PeripheralInstance>> LoadPeripheralInstances(std::int64_t customer_id,
                                                                  std::int64_t from_ms) override;
  Result<std::vector<PeripheralInstance>> LoadEndpointPeripheralInstances(
      std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms) override;
  Result<std::int64_t> CountRawReports() override;
  Result<std::vector<EndpointInfo>> ListEndpoints(std::int64_t customer_id) override;
  Result<std::optional<EndpointInfo>> LoadEndpoint(std::int64_t customer_id,
                                                   std::int64_t endpoint_id) override;
  Result<std::map<std::int64_t, scoring::WindowRollup>> LoadEndpointWindows(
      std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) override;
  Result<std::map<std::int64_t, scoring::WindowRollup>> LoadEndpointDays(
      std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms,
      std::int64_t to_ms) override;
  Result<std::map<std::int64_t, scoring::WindowRollup>> LoadCustomerDays(
      std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) override;
  Result<std::map<std::int64_t, std::map<std::int64_t, RollupCell>>> LoadEndpointDayCells(
      std::int64_t customer_id, Metric metric, std::int64_t from_ms, std::int64_t to_ms) override;
  Result<std::vector<StreamInfo>> ListStreams() override;
  Result<std::vector<RollupRow>> LoadRollupRows() override;
  Status ForEachRawReport(const std::function<void(const RawReport&)>& fn) override;
  /// Quick: the schema is this collector's and every table answers. Full:
  /// also every raw row's checksum, every rollup histogram and each stream's
  /// watermark against its stored rows.
  Result<IntegrityReport> Check(bool full) override;

  // SignalStore
  Result<ImportResult> ImportSignals(const SignalBatch& batch, std::int64_t now_ms) override;
  Result<CustomerSignals> LoadSignals(std::int64_t customer_id) override;
  Status SetOverride(std::int64_t customer_id, const scoring::Override& o,
                     std::int64_t now_ms) override;
  Result<std::vector<std::optional<RiskEvent>>> RecordHealthBatch(
      std::span<const HealthRecord> records, std::int64_t now_ms) override;
  Result<std::vector<HealthSnapshot>> LoadHistory(std::int64_t customer_id,
                                                  std::int64_t from_day_ms) override;
  Result<std::vector<RiskEvent>> LoadRiskEvents(std::int64_t customer_id) override;
  Result<std::vector<ImportRecord>> ListImports(std::size_t limit) override;

  // ApiTokenStore
  Result<std::pair<ApiToken, std::string>> CreateApiToken(ApiRole role,
                                                          std::optional<std::int64_t> customer_id,
                                                          std::int64_t now_ms) override;
  Result<std::vector<ApiToken>> ListApiTokens() override;
  Status RevokeApiToken(std::int64_t token_id, std::int64_t now_ms) override;
  Result<ApiToken> AuthenticateApiToken(const std::string& token) override;

  // WebhookStore
  Result<std::size_t> EnqueueDeliveries(const std::vector<WebhookDelivery>& deliveries,
                                        std::int64_t now_ms) override;
  Result<std::vector<WebhookDelivery>> ClaimDeliveries(const std::string& webhook,
                                                       std::int64_t now_ms, std::int64_t lease_ms,
                                                       std::size_t limit) override;
  Status CompleteDelivery(std::int64_t id, std::int64_t now_ms) override;
  Status FailDelivery(std::int64_t id, const std::string& error, std::int64_t retry_at_ms,
                      bool abandon) override;
  Result<std::vector<WebhookDelivery>> ListDeliveries(const std::string& webhook) override;
  Result<std::size_t> PruneDeliveries(std::int64_t before_ms) override;

  std::int64_t collector_id() const { return collector_id_; }

 private:
  /// A customer's device instances since `from_ms`; only `endpoint_id`'s when set.
  Result<std::vector<PeripheralInstance>> ReadPeripheralInstances(
      std::int64_t customer_id, std::optional<std::int64_t> endpoint_id, std::int64_t from_ms);
  explicit PgStore(StoreOptions options);
  Status Migrate();
  Status Register(pg::Connection& db);
  Status Heartbeat(pg::Connection& db, std::int64_t now_ms);
  Status EnsurePartition(pg::Connection& db, std::int64_t received_at_ms);
  Result<Customer> EnsureCustomerTx(const std::string& name, std::int64_t now_ms);
  Result<StreamInfo> RegisterTx(std::int64_t customer_id, const deskpulse::v1::Hello& hello,
                                std::int64_t now_ms);
  /// Adds `acc` to the rollup tables (inside the caller's transaction).
  Status ApplyRollups(pg::Connection& db, const RollupAccumulator& acc);
  /// Flushes this collector's in-memory rollups (or, if they cannot be
  /// trusted, its pending records from the raw rows).
  Status FlushOwn(pg::Connection& db);
  /// Finishes up to `limit` pending records of dead collectors (with `own`,
  /// this collector's own up to id `own_upto`) from the raw rows; how many.
  Result<std::int64_t> FinishFromRaw(pg::Connection& db, bool own, std::int64_t limit,
                                     std::int64_t own_upto);
  Status RetentionOn(pg::Connection& db, std::int64_t now_ms);
  std::chrono::steady_clock::time_point MaintainOn(pg::Connection& db, std::int64_t now_ms);
  void RunMaintenance();
  void StopMaintenance();
  void CountFlush(const Status& s, std::chrono::steady_clock::time_point t0);

  StoreOptions options_;
  std::string name_;
  std::unique_ptr<pg::Connection> conn_;
  int schema_version_ = 0;
  std::atomic<std::int64_t> collector_id_{0};  // re-registered by maintenance if lost
  // Guards partitions_ and the in-memory rollups, shared by the writer
  // thread (commits) and the maintenance thread (flushes).
  mutable std::mutex pending_mu_;
  std::set<std::int64_t> partitions_;  // day numbers known to exist
  // In-memory rollups of this collector's committed batches, and their records.
  RollupAccumulator pending_;
  std::vector<std::int64_t> pending_customers_;
  std::vector<std::int64_t> pending_ids_;
  std::int64_t last_own_id_ = 0;  // the newest pending record this collector committed
  bool rollups_need_replay_ = false;
  // Reports of the flush under way, and reports left to a replay from the
  // raw rows: with pending_, what the rollups still lack (the backlog).
  std::uint64_t flushing_reports_ = 0;
  std::uint64_t replay_reports_ = 0;
  bool resync_ids_ = false;  // writer thread: a COMMIT's outcome is unknown
  // Maintenance (serving): its own connection and thread.
  std::unique_ptr<pg::Connection> maint_conn_;
  std::thread maint_thread_;
  std::mutex maint_mu_;
  std::condition_variable maint_cv_;
  bool maint_stopping_ = false;
  std::chrono::steady_clock::time_point next_round_{};
  // A failing flush fails at every round (a full disk): one line, then a count.
  WarningSummary flush_faults_;
  std::chrono::steady_clock::time_point next_retention_{};
  std::chrono::steady_clock::time_point next_heartbeat_{};
  mutable std::mutex mu_;  // guards stats_
  StoreStats stats_;
};

}  // namespace deskpulse::collector
