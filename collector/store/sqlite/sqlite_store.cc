#include "collector/store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "collector/store/row_codec.h"
#include "collector/store/sqlite_migrations.h"
#include "deskpulse/common/crc32c.h"
#include "deskpulse/common/logging.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;

namespace {

// Versioned migrations (collector/store/sqlite/migrations/NNNN_*.sql,
// embedded at build time): append only, never edit one that has shipped.

// SQL function dp_crc32c(blob): the checksum the reports table keeps.
void Crc32cFn(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  const auto* p = static_cast<const char*>(sqlite3_value_blob(argv[0]));
  const auto n = static_cast<std::size_t>(sqlite3_value_bytes(argv[0]));
  sqlite3_result_int64(ctx, Crc32c(0, std::string_view(p ? p : "", n)));
}

// SQL function dp_hist_merge(a, b): the merge of two encoded histograms.
void HistMergeFn(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  auto blob = [](sqlite3_value* v) {
    const auto* p = static_cast<const char*>(sqlite3_value_blob(v));
    return std::string_view(p ? p : "", static_cast<std::size_t>(sqlite3_value_bytes(v)));
  };
  auto a = SparseHistogram::Decode(blob(argv[0]));
  auto b = SparseHistogram::Decode(blob(argv[1]));
  if (!a.ok() || !b.ok()) {
    sqlite3_result_error(ctx, "dp_hist_merge: corrupt histogram blob", -1);
    return;
  }
  a->Merge(*b);
  const std::string out = a->Encode();
  sqlite3_result_blob(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const StoreOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(options.db, ec)) {
    return Status(Code::kInvalidArgument, options.db + " is a directory, not a database file");
  }
  if (!options.create_if_missing && !std::filesystem::exists(options.db, ec)) {
    return NotFound("no store at " + options.db + NoStoreHint());
  }
  auto store = OpenUnchecked(options);
  if (store.ok()) return store;
  const Status& s = store.status();
  std::string why = s.message();
  if (why.find("file is not a database") != std::string::npos) {
    why = "not an SQLite database (" + why.substr(why.rfind(": ") + 2) + ")";
  }
  if (why.rfind(options.db, 0) == 0) return s;  // already names the file
  return Status(s.code(), options.db + ": " + why);
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::OpenUnchecked(const StoreOptions& options) {
  std::unique_ptr<SqliteStore> store(new SqliteStore(options));
  DP_ASSIGN_OR_RETURN(store->db_,
                      Database::Open(options.db, options.read_only, options.create_if_missing));
  DP_RETURN_IF_ERROR(store->Configure());
  if (options.read_only || !options.create_if_missing) {
    // Another program's database, or an empty file, is not made into a store.
    DP_ASSIGN_OR_RETURN(auto v, store->ReadMetaInt("schema_version", 0));
    if (v == 0) {
      return Status(Code::kNotFound,
                    options.db + " is not a DeskPulse store (no schema)" + NoStoreHint());
    }
    store->schema_version_ = static_cast<int>(v);
    if (options.read_only) return store;
  }
  if (options.serving) DP_RETURN_IF_ERROR(store->TakeWriterLock());
  if (options.check_at_open) {
    DP_ASSIGN_OR_RETURN(IntegrityReport check, store->Check(/*full=*/false));
    if (!check.ok()) {
      std::string found = check.problems.front();
      if (check.problems.size() > 1 || check.more_problems > 0) {
        found += fmt::format(" (and {} more)", check.problems.size() - 1 + check.more_problems);
      }
      if (!options.allow_damaged) {
        return DataLoss(options.db + " is damaged: " + found +
                        ". Nothing was written to it. Run `deskpulse-collector check --db " +
                        options.db +
                        "` for the full report, then restore the store from a backup; or start "
                        "with --allow-damaged to keep collecting into it (damaged rows are left "
                        "out of scores)");
      }
      spdlog::error("store {} is damaged: {}; serving anyway (--allow-damaged)", options.db, found);
    }
  }
  DP_RETURN_IF_ERROR(store->Migrate());
  DP_RETURN_IF_ERROR(store->PrepareWriteStatements());
  DP_RETURN_IF_ERROR(store->ReplayUnrolled());
  const auto now = std::chrono::steady_clock::now();
  store->next_round_ = now + options.rollup_flush_interval;
  store->next_retention_ = now;
  if (options.serving)
    store->checkpointer_ = std::thread([s = store.get()] { s->RunCheckpointer(); });
  return store;
}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  if (writer_lock_fd_ >= 0) ::close(writer_lock_fd_);
}

// Rollups accumulate in this process's memory against rowid marks, so only one
// process may write a file: the lock is held for the store's life and released
// by the kernel if the collector dies.
Status SqliteStore::TakeWriterLock() {
  const std::string lock_path = options_.db + "-writer.lock";
  writer_lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (writer_lock_fd_ < 0) {
    return Status(Code::kUnavailable, lock_path + ": " + std::strerror(errno));
  }
  if (::flock(writer_lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status(Code::kUnavailable,
                  options_.db + " is already served by another collector (it holds " + lock_path +
                      "); an SQLite store takes one collector, several share a PostgreSQL store");
  }
  return Status::Ok();
}

// PASSIVE checkpoints on a connection of their own copy committed WAL frames
// into the database without taking the write lock, so commits (and acks) do
// not wait for them.
void SqliteStore::RunCheckpointer() {
  auto db = Database::Open(options_.db, false);
  if (!db.ok()) {
    spdlog::warn("checkpointer: {}; SQLite's automatic checkpoints remain", db.status().message());
    return;
  }
  // data_version changes when another connection commits: while it stands
  // still after a complete checkpoint there is nothing to copy, and an idle
  // collector does no work.
  auto version = (*db)->Prepare("PRAGMA data_version");
  auto checkpoint = (*db)->Prepare("PRAGMA wal_checkpoint(PASSIVE)");
  if (!version.ok() || !checkpoint.ok()) {
    spdlog::warn("checkpointer: {}; SQLite's automatic checkpoints remain",
                 (version.ok() ? checkpoint.status() : version.status()).message());
    return;
  }
  std::optional<std::int64_t> done_at;  // data_version of the last complete checkpoint
  std::unique_lock lock(mu_);
  while (!stopping_) {
    checkpoint_cv_.wait_for(lock, options_.checkpoint_interval, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    auto v = version->Step();
    const std::optional<std::int64_t> now =
        v.ok() && *v ? std::optional<std::int64_t>(version->Int(0)) : std::nullopt;
    version->Reset();
    bool ran = false;
    Status s;
    if (!now || now != done_at) {
      // One row: busy, frames in the WAL, frames checkpointed.
      auto row = checkpoint->Step();
      s = row.status();
      if (s.ok() && *row) {
        ran = true;
        if (checkpoint->Int(0) == 0 && checkpoint->Int(1) == checkpoint->Int(2)) done_at = now;
      }
      checkpoint->Reset();
    }
    lock.lock();
    if (ran) stats_.checkpoints += 1;
    if (!s.ok()) spdlog::debug("checkpoint: {}", s.message());
  }
}

StoreStats SqliteStore::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status SqliteStore::Configure() {
  sqlite3_create_function_v2(db_->handle(), "dp_hist_merge", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                             nullptr, HistMergeFn, nullptr, nullptr, nullptr);
  sqlite3_create_function_v2(db_->handle(), "dp_crc32c", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                             nullptr, Crc32cFn, nullptr, nullptr, nullptr);
  if (options_.read_only) return db_->Exec("PRAGMA query_only=ON;");
  // FULL: an acknowledged commit survives power loss, not just a process crash.
  DP_RETURN_IF_ERROR(db_->Exec("PRAGMA journal_mode=WAL;"));
  DP_RETURN_IF_ERROR(db_->Exec("PRAGMA synchronous=FULL;"));
  DP_RETURN_IF_ERROR(db_->Exec("PRAGMA cache_size=-65536;"));
  // The writer's checkpointer thread keeps the WAL short with PASSIVE
  // checkpoints off the commit path; this is only the backstop (256 MiB).
  DP_RETURN_IF_ERROR(db_->Exec("PRAGMA wal_autocheckpoint=65536;"));
  return Status::Ok();
}

Result<std::int64_t> SqliteStore::ReadMetaInt(const std::string& key, std::int64_t fallback) {
  auto has = db_->Prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'");
  if (!has.ok()) return has.status();
  DP_ASSIGN_OR_RETURN(bool exists, has->Step());
  if (!exists) return fallback;
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT value FROM meta WHERE key=?"));
  st.Bind(1, key);
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : fallback;
}

Status SqliteStore::Migrate() {
  DP_ASSIGN_OR_RETURN(auto current, ReadMetaInt("schema_version", 0));
  const int kLatest = static_cast<int>(kSqliteMigrations.size());
  if (current > kLatest) {
    return Status(Code::kUnavailable, options_.db + " has schema v" + std::to_string(current) +
                                          ", newer than this collector's v" +
                                          std::to_string(kLatest));
  }
  for (int v = static_cast<int>(current) + 1; v <= kLatest; ++v) {
    DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
    DP_RETURN_IF_ERROR(db_->Exec(kSqliteMigrations[v - 1]));
    DP_ASSIGN_OR_RETURN(auto st,
                        db_->Prepare("INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                                     "ON CONFLICT(key) DO UPDATE SET value=excluded.value"));
    DP_RETURN_IF_ERROR(st.Bind(1, std::int64_t{v}).Run());
    DP_RETURN_IF_ERROR(tx.Commit());
    spdlog::info("store {}: applied schema migration v{}", options_.db, v);
  }
  schema_version_ = kLatest;
  return Status::Ok();
}

Status SqliteStore::PrepareWriteStatements() {
  DP_ASSIGN_OR_RETURN(insert_report_,
                      db_->Prepare("INSERT INTO reports(customer_id, endpoint_id, stream_id, seq, "
                                   "observed_at_ms, received_at_ms, body, body_crc) "
                                   "VALUES(?,?,?,?,?,?,?,?)"));
  DP_ASSIGN_OR_RETURN(read_watermark_,
                      db_->Prepare("SELECT last_seq FROM streams WHERE stream_id=?"));
  DP_ASSIGN_OR_RETURN(update_stream_,
                      db_->Prepare("UPDATE streams SET last_seq=? WHERE stream_id=?"));
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT coalesce(max(rowid), 0) FROM reports"));
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  last_committed_rowid_ = row ? st.Int(0) : 0;
  DP_ASSIGN_OR_RETURN(auto marks, db_->Prepare("SELECT slice, through_rowid FROM rollup_marks"));
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool m, marks.Step());
    if (!m) break;
    const std::int64_t slice = marks.Int(0);
    if (slice >= 0 && slice < kRollupSlices) marks_[static_cast<std::size_t>(slice)] = marks.Int(1);
  }
  return Status::Ok();
}

std::int64_t SqliteStore::OldestMark() const {
  std::int64_t oldest = marks_[0];
  for (std::int64_t m : marks_) oldest = std::min(oldest, m);
  return oldest;
}

template <typename Fn>
Status SqliteStore::ScanRawRows(std::int64_t after, std::int64_t through, std::int64_t limit,
                                Fn&& fn, std::int64_t* last, std::vector<std::string>* damaged) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT rowid, customer_id, endpoint_id, stream_id, "
                                            "seq, body, body_crc, received_at_ms FROM reports "
                                            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid "
                                            "LIMIT ?"));
  st.Bind(1, after).Bind(2, through).Bind(3, limit);
  *last = after;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    RawRow r{st.Int(0), st.Int(1), st.Int(2), st.Int(3), st.Int(4), st.Int(7)};
    *last = r.rowid;
    const std::int64_t crc = st.IsNull(6) ? 0 : st.Int(6);
    v1::Report report;
    const std::string why = DecodeRawBody(st.Blob(5), st.IsNull(6) ? nullptr : &crc, &report);
    if (why.empty()) {
      fn(r, report);
      continue;
    }
    std::uint64_t damaged_rows = 0;
    {
      std::lock_guard lock(mu_);
      damaged_rows = ++stats_.damaged_rows;
    }
    const std::string line =
        DescribeDamagedRow(r.rowid, r.customer_id, r.endpoint_id, r.stream_id, r.seq, why);
    if (damaged != nullptr) damaged->push_back(line);
    constexpr std::uint64_t kLoggedInFull = 20;
    if (damaged_rows <= kLoggedInFull) {
      spdlog::error("store {}: {}; left out of rollups and scores", options_.db, line);
    }
  }
  return Status::Ok();
}

