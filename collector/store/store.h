#pragma once

#include <cstdint>
#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/scoring/score.h"
#include "collector/store/rollup.h"
#include "collector/store/sqlite.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::collector {

struct StoreOptions {
  std::string path;
  bool read_only = false;
  /// Run a quick integrity check when opening (serve does), and refuse a
  /// damaged store unless `allow_damaged`.
  bool check_at_open = false;
  bool allow_damaged = false;
  int raw_retention_days = 14;
  int hourly_retention_days = 93;
  int daily_retention_days = 400;  // 13 months
};

struct Customer {
  std::int64_t id = 0;
  std::string name;
};

/// A registered (agent_id, epoch) stream, as the collector knows it after Hello.
struct StreamInfo {
  std::int64_t customer_id = 0;
  std::int64_t endpoint_id = 0;
  std::int64_t stream_id = 0;
  std::uint64_t last_acked_seq = 0;
};

/// A report accepted from the wire: its exact bytes and the decoded form.
struct IncomingReport {
  std::string bytes;
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

/// Counters of the store's own health, as a snapshot.
struct StoreHealth {
  /// Raw rows whose body failed its checksum when read back: left out of
  /// rollups and scores, and logged with the row.
  std::uint64_t damaged_rows = 0;
};

/// One batch to commit. acked_through is filled in by CommitBatches.
struct BatchWrite {
  std::int64_t stream_id = 0;
  std::vector<IncomingReport> reports;
  std::uint64_t acked_through = 0;
  std::size_t duplicates = 0;  // reports at or below the stream's watermark, skipped
};

/// The collector's durable store on SQLite (WAL).
///
/// The raw `reports` table is append-only in rowid order and has no secondary
/// index. Exactly-once is kept by a per-stream watermark (`streams.last_seq`)
/// committed in the same transaction as the rows, as Kafka's idempotent
/// producer does. Rollups trail the raw table: each slice of endpoints is
/// flushed with the raw rowid it covers, and rows past a slice's mark are
/// replayed into it at Open().
///
/// Not thread-safe: the ingest writer thread owns the read-write instance.
class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store();

  int schema_version() const { return schema_version_; }
  const std::string& path() const { return options_.path; }

  // ---- customers and credentials
  Result<Customer> EnsureCustomer(const std::string& name, std::int64_t now_ms);
  /// Creates a new enrollment token for `customer` (created if new); only its
  /// SHA-256 is stored.
  Result<std::string> CreateToken(const std::string& customer, std::int64_t now_ms);
  /// The customer a token belongs to; kUnauthenticated if unknown or revoked.
  Result<Customer> Authenticate(const std::string& token);
  Result<std::vector<Customer>> ListCustomers();

  // ---- write path
  Result<StreamInfo> RegisterStream(std::int64_t customer_id, const deskpulse::v1::Hello& hello,
                                    std::int64_t now_ms);
  /// Authenticates each Hello's credential and registers its stream, all in
  /// one transaction; one result per Hello, in order.
  std::vector<Result<StreamInfo>> AuthenticateAndRegister(
      std::span<const deskpulse::v1::Hello> hellos, std::int64_t now_ms);
  /// Commits every batch in one transaction. Reports at or below their stream's
  /// watermark are skipped as duplicates. The rollup contributions of the new
  /// rows are added to `pending`. On failure nothing durable changes, and the
  /// next FlushRollups rebuilds `pending` from the committed rows.
  Status CommitBatches(std::span<BatchWrite> batches, std::int64_t now_ms,
                       PendingRollups* pending);
  /// Writes one slice of `pending` into the rollup tables together with the
  /// raw rowid it covers, in one short transaction, then clears that slice.
  Status FlushRollupSlice(PendingRollups* pending, int slice);
  /// Every slice, one transaction each.
  Status FlushRollups(PendingRollups* pending);
  /// Deletes raw rows and rollups past their retention.
  Status ApplyRetention(std::int64_t now_ms);

  // ---- read path
  /// Rollup figures of one customer for days [from_ms, to_ms).
  Result<scoring::WindowRollup> LoadWindow(std::int64_t customer_id, std::int64_t from_ms,
                                           std::int64_t to_ms);
  /// A customer's device instances seen since `from_ms`, by endpoint.
  Result<std::vector<PeripheralInstance>> LoadPeripheralInstances(std::int64_t customer_id,
                                                                  std::int64_t from_ms);
  Result<std::int64_t> CountRawReports();

  // ---- integrity
  /// SQLite's quick_check (every page readable and well formed), or with
  /// `full` its integrity_check, every raw row's checksum, every rollup
  /// histogram and each stream's watermark against its stored rows.
  Result<IntegrityReport> Check(bool full);
  StoreHealth health() const { return health_; }

  Database* db() { return db_.get(); }

 private:
  explicit Store(StoreOptions options) : options_(std::move(options)) {}
  static Result<std::unique_ptr<Store>> OpenUnchecked(const StoreOptions& options);
  Status Configure();
  Status Migrate();
  Status PrepareWriteStatements();
  Status ReplayUnrolled();
  /// One raw row as read back.
  struct RawRow {
    std::int64_t rowid = 0;
    std::int64_t customer_id = 0;
    std::int64_t endpoint_id = 0;
    std::int64_t stream_id = 0;
    std::int64_t seq = 0;
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
  StreamInfo Adopt(StreamInfo info);
  Status CommitBatchesTx(std::span<BatchWrite> batches, std::int64_t now_ms,
                         PendingRollups* pending);
  Status WriteSlice(RollupAccumulator* acc, int slice);
  std::int64_t OldestMark() const;
  Result<std::int64_t> ReadMetaInt(const std::string& key, std::int64_t fallback);

  StoreOptions options_;
  std::unique_ptr<Database> db_;
  int schema_version_ = 0;
  Statement insert_report_;
  Statement update_stream_;
  std::unordered_map<std::int64_t, std::uint64_t> watermarks_;  // stream_id → last_seq
  std::unordered_map<std::int64_t, std::pair<std::int64_t, std::int64_t>>
      stream_owner_;  // stream_id → (customer, endpoint)
  std::int64_t last_committed_rowid_ = 0;
  bool rollups_need_replay_ = false;
  std::array<std::int64_t, kRollupSlices> marks_{};  // rolled-up-through rowid per slice
  StoreHealth health_;
};

/// Hex SHA-256 of a token, as stored.
std::string HashToken(const std::string& token);
/// A new random token: "dpt_" + 43 base64url characters (256 bits).
Result<std::string> NewToken();

}  // namespace deskpulse::collector
