#pragma once

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "collector/store/sqlite/database.h"
#include "collector/store/store.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector {

/// The embedded store on SQLite (WAL): one collector per file.
///
/// The raw `reports` table is append-only in rowid order and has no secondary
/// index. Exactly-once is kept by a per-stream watermark (`streams.last_seq`)
/// read and advanced in the same transaction as the rows, as Kafka's
/// idempotent producer does. Rollups trail the raw table: they accumulate in
/// memory as batches commit, and each slice of endpoints is flushed with the
/// raw rowid it covers; rows past a slice's mark are replayed into it from
/// disk at open and after a failed commit. That needs rowids to grow in commit
/// order, so a serving store holds the file's writer lock (`<db>-writer.lock`):
/// a second collector on the same file is refused.
class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> Open(const StoreOptions& options);
  ~SqliteStore() override;

  std::string_view backend() const override { return "sqlite"; }
  const std::string& name() const override { return options_.db; }
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
  /// SQLite's quick_check (every page readable and well formed), or with
  /// `full` its integrity_check and the backend-independent checks.
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

  /// The connection, for SQLite-specific tests.
  Database* db() { return db_.get(); }

 private:
  /// A customer's device instances since `from_ms`; only `endpoint_id`'s when set.
  Result<std::vector<PeripheralInstance>> ReadPeripheralInstances(
      std::int64_t customer_id, std::optional<std::int64_t> endpoint_id, std::int64_t from_ms);
  explicit SqliteStore(StoreOptions options) : options_(std::move(options)) {}
  static Result<std::unique_ptr<SqliteStore>> OpenUnchecked(const StoreOptions& options);
  Status TakeWriterLock();
  Status Configure();
  Status Migrate();
  Status PrepareWriteStatements();
  Status ReplayUnrolled();
  void RunCheckpointer();
  /// One raw row as read back.
  struct RawRow {
    std::int64_t rowid = 0;
    std::int64_t customer_id = 0;
    std::int64_t endpoint_id = 0;
    std::int64_t stream_id = 0;
    std::int64_t seq = 0;
    std::int64_t received_at_ms = 0;
  };
  /// The one way raw rows are read back: rows in (after, through], at most
  /// `limit`, in rowid order; each body's checksum is checked and a damaged
  /// row is counted, logged with the row and skipped, never handed to `fn`.
  /// `last` is the last rowid seen, damaged or not.
  template <typename Fn>
  Status ScanRawRows(std::int64_t after, std::int64_t through, std::int64_t limit, Fn&& fn,
                     std::int64_t* last, std::vector<std::string>* damaged = nullptr);
  Result<StreamInfo> RegisterInTx(std::int64_t customer_id, const deskpulse::v1::Hello& hello,
                                  std::int64_t now_ms);
  Status CommitBatchesTx(std::span<BatchWrite> batches, std::int64_t now_ms);
  Status FlushRollupSlice(int slice);
  /// Writes one slice's rollups and moves its mark; false when it had nothing to write.
  Result<bool> WriteSlice(RollupAccumulator* acc, int slice);
  /// Whether anything committed is not rolled up yet.
  bool RollupsBehind() const;
  /// Publishes how many committed reports wait for their rollups.
  void NoteBacklog();
  std::int64_t OldestMark() const;
  Result<std::int64_t> ReadMetaInt(const std::string& key, std::int64_t fallback);
  void CountFlush(const Status& s, std::chrono::steady_clock::time_point t0);

  StoreOptions options_;
  std::unique_ptr<Database> db_;
  int writer_lock_fd_ = -1;
  int schema_version_ = 0;
  Statement insert_report_;
  Statement read_watermark_;
  Statement update_stream_;
  std::int64_t last_committed_rowid_ = 0;
  bool rollups_need_replay_ = false;
  std::array<std::int64_t, kRollupSlices> marks_{};  // rolled-up-through rowid per slice
  PendingRollups pending_;
  // Maintenance schedule (writer thread).
  std::chrono::steady_clock::time_point next_round_{};
  // A failing flush fails at every step (a full disk): one line, then a count.
  WarningSummary flush_faults_;
  int flush_cursor_ = -1;  // the next slice of this flush round; -1 between rounds
  std::chrono::steady_clock::time_point next_retention_{};
  // The checkpointer thread (serving only).
  std::thread checkpointer_;
  std::condition_variable checkpoint_cv_;
  bool stopping_ = false;
  mutable std::mutex mu_;  // guards stats_ and stopping_
  StoreStats stats_;
};

}  // namespace deskpulse::collector