Status SqliteStore::ReplayUnrolled() {
  std::int64_t through = OldestMark();
  if (through >= last_committed_rowid_) return Status::Ok();
  const std::int64_t end = last_committed_rowid_;
  std::int64_t replayed = 0;
  const std::uint64_t damaged_before = stats().damaged_rows;
  while (through < end) {
    PendingRollups acc;
    std::int64_t last = through;
    DP_RETURN_IF_ERROR(ScanRawRows(
        through, end, 20000,
        [&](const RawRow& r, const v1::Report& report) {
          const int slice = PendingRollups::SliceOf(r.endpoint_id);
          if (r.rowid <= marks_[static_cast<std::size_t>(slice)]) return;  // already rolled up
          acc.AddReport(r.customer_id, r.endpoint_id, report);
          ++replayed;
        },
        &last));
    if (last == through) break;
    last_committed_rowid_ = last;
    for (int i = 0; i < kRollupSlices; ++i) {
      DP_RETURN_IF_ERROR(WriteSlice(&acc.slice(i), i).status());
    }
    through = last;
  }
  last_committed_rowid_ = end;
  const std::uint64_t damaged = stats().damaged_rows - damaged_before;
  {
    std::lock_guard lock(mu_);
    stats_.reports_replayed += static_cast<std::uint64_t>(replayed);
  }
  if (replayed > 0 || damaged > 0) {
    spdlog::info("store {}: rolled up {} not yet in the rollups{}", options_.db,
                 Counted(replayed, "report"),
                 damaged ? fmt::format(" ({} left out; `deskpulse-collector check` lists them)",
                                       Counted(static_cast<std::int64_t>(damaged), "damaged row"))
                         : "");
  }
  return Status::Ok();
}

Result<IntegrityReport> SqliteStore::Check(bool full) {
  IntegrityReport report;
  report.full = full;
  constexpr std::size_t kListed = 50;
  auto add = [&](std::string line) {
    if (report.problems.size() < kListed) {
      report.problems.push_back(std::move(line));
    } else {
      ++report.more_problems;
    }
  };
  // SQLite's own check: page structure (and with integrity_check, indexes).
  DP_ASSIGN_OR_RETURN(
      auto pragma, db_->Prepare(full ? "PRAGMA integrity_check(100)" : "PRAGMA quick_check(100)"));
  for (;;) {
    auto row = pragma.Step();
    if (!row.ok()) {
      add("SQLite: " + row.status().message());
      break;
    }
    if (!*row) break;
    const std::string_view msg = pragma.Text(0);
    if (msg != "ok") add("SQLite: " + std::string(msg));
  }
  if (!full || !report.ok()) return report;  // a broken b-tree is not worth walking

  // Every raw row's checksum, and each stream's highest stored seq.
  std::unordered_map<std::int64_t, std::int64_t> top_seq;
  std::vector<std::string> damaged;
  std::int64_t after = 0;
  for (;;) {
    std::int64_t last = after;
    DP_RETURN_IF_ERROR(ScanRawRows(
        after, INT64_MAX, 50000,
        [&](const RawRow& r, const v1::Report&) {
          ++report.rows_checked;
          auto& top = top_seq[r.stream_id];
          top = std::max(top, r.seq);
        },
        &last, &damaged));
    if (last == after) break;
    after = last;
  }
  report.damaged_rows = static_cast<std::int64_t>(damaged.size());
  report.rows_checked += report.damaged_rows;
  for (auto& line : damaged) add(std::move(line));

  DP_ASSIGN_OR_RETURN(auto streams, db_->Prepare("SELECT stream_id, last_seq FROM streams"));
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, streams.Step());
    if (!row) break;
    const auto it = top_seq.find(streams.Int(0));
    if (it != top_seq.end() && it->second > streams.Int(1)) {
      add(
          fmt::format("stream {}: its watermark is seq {} but seq {} is stored (a resend "
                      "would be stored twice)",
                      streams.Int(0), streams.Int(1), it->second));
    }
  }
  DP_ASSIGN_OR_RETURN(auto hists, db_->Prepare("SELECT grain, customer_id, endpoint_id, "
                                               "bucket_start_ms, metric, hist FROM rollups WHERE "
                                               "hist IS NOT NULL"));
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, hists.Step());
    if (!row) break;
    if (!SparseHistogram::Decode(hists.Blob(5)).ok()) {
      add(
          fmt::format("rollup (grain {}, customer {}, endpoint {}, bucket {}, metric {}): its "
                      "histogram does not decode",
                      hists.Int(0), hists.Int(1), hists.Int(2), hists.Int(3), hists.Int(4)));
    }
  }
  return report;
}

Result<Customer> SqliteStore::EnsureCustomer(const std::string& name, std::int64_t now_ms) {
  if (name.empty() || name.size() > 200) {
    return InvalidArgument("customer name must be 1..200 characters");
  }
  DP_ASSIGN_OR_RETURN(auto ins, db_->Prepare("INSERT INTO customers(name, created_ms) VALUES(?,?) "
                                             "ON CONFLICT(name) DO NOTHING"));
  DP_RETURN_IF_ERROR(ins.Bind(1, name).Bind(2, now_ms).Run());
  DP_ASSIGN_OR_RETURN(auto sel, db_->Prepare("SELECT customer_id FROM customers WHERE name=?"));
  sel.Bind(1, name);
  DP_ASSIGN_OR_RETURN(bool row, sel.Step());
  if (!row) return Internal("customer vanished after insert");
  return Customer{sel.Int(0), name};
}

Result<std::string> SqliteStore::CreateToken(const std::string& customer, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(Customer c, EnsureCustomer(customer, now_ms));
  DP_ASSIGN_OR_RETURN(std::string token, NewToken());
  DP_ASSIGN_OR_RETURN(auto st,
                      db_->Prepare("INSERT INTO tokens(token_hash, customer_id, created_ms) "
                                   "VALUES(?,?,?)"));
  DP_RETURN_IF_ERROR(st.Bind(1, HashToken(token)).Bind(2, c.id).Bind(3, now_ms).Run());
  DP_RETURN_IF_ERROR(tx.Commit());
  return token;
}

Result<Customer> SqliteStore::Authenticate(const std::string& token) {
  DP_ASSIGN_OR_RETURN(auto st,
                      db_->Prepare("SELECT c.customer_id, c.name FROM tokens t JOIN customers c "
                                   "USING(customer_id) WHERE t.token_hash=? AND t.revoked_ms IS "
                                   "NULL"));
  st.Bind(1, HashToken(token));
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kUnauthenticated, "unknown or revoked enrollment token");
  return Customer{st.Int(0), std::string(st.Text(1))};
}

Result<std::vector<Customer>> SqliteStore::ListCustomers() {
  DP_ASSIGN_OR_RETURN(auto st,
                      db_->Prepare("SELECT customer_id, name FROM customers ORDER BY name"));
  std::vector<Customer> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Int(0), std::string(st.Text(1))});
  }
  return out;
}

Result<StreamInfo> SqliteStore::RegisterInTx(std::int64_t customer_id, const v1::Hello& hello,
                                             std::int64_t now_ms) {
  const auto& h = hello.host();
  DP_ASSIGN_OR_RETURN(
      auto up,
      db_->Prepare("INSERT INTO endpoints(customer_id, agent_id, hostname, os, kernel, "
                   "agent_version, role, site, pool, first_seen_ms, last_connect_ms) "
                   "VALUES(?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(customer_id, agent_id) DO UPDATE SET "
                   "hostname=excluded.hostname, os=excluded.os, kernel=excluded.kernel, "
                   "agent_version=excluded.agent_version, role=excluded.role, site=excluded.site, "
                   "pool=excluded.pool, last_connect_ms=excluded.last_connect_ms"));
  DP_RETURN_IF_ERROR(up.Bind(1, customer_id)
                         .Bind(2, hello.agent_id())
                         .Bind(3, h.hostname())
                         .Bind(4, h.os())
                         .Bind(5, h.kernel())
                         .Bind(6, h.agent_version())
                         .Bind(7, std::int64_t{h.role()})
                         .Bind(8, h.site())
                         .Bind(9, h.pool())
                         .Bind(10, now_ms)
                         .Bind(11, now_ms)
                         .Run());
  DP_ASSIGN_OR_RETURN(auto sel, db_->Prepare("SELECT endpoint_id FROM endpoints WHERE "
                                             "customer_id=? AND agent_id=?"));
  sel.Bind(1, customer_id).Bind(2, hello.agent_id());
  DP_ASSIGN_OR_RETURN(bool found, sel.Step());
  if (!found) return Internal("endpoint vanished after upsert");
  const std::int64_t endpoint_id = sel.Int(0);

  // SQLite integers are signed; epochs above 2^63 are refused upstream.
  const auto epoch = static_cast<std::int64_t>(hello.epoch());
  DP_ASSIGN_OR_RETURN(auto ins, db_->Prepare("INSERT INTO streams(endpoint_id, epoch) VALUES(?,?) "
                                             "ON CONFLICT(endpoint_id, epoch) DO NOTHING"));
  DP_RETURN_IF_ERROR(ins.Bind(1, endpoint_id).Bind(2, epoch).Run());
  DP_ASSIGN_OR_RETURN(auto ss, db_->Prepare("SELECT stream_id, last_seq FROM streams WHERE "
                                            "endpoint_id=? AND epoch=?"));
  ss.Bind(1, endpoint_id).Bind(2, epoch);
  DP_ASSIGN_OR_RETURN(bool srow, ss.Step());
  if (!srow) return Internal("stream vanished after insert");
  return StreamInfo{customer_id, endpoint_id, ss.Int(0), static_cast<std::uint64_t>(ss.Int(1))};
}

std::vector<Result<StreamInfo>> SqliteStore::AuthenticateAndRegister(
    std::span<const v1::Hello> hellos, std::int64_t now_ms) {
  // One transaction for all: after a collector restart every agent says Hello
  // at once, and one fsync per Hello would hold up every batch behind them.
  std::vector<Result<StreamInfo>> out;
  out.reserve(hellos.size());
  auto tx = Transaction::Begin(db_.get());
  if (!tx.ok()) {
    for (std::size_t i = 0; i < hellos.size(); ++i) out.emplace_back(tx.status());
    return out;
  }
  for (const auto& hello : hellos) {
    auto customer = Authenticate(hello.credential());
    if (!customer.ok()) {
      out.emplace_back(customer.status());
      continue;
    }
    out.push_back(RegisterInTx(customer->id, hello, now_ms));
  }
  if (Status s = tx->Commit(); !s.ok()) {
    for (auto& r : out) r = s;
  }
  return out;
}

Status SqliteStore::CommitBatches(std::span<BatchWrite> batches, std::int64_t now_ms) {
  // Rollup contributions go straight into `pending_`; if the transaction does
  // not commit, they are discarded and rebuilt from the committed raw rows
  // before the next flush (the same path as recovery after a crash).
  Status s = CommitBatchesTx(batches, now_ms);
  if (!s.ok()) rollups_need_replay_ = true;
  NoteBacklog();
  return s;
}

Status SqliteStore::CommitBatchesTx(std::span<BatchWrite> batches, std::int64_t now_ms) {
  std::int64_t inserted = 0;
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  // BEGIN IMMEDIATE holds the write lock: each watermark read here is the
  // latest, and the update below lands with the rows or not at all.
  std::unordered_map<std::int64_t, std::uint64_t> marks;  // stream → watermark in this tx
  for (auto& b : batches) {
    const StreamInfo& stream = b.stream;
    auto [mit, first] = marks.try_emplace(stream.stream_id, 0);
    if (first) {
      read_watermark_.Bind(1, stream.stream_id);
      DP_ASSIGN_OR_RETURN(bool row, read_watermark_.Step());
      if (!row) {
        read_watermark_.Reset();
        return Internal(
            fmt::format("batch for stream {}, which is not registered", stream.stream_id));
      }
      mit->second = static_cast<std::uint64_t>(read_watermark_.Int(0));
      read_watermark_.Reset();
    }
    std::uint64_t mark = mit->second;
    b.duplicates = 0;
    for (const auto& in : b.reports) {
      const std::uint64_t seq = in.report.seq();
      if (seq <= mark) {
        ++b.duplicates;
        continue;
      }
      insert_report_.Bind(1, stream.customer_id)
          .Bind(2, stream.endpoint_id)
          .Bind(3, stream.stream_id)
          .Bind(4, static_cast<std::int64_t>(seq))
          .Bind(5, std::int64_t{in.report.observed_at_unix_ms()})
          .Bind(6, now_ms)
          .BindBlob(7, in.bytes)
          .Bind(8, std::int64_t{Crc32c(0, in.bytes)});
      DP_RETURN_IF_ERROR(insert_report_.Run());
      pending_.AddReport(stream.customer_id, stream.endpoint_id, in.report, in.bytes);
      mark = seq;
      ++inserted;
    }
    if (mark != mit->second) {
      update_stream_.Bind(1, static_cast<std::int64_t>(mark)).Bind(2, stream.stream_id);
      DP_RETURN_IF_ERROR(update_stream_.Run());
    }
    mit->second = mark;
    b.acked_through = mark;
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  if (inserted > 0) last_committed_rowid_ = db_->LastInsertRowid();
  return Status::Ok();
}

void SqliteStore::CountFlush(const Status& s, std::chrono::steady_clock::time_point t0) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::lock_guard lock(mu_);
  if (s.ok()) {
    stats_.rollup_flushes += 1;
    stats_.flush_us.AddValue(static_cast<std::uint64_t>(us));
  } else {
    stats_.rollup_flush_failures += 1;
  }
}

Status SqliteStore::FlushRollupSlice(int slice) {
  const auto t0 = std::chrono::steady_clock::now();
  Status s;
  bool wrote = false;
  if (rollups_need_replay_) {
    // `pending_` may hold rows a failed commit rolled back: rebuild from disk.
    pending_.Clear();
    rollups_need_replay_ = false;
    s = ReplayUnrolled();
    if (!s.ok()) rollups_need_replay_ = true;
    wrote = true;
  } else {
    auto w = WriteSlice(&pending_.slice(slice), slice);
    s = w.status();
    wrote = w.ok() && *w;
  }
  // Counted when a transaction ran: an idle collector's counters stand still.
  if (wrote || !s.ok()) CountFlush(s, t0);
  NoteBacklog();
  return s;
}

bool SqliteStore::RollupsBehind() const {
  return rollups_need_replay_ || OldestMark() < last_committed_rowid_;
}

void SqliteStore::NoteBacklog() {
  const auto behind = rollups_need_replay_
                          ? static_cast<std::uint64_t>(last_committed_rowid_ - OldestMark())
                          : static_cast<std::uint64_t>(pending_.reports());
  std::lock_guard lock(mu_);
  stats_.rollup_backlog_reports = behind;
}

Status SqliteStore::FlushRollups(std::chrono::steady_clock::time_point deadline) {
  // Slice by slice until the deadline; the rows past a slice's mark are
  // rolled up from the stored rows at the next open.
  for (int i = 0; i < kRollupSlices && RollupsBehind(); ++i) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(Code::kDeadlineExceeded,
                    fmt::format("the rollups of {} reports are left to the next start",
                                stats().rollup_backlog_reports));
    }
    DP_RETURN_IF_ERROR(FlushRollupSlice(i));
  }
  return Status::Ok();
}

std::chrono::steady_clock::time_point SqliteStore::Maintain(std::int64_t now_ms) {
  // Rollups: one slice per step, so a commit waits at most one short transaction.
  // A round starts only when something was committed since the last one.
  const auto now = std::chrono::steady_clock::now();
  if (flush_cursor_ < 0 && now >= next_round_) {
    if (RollupsBehind()) {
      flush_cursor_ = 0;
    } else {
      next_round_ = now + options_.rollup_flush_interval;
    }
  }
  if (flush_cursor_ >= 0) {
    if (Status s = FlushRollupSlice(flush_cursor_); !s.ok()) {
      // The raw rows are committed; the rollups catch up from them later or at start.
      if (flush_faults_.Note("rollup flushes failed (will retry)", s.message(), now)) {
        spdlog::error("rollup flush failed (will retry): {}", s.ToString());
      }
    }
    for (const auto& line : flush_faults_.Due(now)) spdlog::error("store: {}", line.Text());
    flush_cursor_ = flush_cursor_ + 1 >= kRollupSlices ? -1 : flush_cursor_ + 1;
    if (flush_cursor_ < 0)
      next_round_ = std::chrono::steady_clock::now() + options_.rollup_flush_interval;
  }
  if (now >= next_retention_) {
    if (Status s = ApplyRetention(now_ms); !s.ok()) {
      spdlog::warn("retention pass failed: {}", s.ToString());
    }
    next_retention_ = now + options_.retention_interval;
  }
  return flush_cursor_ >= 0 ? now : std::min(next_round_, next_retention_);
}

Result<bool> SqliteStore::WriteSlice(RollupAccumulator* pending, int slice) {
  auto& mark_value = marks_[static_cast<std::size_t>(slice)];
  if (pending->empty() && mark_value >= last_committed_rowid_) return false;
  const auto expanded = pending->Expand();
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(
      auto up, db_->Prepare("INSERT INTO rollups(grain, customer_id, endpoint_id, bucket_start_ms, "
                            "metric, count, sum, hist) VALUES(?,?,?,?,?,?,?,?) "
                            "ON CONFLICT DO UPDATE SET count=count+excluded.count, "
                            "sum=sum+excluded.sum, hist=dp_hist_merge(hist, excluded.hist)"));
  for (const RollupRow& r : expanded) {
    up.Bind(1, std::int64_t{static_cast<int>(r.grain)})
        .Bind(2, r.customer_id)
        .Bind(3, r.endpoint_id)
        .Bind(4, r.bucket_start_ms)
        .Bind(5, std::int64_t{static_cast<int>(r.metric)})
        .Bind(6, r.cell.count)
        .Bind(7, r.cell.sum);
    if (r.cell.hist.empty()) {
      up.BindNull(8);
    } else {
      up.BindBlob(8, r.cell.hist.Encode());
    }
    DP_RETURN_IF_ERROR(up.Run());
  }

  DP_ASSIGN_OR_RETURN(
      auto pi,
      db_->Prepare(
          "INSERT INTO peripheral_instances(customer_id, endpoint_id, device_key, bus, vendor_id, "
          "product_id, device_class, interface_classes, name, drivers, redirected, ieee1284_id, "
          "last_state, last_reason, first_seen_ms, last_seen_ms, last_fail_ms, observations, "
          "fail_observations, reconnects, catalog) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
          "?) "
          "ON CONFLICT DO UPDATE SET "
          "bus=iif(excluded.last_seen_ms>=last_seen_ms, excluded.bus, bus), "
          "device_class=iif(excluded.last_seen_ms>=last_seen_ms, excluded.device_class, "
          "device_class), "
          "interface_classes=iif(excluded.last_seen_ms>=last_seen_ms, excluded.interface_classes, "
          "interface_classes), "
          "name=iif(excluded.last_seen_ms>=last_seen_ms, excluded.name, name), "
          "drivers=iif(excluded.last_seen_ms>=last_seen_ms, excluded.drivers, drivers), "
          "redirected=iif(excluded.last_seen_ms>=last_seen_ms, excluded.redirected, redirected), "
          "ieee1284_id=iif(excluded.last_seen_ms>=last_seen_ms, excluded.ieee1284_id, "
          "ieee1284_id), "
          "last_state=iif(excluded.last_seen_ms>=last_seen_ms, excluded.last_state, last_state), "
          "last_reason=iif(excluded.last_seen_ms>=last_seen_ms, excluded.last_reason, "
          "last_reason), "
          "catalog=iif(excluded.last_seen_ms>=last_seen_ms, excluded.catalog, catalog), "
          "first_seen_ms=min(first_seen_ms, excluded.first_seen_ms), "
          "last_seen_ms=max(last_seen_ms, excluded.last_seen_ms), "
          "last_fail_ms=max(last_fail_ms, excluded.last_fail_ms), "
          "observations=observations+excluded.observations, "
          "fail_observations=fail_observations+excluded.fail_observations, "
          "reconnects=reconnects+excluded.reconnects"));
  DP_ASSIGN_OR_RETURN(auto pr, db_->Prepare("UPDATE peripheral_instances SET "
                                            "reconnects=reconnects+? WHERE customer_id=? AND "
                                            "endpoint_id=? AND device_key=?"));
  for (const auto& [key, inst] : pending->instances()) {
    if (inst.observations == 0) {  // a reconnect event only: count it on a known device
      DP_RETURN_IF_ERROR(pr.Bind(1, inst.reconnects)
                             .Bind(2, inst.customer_id)
                             .Bind(3, inst.endpoint_id)
                             .Bind(4, inst.device_key)
                             .Run());
      continue;
    }
    const auto& s = inst.last;
    pi.Bind(1, inst.customer_id)
        .Bind(2, inst.endpoint_id)
        .Bind(3, inst.device_key)
        .Bind(4, std::int64_t{s.bus()})
        .Bind(5, std::int64_t{s.vendor_id()})
        .Bind(6, std::int64_t{s.product_id()})
        .Bind(7, std::int64_t{s.device_class()})
        .Bind(8, JoinInts(s.interface_classes()))
        .Bind(9, s.name())
        .Bind(10, JoinStrings(s.drivers()))
        .Bind(11, std::int64_t{s.redirected()});
    if (s.has_ieee1284_id()) {
      pi.Bind(12, s.ieee1284_id());
    } else {
      pi.BindNull(12);
    }
    pi.Bind(13, std::int64_t{s.state()})
        .Bind(14, s.reason())
        .Bind(15, inst.first_seen_ms)
        .Bind(16, inst.last_seen_ms)
        .Bind(17, inst.last_fail_ms)
        .Bind(18, inst.observations)
        .Bind(19, inst.fail_observations)
        .Bind(20, inst.reconnects);
    if (s.has_catalog()) {
      pi.BindBlob(21, s.catalog().SerializeAsString());
    } else {
      pi.BindNull(21);
    }
    DP_RETURN_IF_ERROR(pi.Run());
  }

  DP_ASSIGN_OR_RETURN(auto seen,
                      db_->Prepare("UPDATE endpoints SET last_report=iif(?1 >= last_seen_ms, ?2, "
                                   "last_report), last_seen_ms=max(last_seen_ms, ?1) WHERE "
                                   "endpoint_id=?3"));
  for (const auto& [endpoint, t] : pending->endpoints_seen()) {
    DP_RETURN_IF_ERROR(seen.Bind(1, t.last_ms).BindBlob(2, t.last_report).Bind(3, endpoint).Run());
  }
  // Every row of this slice up to last_committed_rowid_ is in `pending` or
  // was flushed before, so the slice's mark moves there.
  const std::int64_t new_mark = std::max(mark_value, last_committed_rowid_);
  DP_ASSIGN_OR_RETURN(auto mark, db_->Prepare("INSERT INTO rollup_marks(slice, through_rowid) "
                                              "VALUES(?, ?) ON CONFLICT(slice) DO UPDATE SET "
                                              "through_rowid=excluded.through_rowid"));
  DP_RETURN_IF_ERROR(mark.Bind(1, std::int64_t{slice}).Bind(2, new_mark).Run());
  DP_RETURN_IF_ERROR(tx.Commit());
  mark_value = new_mark;
  pending->Clear();
  return true;
}

Status SqliteStore::ApplyRetention(std::int64_t now_ms) {
  const std::int64_t through = OldestMark();
  const std::int64_t raw_cutoff = now_ms - options_.raw_retention_days * kDayMs;
  // Raw rows are in arrival order, so the first row to keep is found by
  // binary search on rowid rather than by an index on received_at_ms.
  DP_ASSIGN_OR_RETURN(auto probe, db_->Prepare("SELECT rowid, received_at_ms FROM reports WHERE "
                                               "rowid >= ? ORDER BY rowid LIMIT 1"));
  std::int64_t lo = 0;
  std::int64_t hi = through + 1;  // never delete what rollups have not covered
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    probe.Bind(1, mid);
    DP_ASSIGN_OR_RETURN(bool row, probe.Step());
    const bool old = row && probe.Int(1) < raw_cutoff && probe.Int(0) <= through;
    probe.Reset();
    if (old) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  {
    std::lock_guard lock(mu_);
    stats_.retention_passes += 1;
  }
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(auto del, db_->Prepare("DELETE FROM reports WHERE rowid < ?"));
  DP_RETURN_IF_ERROR(del.Bind(1, lo).Run());
  DP_ASSIGN_OR_RETURN(auto dr, db_->Prepare("DELETE FROM rollups WHERE grain=? AND "
                                            "bucket_start_ms < ?"));
  DP_RETURN_IF_ERROR(
      dr.Bind(1, std::int64_t{1}).Bind(2, now_ms - options_.hourly_retention_days * kDayMs).Run());
  DP_RETURN_IF_ERROR(
      dr.Bind(1, std::int64_t{2}).Bind(2, now_ms - options_.daily_retention_days * kDayMs).Run());
  return tx.Commit();
}

Result<scoring::WindowRollup> SqliteStore::LoadWindow(std::int64_t customer_id,
                                                      std::int64_t from_ms, std::int64_t to_ms) {
  scoring::WindowRollup w;
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT metric, count, sum, hist FROM rollups WHERE "
                                            "grain=2 AND customer_id=? AND endpoint_id=0 AND "
                                            "bucket_start_ms >= ? AND bucket_start_ms < ?"));
  st.Bind(1, customer_id).Bind(2, from_ms).Bind(3, to_ms);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    const auto metric = static_cast<Metric>(st.Int(0));
    const std::int64_t count = st.Int(1);
    const double sum = st.Double(2);
    SparseHistogram hist;
    if (!st.IsNull(3)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(st.Blob(3)));
    }
    AddToWindow(metric, count, sum, hist, &w);
  }
  DP_ASSIGN_OR_RETURN(auto ep, db_->Prepare("SELECT count(*) FROM endpoints WHERE customer_id=? "
                                            "AND last_seen_ms >= ? AND first_seen_ms < ?"));
  ep.Bind(1, customer_id).Bind(2, from_ms).Bind(3, to_ms);
  DP_ASSIGN_OR_RETURN(bool erow, ep.Step());
  if (erow) w.endpoints = ep.Int(0);
  DP_ASSIGN_OR_RETURN(
      auto pi, db_->Prepare("SELECT coalesce(sum(last_fail_ms < ?), 0), "
                            "coalesce(sum(last_fail_ms >= ?), 0) FROM peripheral_instances "
                            "WHERE customer_id=? AND last_seen_ms >= ? AND observations > 0"));
  pi.Bind(1, from_ms).Bind(2, from_ms).Bind(3, customer_id).Bind(4, from_ms);
  DP_ASSIGN_OR_RETURN(bool prow, pi.Step());
  if (prow) {
    w.peripherals_working = pi.Int(0);
    w.peripherals_failed = pi.Int(1);
  }
  return w;
}

Result<std::map<std::int64_t, scoring::WindowRollup>> SqliteStore::LoadWindows(std::int64_t from_ms,
                                                                               std::int64_t to_ms) {
  std::map<std::int64_t, scoring::WindowRollup> out;
  // Customer by customer through the rollups' key, never over endpoint rows
  // (CROSS JOIN: SQLite keeps the customers as the outer loop).
  DP_ASSIGN_OR_RETURN(auto st,
                      db_->Prepare("SELECT r.customer_id, r.metric, r.count, r.sum, r.hist FROM "
                                   "customers c CROSS JOIN rollups r WHERE r.grain=2 AND "
                                   "r.customer_id=c.customer_id AND r.endpoint_id=0 AND "
                                   "r.bucket_start_ms >= ? AND r.bucket_start_ms < ?"));
  st.Bind(1, from_ms).Bind(2, to_ms);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    SparseHistogram hist;
    if (!st.IsNull(4)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(st.Blob(4)));
    }
    AddToWindow(static_cast<Metric>(st.Int(1)), st.Int(2), st.Double(3), hist, &out[st.Int(0)]);
  }
  DP_ASSIGN_OR_RETURN(auto ep, db_->Prepare("SELECT customer_id, count(*) FROM endpoints WHERE "
                                            "last_seen_ms >= ? AND first_seen_ms < ? GROUP BY "
                                            "customer_id"));
  ep.Bind(1, from_ms).Bind(2, to_ms);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, ep.Step());
    if (!row) break;
    out[ep.Int(0)].endpoints = ep.Int(1);
  }
  DP_ASSIGN_OR_RETURN(
      auto pi, db_->Prepare("SELECT customer_id, sum(last_fail_ms < ?), sum(last_fail_ms >= ?) "
                            "FROM peripheral_instances WHERE last_seen_ms >= ? AND "
                            "observations > 0 GROUP BY customer_id"));
  pi.Bind(1, from_ms).Bind(2, from_ms).Bind(3, from_ms);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, pi.Step());
    if (!row) break;
    scoring::WindowRollup& w = out[pi.Int(0)];
    w.peripherals_working = pi.Int(1);
    w.peripherals_failed = pi.Int(2);
  }
  return out;
}

Result<std::vector<PeripheralInstance>> SqliteStore::LoadPeripheralInstances(
    std::int64_t customer_id, std::int64_t from_ms) {
  return ReadPeripheralInstances(customer_id, std::nullopt, from_ms);
}

Result<std::vector<PeripheralInstance>> SqliteStore::LoadEndpointPeripheralInstances(
    std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms) {
  return ReadPeripheralInstances(customer_id, endpoint_id, from_ms);
}

Result<std::vector<PeripheralInstance>> SqliteStore::ReadPeripheralInstances(
    std::int64_t customer_id, std::optional<std::int64_t> endpoint_id, std::int64_t from_ms) {
  DP_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(
          std::string("SELECT endpoint_id, device_key, bus, vendor_id, product_id, device_class, "
                      "interface_classes, name, drivers, redirected, ieee1284_id, last_state, "
                      "last_reason, last_seen_ms, last_fail_ms, observations, fail_observations, "
                      "reconnects, catalog, first_seen_ms FROM peripheral_instances WHERE "
                      "customer_id=? AND last_seen_ms >= ? AND observations > 0") +
          (endpoint_id ? " AND endpoint_id=?" : "") + " ORDER BY endpoint_id, device_key"));
  st.Bind(1, customer_id).Bind(2, from_ms);
  if (endpoint_id) st.Bind(3, *endpoint_id);
  std::vector<PeripheralInstance> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    PeripheralInstance p;
    p.customer_id = customer_id;
    p.endpoint_id = st.Int(0);
    p.device_key = std::string(st.Text(1));
    auto& s = p.last;
    s.set_bus(static_cast<v1::PeripheralBus>(st.Int(2)));
    s.set_vendor_id(static_cast<std::uint32_t>(st.Int(3)));
    s.set_product_id(static_cast<std::uint32_t>(st.Int(4)));
    s.set_device_class(static_cast<std::uint32_t>(st.Int(5)));
    SetInterfaceClasses(st.Text(6), &s);
    s.set_name(std::string(st.Text(7)));
    for (auto& d : SplitList(st.Text(8))) s.add_drivers(std::move(d));
    s.set_redirected(st.Int(9) != 0);
    if (!st.IsNull(10)) s.set_ieee1284_id(std::string(st.Text(10)));
    s.set_state(static_cast<v1::DeviceState>(st.Int(11)));
    s.set_reason(std::string(st.Text(12)));
    p.last_seen_ms = st.Int(13);
    p.last_fail_ms = st.Int(14);
    p.observations = st.Int(15);
    p.fail_observations = st.Int(16);
    p.reconnects = st.Int(17);
    p.first_seen_ms = st.Int(19);
    if (!st.IsNull(18) && !s.mutable_catalog()->ParseFromString(std::string(st.Blob(18)))) {
      return DataLoss("peripheral instance " + p.device_key + " of endpoint " +
                      std::to_string(p.endpoint_id) + " has a corrupt catalog verdict");
    }
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::int64_t> SqliteStore::CountRawReports() {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT count(*) FROM reports"));
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : 0;
}

namespace {

constexpr const char* kEndpointColumns =
    "endpoint_id, customer_id, agent_id, hostname, os, kernel, agent_version, role, site, pool, "
    "first_seen_ms, last_seen_ms";

EndpointInfo EndpointFromRow(const Statement& st) {
  return EndpointInfo{.id = st.Int(0),
                      .customer_id = st.Int(1),
                      .agent_id = std::string(st.Text(2)),
                      .hostname = std::string(st.Text(3)),
                      .os = std::string(st.Text(4)),
                      .kernel = std::string(st.Text(5)),
                      .agent_version = std::string(st.Text(6)),
                      .role = st.Int(7),
                      .site = std::string(st.Text(8)),
                      .pool = std::string(st.Text(9)),
                      .first_seen_ms = st.Int(10),
                      .last_seen_ms = st.Int(11),
                      .latest_report = std::nullopt};
}

/// Rows of (key, metric, count, sum, hist) as one endpoint window per key.
Result<std::map<std::int64_t, scoring::WindowRollup>> WindowsByFirstColumn(Statement& st) {
  std::map<std::int64_t, scoring::WindowRollup> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    SparseHistogram hist;
    if (!st.IsNull(4)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(st.Blob(4)));
    }
    scoring::WindowRollup& w = out[st.Int(0)];
    w.endpoints = 1;
    AddToWindow(static_cast<Metric>(st.Int(1)), st.Int(2), st.Double(3), hist, &w);
  }
  return out;
}

}  // namespace

Result<std::vector<EndpointInfo>> SqliteStore::ListEndpoints(std::int64_t customer_id) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare(fmt::format("SELECT {} FROM endpoints WHERE "
                                                        "customer_id=? ORDER BY endpoint_id",
                                                        kEndpointColumns)));
  st.Bind(1, customer_id);
  std::vector<EndpointInfo> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(EndpointFromRow(st));
  }
  return out;
}

Result<std::optional<EndpointInfo>> SqliteStore::LoadEndpoint(std::int64_t customer_id,
                                                              std::int64_t endpoint_id) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare(fmt::format("SELECT {}, last_report FROM endpoints "
                                                        "WHERE customer_id=? AND endpoint_id=?",
                                                        kEndpointColumns)));
  st.Bind(1, customer_id).Bind(2, endpoint_id);
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<EndpointInfo>();
  EndpointInfo e = EndpointFromRow(st);
  if (!st.IsNull(12)) {
    v1::Report r;
    const std::string_view body = st.Blob(12);
    if (!r.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return Status(Code::kDataLoss,
                    fmt::format("endpoint {}: its latest report does not parse", endpoint_id));
    }
    e.latest_report = std::move(r);
  }
  return std::optional<EndpointInfo>(std::move(e));
}

Result<std::map<std::int64_t, scoring::WindowRollup>> SqliteStore::LoadEndpointWindows(
    std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) {
  // Through the rollups' key: (grain, customer) then every endpoint's rows.
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT endpoint_id, metric, count, sum, hist FROM "
                                            "rollups WHERE grain=2 AND customer_id=? AND "
                                            "endpoint_id > 0 AND bucket_start_ms >= ? AND "
                                            "bucket_start_ms < ?"));
  st.Bind(1, customer_id).Bind(2, from_ms).Bind(3, to_ms);
  return WindowsByFirstColumn(st);
}

Result<std::map<std::int64_t, scoring::WindowRollup>> SqliteStore::LoadEndpointDays(
    std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms, std::int64_t to_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT bucket_start_ms, metric, count, sum, hist "
                                            "FROM rollups WHERE grain=2 AND customer_id=? AND "
                                            "endpoint_id=? AND bucket_start_ms >= ? AND "
                                            "bucket_start_ms < ?"));
  st.Bind(1, customer_id).Bind(2, endpoint_id).Bind(3, from_ms).Bind(4, to_ms);
  return WindowsByFirstColumn(st);
}

Result<std::map<std::int64_t, scoring::WindowRollup>> SqliteStore::LoadCustomerDays(
    std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT bucket_start_ms, metric, count, sum, hist "
                                            "FROM rollups WHERE grain=2 AND customer_id=? AND "
                                            "endpoint_id=0 AND bucket_start_ms >= ? AND "
                                            "bucket_start_ms < ?"));
  st.Bind(1, customer_id).Bind(2, from_ms).Bind(3, to_ms);
  DP_ASSIGN_OR_RETURN(auto out, WindowsByFirstColumn(st));
  for (auto& [day, w] : out) w.endpoints = 0;
  DP_ASSIGN_OR_RETURN(auto ep, db_->Prepare("SELECT bucket_start_ms, count(*) FROM rollups "
                                            "WHERE grain=2 AND customer_id=? AND endpoint_id > 0 "
                                            "AND metric=1 AND bucket_start_ms >= ? AND "
                                            "bucket_start_ms < ? GROUP BY bucket_start_ms"));
  ep.Bind(1, customer_id).Bind(2, from_ms).Bind(3, to_ms);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, ep.Step());
    if (!row) break;
    out[ep.Int(0)].endpoints = ep.Int(1);
  }
  return out;
}

Result<std::map<std::int64_t, std::map<std::int64_t, RollupCell>>>
SqliteStore::LoadEndpointDayCells(std::int64_t customer_id, Metric metric, std::int64_t from_ms,
                                  std::int64_t to_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT endpoint_id, bucket_start_ms, count, sum, hist "
                                            "FROM rollups WHERE grain=2 AND customer_id=? AND "
                                            "endpoint_id > 0 AND bucket_start_ms >= ? AND "
                                            "bucket_start_ms < ? AND metric=?"));
  st.Bind(1, customer_id)
      .Bind(2, from_ms)
      .Bind(3, to_ms)
      .Bind(4, static_cast<std::int64_t>(metric));
  std::map<std::int64_t, std::map<std::int64_t, RollupCell>> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    RollupCell& c = out[st.Int(0)][st.Int(1)];
    c.count = st.Int(2);
    c.sum = st.Double(3);
    if (!st.IsNull(4)) {
      DP_ASSIGN_OR_RETURN(c.hist, SparseHistogram::Decode(st.Blob(4)));
    }
  }
  return out;
}

Result<std::vector<StreamInfo>> SqliteStore::ListStreams() {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT e.customer_id, s.endpoint_id, s.stream_id, "
                                            "s.last_seq FROM streams s JOIN endpoints e "
                                            "USING(endpoint_id) ORDER BY s.stream_id"));
  std::vector<StreamInfo> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Int(0), st.Int(1), st.Int(2), static_cast<std::uint64_t>(st.Int(3))});
  }
  return out;
}

Result<std::vector<RollupRow>> SqliteStore::LoadRollupRows() {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT grain, customer_id, endpoint_id, "
                                            "bucket_start_ms, metric, count, sum, hist FROM "
                                            "rollups ORDER BY grain, customer_id, endpoint_id, "
                                            "bucket_start_ms, metric"));
  std::vector<RollupRow> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    RollupRow r{static_cast<Grain>(st.Int(0)),  st.Int(1), st.Int(2), st.Int(3),
                static_cast<Metric>(st.Int(4)), {}};
    r.cell.count = st.Int(5);
    r.cell.sum = st.Double(6);
    if (!st.IsNull(7)) {
      DP_ASSIGN_OR_RETURN(r.cell.hist, SparseHistogram::Decode(st.Blob(7)));
    }
    out.push_back(std::move(r));
  }
  return out;
}

Status SqliteStore::ForEachRawReport(const std::function<void(const RawReport&)>& fn) {
  std::int64_t after = 0;
  for (;;) {
    std::int64_t last = after;
    DP_RETURN_IF_ERROR(ScanRawRows(
        after, INT64_MAX, 20000,
        [&](const RawRow& r, const v1::Report& report) {
          fn(RawReport{r.customer_id, r.endpoint_id, r.stream_id, r.seq, r.received_at_ms, report});
        },
        &last));
    if (last == after) return Status::Ok();
    after = last;
  }
}

// ---- Business signals ----

namespace {

void BindOpt(Statement& st, int i, const std::optional<double>& v) {
  if (v) {
    st.Bind(i, *v);
  } else {
    st.BindNull(i);
  }
}

void BindOpt(Statement& st, int i, const std::optional<std::int64_t>& v) {
  if (v) {
    st.Bind(i, *v);
  } else {
    st.BindNull(i);
  }
}

std::optional<double> OptDouble(const Statement& st, int col) {
  if (st.IsNull(col)) return std::nullopt;
  return st.Double(col);
}

std::optional<std::int64_t> OptInt(const Statement& st, int col) {
  if (st.IsNull(col)) return std::nullopt;
  return st.Int(col);
}

}  // namespace

Result<ImportResult> SqliteStore::ImportSignals(const SignalBatch& batch, std::int64_t now_ms) {
  const std::string kind = SignalKindName(batch.kind);
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(auto seen, db_->Prepare("SELECT 1 FROM signal_imports WHERE kind=? AND "
                                              "content_sha256=?"));
  seen.Bind(1, kind).Bind(2, batch.content_sha256);
  DP_ASSIGN_OR_RETURN(bool already, seen.Step());
  if (already) return ImportResult{.already_imported = true, .rows = 0};

  DP_ASSIGN_OR_RETURN(auto find, db_->Prepare("SELECT customer_id FROM customers WHERE name=?"));
  std::map<std::string, std::int64_t, std::less<>> ids;
  auto customer = [&](const SignalRow& row) -> Result<std::int64_t> {
    if (auto it = ids.find(row.customer); it != ids.end()) return it->second;
    find.Bind(1, row.customer);
    DP_ASSIGN_OR_RETURN(bool found, find.Step());
    if (!found) return UnknownSignalCustomer(row);
    const std::int64_t id = find.Int(0);
    DP_RETURN_IF_ERROR(find.Run());  // reset for the next name
    ids.emplace(row.customer, id);
    return id;
  };

  if (!batch.surveys.empty()) {
    DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("INSERT OR REPLACE INTO surveys(customer_id, "
                                              "date_ms, nps, ces, ves, respondents, imported_ms) "
                                              "VALUES(?,?,?,?,?,?,?)"));
    for (const SurveyRow& r : batch.surveys) {
      DP_ASSIGN_OR_RETURN(std::int64_t id, customer(r));
      st.Bind(1, id).Bind(2, r.survey.date_ms);
      BindOpt(st, 3, r.survey.nps);
      BindOpt(st, 4, r.survey.ces);
      BindOpt(st, 5, r.survey.ves);
      DP_RETURN_IF_ERROR(st.Bind(6, r.survey.respondents).Bind(7, now_ms).Run());
    }
  }
  if (!batch.tickets.empty()) {
    DP_ASSIGN_OR_RETURN(auto st,
                        db_->Prepare("INSERT OR REPLACE INTO tickets(customer_id, ticket_id, "
                                     "opened_ms, first_response_ms, resolved_ms, severity, "
                                     "imported_ms) VALUES(?,?,?,?,?,?,?)"));
    for (const TicketRow& r : batch.tickets) {
      DP_ASSIGN_OR_RETURN(std::int64_t id, customer(r));
      st.Bind(1, id).Bind(2, r.ticket.id).Bind(3, r.ticket.opened_ms);
      BindOpt(st, 4, r.ticket.first_response_ms);
      BindOpt(st, 5, r.ticket.resolved_ms);
      DP_RETURN_IF_ERROR(st.Bind(6, r.ticket.severity).Bind(7, now_ms).Run());
    }
  }
  if (!batch.contracts.empty()) {
    DP_ASSIGN_OR_RETURN(
        auto st,
        db_->Prepare("INSERT OR REPLACE INTO contracts(customer_id, tier, annual_value, start_ms, "
                     "renewal_ms, renewal_status, expected_savings, realised_savings, sla_boot_s, "
                     "sla_boot_pct, sla_rtt_ms, sla_rtt_pct, sla_peripherals_pct, "
                     "sla_availability_pct, imported_ms) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
    for (const ContractRow& r : batch.contracts) {
      DP_ASSIGN_OR_RETURN(std::int64_t id, customer(r));
      const scoring::Contract& c = r.contract;
      st.Bind(1, id)
          .Bind(2, std::string_view(&c.tier, 1))
          .Bind(3, c.annual_value)
          .Bind(4, c.start_ms)
          .Bind(5, c.renewal_ms)
          .Bind(6, scoring::RenewalStatusName(c.renewal_status));
      BindOpt(st, 7, c.expected_savings);
      BindOpt(st, 8, c.realised_savings);
      BindOpt(st, 9, r.sla.boot_s);
      BindOpt(st, 10, r.sla.boot_pct);
      BindOpt(st, 11, r.sla.rtt_ms);
      BindOpt(st, 12, r.sla.rtt_pct);
      BindOpt(st, 13, r.sla.peripherals_pct);
      BindOpt(st, 14, r.sla.availability_pct);
      DP_RETURN_IF_ERROR(st.Bind(15, now_ms).Run());
    }
  }
  if (!batch.reviews.empty()) {
    DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("INSERT OR REPLACE INTO business_reviews("
                                              "customer_id, date_ms, imported_ms) VALUES(?,?,?)"));
    for (const ReviewRow& r : batch.reviews) {
      DP_ASSIGN_OR_RETURN(std::int64_t id, customer(r));
      DP_RETURN_IF_ERROR(st.Bind(1, id).Bind(2, r.date_ms).Bind(3, now_ms).Run());
    }
  }
  DP_ASSIGN_OR_RETURN(auto log, db_->Prepare("INSERT INTO signal_imports(kind, content_sha256, "
                                             "rows, imported_ms) VALUES(?,?,?,?)"));
  DP_RETURN_IF_ERROR(log.Bind(1, kind)
                         .Bind(2, batch.content_sha256)
                         .Bind(3, static_cast<std::int64_t>(batch.size()))
                         .Bind(4, now_ms)
                         .Run());
  DP_RETURN_IF_ERROR(tx.Commit());
  return ImportResult{.already_imported = false, .rows = batch.size()};
}

Result<CustomerSignals> SqliteStore::LoadSignals(std::int64_t customer_id) {
  CustomerSignals out;
  scoring::BusinessSignals& s = out.signals;
  DP_ASSIGN_OR_RETURN(auto surveys, db_->Prepare("SELECT date_ms, nps, ces, ves, respondents FROM "
                                                 "surveys WHERE customer_id=? ORDER BY date_ms"));
  surveys.Bind(1, customer_id);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, surveys.Step());
    if (!row) break;
    s.surveys.push_back({.date_ms = surveys.Int(0),
                         .nps = OptDouble(surveys, 1),
                         .ces = OptDouble(surveys, 2),
                         .ves = OptDouble(surveys, 3),
                         .respondents = surveys.Int(4)});
  }
  DP_ASSIGN_OR_RETURN(auto tickets,
                      db_->Prepare("SELECT ticket_id, opened_ms, first_response_ms, resolved_ms, "
                                   "severity FROM tickets WHERE customer_id=? ORDER BY ticket_id"));
  tickets.Bind(1, customer_id);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, tickets.Step());
    if (!row) break;
    s.tickets.push_back({.id = std::string(tickets.Text(0)),
                         .opened_ms = tickets.Int(1),
                         .first_response_ms = OptInt(tickets, 2),
                         .resolved_ms = OptInt(tickets, 3),
                         .severity = std::string(tickets.Text(4))});
  }
  DP_ASSIGN_OR_RETURN(
      auto contract,
      db_->Prepare("SELECT tier, annual_value, start_ms, renewal_ms, renewal_status, "
                   "expected_savings, realised_savings, sla_boot_s, sla_boot_pct, sla_rtt_ms, "
                   "sla_rtt_pct, sla_peripherals_pct, sla_availability_pct FROM contracts WHERE "
                   "customer_id=?"));
  contract.Bind(1, customer_id);
  DP_ASSIGN_OR_RETURN(bool has_contract, contract.Step());
  if (has_contract) {
    scoring::Contract c;
    const std::string_view tier = contract.Text(0);
    c.tier = tier.empty() ? 'C' : tier[0];
    c.annual_value = contract.Double(1);
    c.start_ms = contract.Int(2);
    c.renewal_ms = contract.Int(3);
    c.renewal_status =
        scoring::ParseRenewalStatus(contract.Text(4)).value_or(scoring::RenewalStatus::kPending);
    c.expected_savings = OptDouble(contract, 5);
    c.realised_savings = OptDouble(contract, 6);
    s.contract = c;
    out.sla = {.boot_s = OptDouble(contract, 7),
               .boot_pct = OptDouble(contract, 8),
               .rtt_ms = OptDouble(contract, 9),
               .rtt_pct = OptDouble(contract, 10),
               .peripherals_pct = OptDouble(contract, 11),
               .availability_pct = OptDouble(contract, 12)};
  }
  DP_ASSIGN_OR_RETURN(auto reviews, db_->Prepare("SELECT date_ms FROM business_reviews WHERE "
                                                 "customer_id=? ORDER BY date_ms"));
  reviews.Bind(1, customer_id);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, reviews.Step());
    if (!row) break;
    s.review_dates_ms.push_back(reviews.Int(0));
  }
  DP_ASSIGN_OR_RETURN(auto overrides,
                      db_->Prepare("SELECT factor, value, reason, expires_ms FROM overrides WHERE "
                                   "customer_id=? ORDER BY created_ms, factor"));
  overrides.Bind(1, customer_id);
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, overrides.Step());
    if (!row) break;
    const auto factor = scoring::ParseFactor(overrides.Text(0));
    if (!factor) continue;  // a factor this build does not know
    s.overrides.push_back({.factor = *factor,
                           .value = overrides.Double(1),
                           .reason = std::string(overrides.Text(2)),
                           .expires_ms = overrides.Int(3)});
  }
  return out;
}

Status SqliteStore::SetOverride(std::int64_t customer_id, const scoring::Override& o,
                                std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("INSERT OR REPLACE INTO overrides(customer_id, "
                                            "factor, value, reason, expires_ms, created_ms) "
                                            "VALUES(?,?,?,?,?,?)"));
  return st.Bind(1, customer_id)
      .Bind(2, scoring::FactorName(o.factor))
      .Bind(3, o.value)
      .Bind(4, o.reason)
      .Bind(5, o.expires_ms)
      .Bind(6, now_ms)
      .Run();
}

Result<std::vector<std::optional<RiskEvent>>> SqliteStore::RecordHealthBatch(
    std::span<const HealthRecord> records, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(auto last, db_->Prepare("SELECT risk FROM health_snapshots WHERE "
                                              "customer_id=? AND day_ms<=? ORDER BY day_ms DESC "
                                              "LIMIT 1"));
  DP_ASSIGN_OR_RETURN(auto up, db_->Prepare("INSERT OR REPLACE INTO health_snapshots(customer_id, "
                                            "day_ms, tps, lhi, coverage, risk, recorded_ms) "
                                            "VALUES(?,?,?,?,?,?,?)"));
  DP_ASSIGN_OR_RETURN(auto ev, db_->Prepare("INSERT OR REPLACE INTO risk_events(customer_id, "
                                            "at_ms, from_risk, to_risk, reasons) "
                                            "VALUES(?,?,?,?,?)"));
  std::vector<std::optional<RiskEvent>> events;
  events.reserve(records.size());
  for (const HealthRecord& r : records) {
    const HealthSnapshot& snap = r.snapshot;
    last.Bind(1, snap.customer_id).Bind(2, snap.day_ms);
    DP_ASSIGN_OR_RETURN(bool had, last.Step());
    const std::optional<std::string> before =
        had ? std::optional<std::string>(last.Text(0)) : std::nullopt;
    DP_RETURN_IF_ERROR(last.Run());  // resets for the next record
    up.Bind(1, snap.customer_id).Bind(2, snap.day_ms);
    BindOpt(up, 3, snap.tps);
    BindOpt(up, 4, snap.lhi);
    DP_RETURN_IF_ERROR(up.Bind(5, snap.coverage).Bind(6, snap.risk).Bind(7, now_ms).Run());
    std::optional<RiskEvent> event = RiskChange(snap, before, r.reasons, now_ms);
    if (event) {
      DP_RETURN_IF_ERROR(ev.Bind(1, snap.customer_id)
                             .Bind(2, now_ms)
                             .Bind(3, event->from_risk)
                             .Bind(4, event->to_risk)
                             .Bind(5, JoinReasons(event->reasons))
                             .Run());
    }
    events.push_back(std::move(event));
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  return events;
}

Result<std::vector<HealthSnapshot>> SqliteStore::LoadHistory(std::int64_t customer_id,
                                                             std::int64_t from_day_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT day_ms, tps, lhi, coverage, risk FROM "
                                            "health_snapshots WHERE customer_id=? AND day_ms>=? "
                                            "ORDER BY day_ms"));
  st.Bind(1, customer_id).Bind(2, from_day_ms);
  std::vector<HealthSnapshot> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({.customer_id = customer_id,
                   .day_ms = st.Int(0),
                   .tps = OptDouble(st, 1),
                   .lhi = OptDouble(st, 2),
                   .coverage = st.Double(3),
                   .risk = std::string(st.Text(4))});
  }
  return out;
}

Result<std::vector<ImportRecord>> SqliteStore::ListImports(std::size_t limit) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT kind, content_sha256, rows, imported_ms FROM "
                                            "signal_imports ORDER BY imported_ms DESC, kind, "
                                            "content_sha256 LIMIT ?"));
  st.Bind(1, static_cast<std::int64_t>(limit));
  std::vector<ImportRecord> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    const auto kind = ParseSignalKind(st.Text(0));
    if (!kind)
      return Status(Code::kDataLoss, "signal_imports: unknown kind " + std::string(st.Text(0)));
    out.push_back({*kind, std::string(st.Text(1)), st.Int(2), st.Int(3)});
  }
  return out;
}

Result<std::vector<RiskEvent>> SqliteStore::LoadRiskEvents(std::int64_t customer_id) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT at_ms, from_risk, to_risk, reasons FROM "
                                            "risk_events WHERE customer_id=? ORDER BY at_ms"));
  st.Bind(1, customer_id);
  std::vector<RiskEvent> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({.customer_id = customer_id,
                   .at_ms = st.Int(0),
                   .from_risk = std::string(st.Text(1)),
                   .to_risk = std::string(st.Text(2)),
                   .reasons = SplitReasons(st.Text(3))});
  }
  return out;
}

// ---- API tokens ----

Result<std::pair<ApiToken, std::string>> SqliteStore::CreateApiToken(
    ApiRole role, std::optional<std::int64_t> customer_id, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(CheckApiGrant(role, customer_id));
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  ApiToken t{.id = 0,
             .role = role,
             .customer = std::nullopt,
             .created_ms = now_ms,
             .revoked_ms = std::nullopt};
  if (customer_id) {
    DP_ASSIGN_OR_RETURN(auto c, db_->Prepare("SELECT name FROM customers WHERE customer_id=?"));
    c.Bind(1, *customer_id);
    DP_ASSIGN_OR_RETURN(bool found, c.Step());
    if (!found) return NotFound("no customer with id " + std::to_string(*customer_id));
    t.customer = Customer{*customer_id, std::string(c.Text(0))};
  }
  DP_ASSIGN_OR_RETURN(std::string token, NewToken("dpa_"));
  DP_ASSIGN_OR_RETURN(auto ins, db_->Prepare("INSERT INTO api_tokens(token_hash, role, "
                                             "customer_id, created_ms) VALUES(?,?,?,?)"));
  ins.Bind(1, HashToken(token)).Bind(2, ApiRoleName(role));
  BindOpt(ins, 3, customer_id);
  DP_RETURN_IF_ERROR(ins.Bind(4, now_ms).Run());
  t.id = db_->LastInsertRowid();
  DP_RETURN_IF_ERROR(tx.Commit());
  return std::pair{t, token};
}

namespace {
constexpr const char* kApiTokenColumns =
    "SELECT t.token_id, t.role, t.customer_id, c.name, t.created_ms, t.revoked_ms FROM "
    "api_tokens t LEFT JOIN customers c ON c.customer_id = t.customer_id ";

ApiToken ApiTokenFrom(const Statement& st) {
  ApiToken t;
  t.id = st.Int(0);
  t.role = ParseApiRole(st.Text(1)).value_or(ApiRole::kCustomerAdmin);
  if (!st.IsNull(2)) t.customer = Customer{st.Int(2), std::string(st.Text(3))};
  t.created_ms = st.Int(4);
  t.revoked_ms = OptInt(st, 5);
  return t;
}
}  // namespace

Result<std::vector<ApiToken>> SqliteStore::ListApiTokens() {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string(kApiTokenColumns) + "ORDER BY token_id"));
  std::vector<ApiToken> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ApiTokenFrom(st));
  }
  return out;
}

Status SqliteStore::RevokeApiToken(std::int64_t token_id, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("UPDATE api_tokens SET revoked_ms = "
                                            "COALESCE(revoked_ms, ?) WHERE token_id=?"));
  DP_RETURN_IF_ERROR(st.Bind(1, now_ms).Bind(2, token_id).Run());
  if (db_->Changes() == 0) return NotFound("no API token with id " + std::to_string(token_id));
  return Status::Ok();
}

Result<ApiToken> SqliteStore::AuthenticateApiToken(const std::string& token) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string(kApiTokenColumns) +
                                            "WHERE t.token_hash=? AND t.revoked_ms IS NULL"));
  st.Bind(1, HashToken(token));
  DP_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kUnauthenticated, "unknown or revoked API token");
  return ApiTokenFrom(st);
}

// ---- webhook deliveries ----

namespace {
constexpr const char* kDeliveryColumns =
    "delivery_id, webhook, event_key, payload, created_ms, attempts, next_attempt_ms, "
    "delivered_ms, abandoned_ms, last_error";

WebhookDelivery DeliveryFrom(const Statement& st) {
  return WebhookDelivery{.id = st.Int(0),
                         .webhook = std::string(st.Text(1)),
                         .event_key = std::string(st.Text(2)),
                         .payload = std::string(st.Text(3)),
                         .created_ms = st.Int(4),
                         .attempts = st.Int(5),
                         .next_attempt_ms = st.Int(6),
                         .delivered_ms = OptInt(st, 7),
                         .abandoned_ms = OptInt(st, 8),
                         .last_error = std::string(st.Text(9))};
}
}  // namespace

Result<std::size_t> SqliteStore::EnqueueDeliveries(const std::vector<WebhookDelivery>& deliveries,
                                                   std::int64_t now_ms) {
  if (deliveries.empty()) return std::size_t{0};
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(auto ins, db_->Prepare("INSERT INTO webhook_deliveries(webhook, event_key, "
                                             "payload, created_ms, next_attempt_ms) VALUES(?,?,?,"
                                             "?,?) ON CONFLICT(webhook, event_key) DO NOTHING"));
  std::size_t added = 0;
  for (const WebhookDelivery& d : deliveries) {
    ins.Bind(1, d.webhook).Bind(2, d.event_key).Bind(3, d.payload).Bind(4, now_ms).Bind(5, now_ms);
    DP_RETURN_IF_ERROR(ins.Run());
    added += static_cast<std::size_t>(db_->Changes());
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  return added;
}

Result<std::vector<WebhookDelivery>> SqliteStore::ClaimDeliveries(const std::string& webhook,
                                                                  std::int64_t now_ms,
                                                                  std::int64_t lease_ms,
                                                                  std::size_t limit) {
  DP_ASSIGN_OR_RETURN(auto tx, Transaction::Begin(db_.get()));
  DP_ASSIGN_OR_RETURN(
      auto st,
      db_->Prepare(std::string("UPDATE webhook_deliveries SET attempts = attempts + 1, "
                               "next_attempt_ms = ? WHERE delivery_id IN (SELECT delivery_id FROM "
                               "webhook_deliveries WHERE webhook = ? AND delivered_ms IS NULL AND "
                               "abandoned_ms IS NULL AND next_attempt_ms <= ? ORDER BY "
                               "next_attempt_ms, delivery_id LIMIT ?) RETURNING ") +
                   kDeliveryColumns));
  st.Bind(1, now_ms + lease_ms)
      .Bind(2, webhook)
      .Bind(3, now_ms)
      .Bind(4, static_cast<std::int64_t>(limit));
  std::vector<WebhookDelivery> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(DeliveryFrom(st));
  }
  st.Reset();
  DP_RETURN_IF_ERROR(tx.Commit());
  std::sort(out.begin(), out.end(),
            [](const WebhookDelivery& a, const WebhookDelivery& b) { return a.id < b.id; });
  return out;
}

Status SqliteStore::CompleteDelivery(std::int64_t id, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("UPDATE webhook_deliveries SET delivered_ms = "
                                            "COALESCE(delivered_ms, ?), last_error = '' WHERE "
                                            "delivery_id = ?"));
  DP_RETURN_IF_ERROR(st.Bind(1, now_ms).Bind(2, id).Run());
  if (db_->Changes() == 0) return NotFound("no webhook delivery " + std::to_string(id));
  return Status::Ok();
}

Status SqliteStore::FailDelivery(std::int64_t id, const std::string& error,
                                 std::int64_t retry_at_ms, bool abandon) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("UPDATE webhook_deliveries SET last_error = ?, "
                                            "next_attempt_ms = ?, abandoned_ms = CASE WHEN ? THEN "
                                            "? ELSE abandoned_ms END WHERE delivery_id = ? AND "
                                            "delivered_ms IS NULL"));
  st.Bind(1, error.substr(0, 500))
      .Bind(2, retry_at_ms)
      .Bind(3, std::int64_t{abandon ? 1 : 0})
      .Bind(4, retry_at_ms)
      .Bind(5, id);
  DP_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return NotFound("no pending webhook delivery " + std::to_string(id));
  return Status::Ok();
}

Result<std::vector<WebhookDelivery>> SqliteStore::ListDeliveries(const std::string& webhook) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare(std::string("SELECT ") + kDeliveryColumns +
                                            " FROM webhook_deliveries WHERE webhook = ? ORDER BY "
                                            "delivery_id"));
  st.Bind(1, webhook);
  std::vector<WebhookDelivery> out;
  for (;;) {
    DP_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(DeliveryFrom(st));
  }
  return out;
}

Result<std::size_t> SqliteStore::PruneDeliveries(std::int64_t before_ms) {
  DP_ASSIGN_OR_RETURN(auto st, db_->Prepare("DELETE FROM webhook_deliveries WHERE "
                                            "COALESCE(delivered_ms, abandoned_ms) < ?"));
  DP_RETURN_IF_ERROR(st.Bind(1, before_ms).Run());
  return static_cast<std::size_t>(db_->Changes());
}

}  // namespace deskpulse::collector
