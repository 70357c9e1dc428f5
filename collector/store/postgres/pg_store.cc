#include "collector/store/postgres/pg_store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <numeric>
#include <tuple>

#include "collector/store/postgres_migrations.h"
#include "collector/store/row_codec.h"
#include "deskpulse/common/crc32c.h"
#include "deskpulse/common/text.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;
using pg::Params;

namespace {

// Advisory lock keys: schema migration, partition creation, retention.
constexpr std::int64_t kMigrateLock = 7741001;
constexpr std::int64_t kPartitionLock = 7741002;
constexpr std::int64_t kRetentionLock = 7741003;

std::int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t DayOf(std::int64_t ms) { return FloorTo(ms, kDayMs) / kDayMs; }

std::string PartitionName(std::int64_t day) { return fmt::format("reports_d{}", day); }

std::string Opt(const std::string& s) { return s; }

}  // namespace

PgStore::PgStore(StoreOptions options)
    : options_(std::move(options)), name_(RedactDb(options_.db)) {}

Result<std::unique_ptr<PgStore>> PgStore::Open(const StoreOptions& options) {
  std::unique_ptr<PgStore> store(new PgStore(options));
  DP_ASSIGN_OR_RETURN(store->conn_, pg::Connection::Open(options.db, store->name_));
  pg::Connection& db = *store->conn_;
  DP_ASSIGN_OR_RETURN(auto has_meta, db.Query("schema", "SELECT to_regclass('meta') IS NOT NULL"));
  const bool exists = has_meta.Text(0, 0) == "t";
  if (!exists && (options.read_only || !options.create_if_missing)) {
    return Status(Code::kNotFound,
                  store->name_ + " is not a DeskPulse store (no schema)" + NoStoreHint());
  }
  if (options.read_only) {
    DP_RETURN_IF_ERROR(db.Exec("SET default_transaction_read_only = on"));
    DP_ASSIGN_OR_RETURN(
        auto v, db.Query("schema version", "SELECT value FROM meta WHERE key='schema_version'"));
    store->schema_version_ = v.size() > 0 ? static_cast<int>(v.Int(0, 0)) : 0;
    if (store->schema_version_ > LatestSchemaVersion()) {
      return Status(Code::kUnavailable,
                    fmt::format("{} has schema v{}, newer than this collector's v{}", store->name_,
                                store->schema_version_, LatestSchemaVersion()));
    }
    return store;
  }
  DP_RETURN_IF_ERROR(store->Migrate());
  if (options.check_at_open) {
    DP_ASSIGN_OR_RETURN(IntegrityReport check, store->Check(/*full=*/false));
    if (!check.ok()) {
      if (!options.allow_damaged) {
        return DataLoss(store->name_ + " is damaged: " + check.problems.front() +
                        ". Nothing was written to it. Run `deskpulse-collector check` on it "
                        "for the full report; or start with --allow-damaged");
      }
      spdlog::error("store {} is damaged: {}; serving anyway (--allow-damaged)", store->name_,
                    check.problems.front());
    }
  }
  DP_RETURN_IF_ERROR(store->Register(*store->conn_));
  const std::int64_t now = WallMs();
  for (int d = -1; d <= 2; ++d) {
    DP_RETURN_IF_ERROR(store->EnsurePartition(*store->conn_, now + d * kDayMs));
  }
  const auto steady = std::chrono::steady_clock::now();
  store->next_round_ = steady + options.rollup_flush_interval;
  store->next_retention_ = steady;
  store->next_heartbeat_ = steady + options.collector_lease / 6;
  if (options.serving) {
    // Maintenance on a connection and a thread of its own: a rollup flush
    // never holds up a commit.
    DP_ASSIGN_OR_RETURN(store->maint_conn_, pg::Connection::Open(options.db, store->name_));
    store->maint_thread_ = std::thread([s = store.get()] { s->RunMaintenance(); });
  }
  return store;
}

PgStore::~PgStore() {
  StopMaintenance();
  // A clean close leaves no collector behind: what it still had pending (if
  // its last flush failed) is finished by the others at once.
  if (collector_id_ != 0 && conn_ != nullptr) {
    (void)conn_->Query("deregister", "DELETE FROM collectors WHERE collector_id=$1",
                       {pg::Int(collector_id_)});
  }
}

Status PgStore::Migrate() {
  pg::Connection& db = *conn_;
  // Collectors starting together: one migrates, the others wait and find it done.
  DP_RETURN_IF_ERROR(db.Exec(fmt::format("SELECT pg_advisory_lock({})", kMigrateLock)));
  auto migrate = [&]() -> Status {
    DP_ASSIGN_OR_RETURN(auto has_meta,
                        db.Query("schema", "SELECT to_regclass('meta') IS NOT NULL"));
    int current = 0;
    if (has_meta.Text(0, 0) == "t") {
      DP_ASSIGN_OR_RETURN(
          auto v, db.Query("schema version", "SELECT value FROM meta WHERE key='schema_version'"));
      current = v.size() > 0 ? static_cast<int>(v.Int(0, 0)) : 0;
    }
    const int latest = static_cast<int>(kPostgresMigrations.size());
    if (current > latest) {
      return Status(Code::kUnavailable, fmt::format("{} has schema v{}, newer than this "
                                                    "collector's v{}",
                                                    name_, current, latest));
    }
    for (int v = current + 1; v <= latest; ++v) {
      DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(&db));
      DP_RETURN_IF_ERROR(db.Exec(kPostgresMigrations[static_cast<std::size_t>(v - 1)]));
      DP_RETURN_IF_ERROR(db.Query("schema version",
                                  "INSERT INTO meta(key, value) VALUES('schema_version', $1) "
                                  "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                                  {pg::Int(v)})
                             .status());
      DP_RETURN_IF_ERROR(tx.Commit());
      spdlog::info("store {}: applied schema migration v{}", name_, v);
    }
    schema_version_ = latest;
    return Status::Ok();
  };
  Status s = migrate();
  (void)db.Exec(fmt::format("SELECT pg_advisory_unlock({})", kMigrateLock));
  return s;
}

Status PgStore::Register(pg::Connection& db) {
  char host[256] = {};
  (void)gethostname(host, sizeof host - 1);
  const std::int64_t now = WallMs();
  DP_ASSIGN_OR_RETURN(auto rows,
                      db.Query("register collector",
                               "INSERT INTO collectors(host, pid, started_ms, heartbeat_ms) "
                               "VALUES($1, $2, $3, $3) RETURNING collector_id",
                               {std::string(host), pg::Int(getpid()), pg::Int(now)}));
  collector_id_ = rows.Int(0, 0);
  return Status::Ok();
}

Status PgStore::Heartbeat(pg::Connection& db, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto rows, db.Query("heartbeat",
                                          "UPDATE collectors SET heartbeat_ms=$2 WHERE "
                                          "collector_id=$1 RETURNING 1",
                                          {pg::Int(collector_id_), pg::Int(now_ms)}));
  if (rows.size() == 0) return Register(db);  // removed as long dead: start again
  return Status::Ok();
}

Status PgStore::EnsurePartition(pg::Connection& db, std::int64_t received_at_ms) {
  const std::int64_t day = DayOf(received_at_ms);
  {
    std::lock_guard lock(pending_mu_);
    if (partitions_.contains(day)) return Status::Ok();
  }
  DP_RETURN_IF_ERROR(db.EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(&db));
  DP_RETURN_IF_ERROR(db.Exec(fmt::format("SELECT pg_advisory_xact_lock({})", kPartitionLock)));
  DP_RETURN_IF_ERROR(db.Exec(
      fmt::format("CREATE TABLE IF NOT EXISTS {} PARTITION OF reports FOR VALUES FROM ({}) TO ({})",
                  PartitionName(day), day * kDayMs, (day + 1) * kDayMs)));
  DP_RETURN_IF_ERROR(tx.Commit());
  std::lock_guard lock(pending_mu_);
  partitions_.insert(day);
  return Status::Ok();
}

StoreStats PgStore::stats() const {
  std::uint64_t backlog = 0;
  {
    std::lock_guard lock(pending_mu_);
    backlog = pending_.reports() + flushing_reports_ + replay_reports_;
  }
  std::lock_guard lock(mu_);
  StoreStats out = stats_;
  out.rollup_backlog_reports = backlog;
  return out;
}

// ---- customers and credentials

Result<Customer> PgStore::EnsureCustomerTx(const std::string& name, std::int64_t now_ms) {
  if (name.empty() || name.size() > 200) {
    return InvalidArgument("customer name must be 1..200 characters");
  }
  // Look first, so that names already known do not use up ids.
  DP_ASSIGN_OR_RETURN(auto found, conn_->Query("customer",
                                               "SELECT customer_id FROM customers "
                                               "WHERE name=$1",
                                               {name}));
  if (found.size() > 0) return Customer{found.Int(0, 0), name};
  DP_RETURN_IF_ERROR(conn_
                         ->Query("customer",
                                 "INSERT INTO customers(name, created_ms) VALUES($1, $2) "
                                 "ON CONFLICT(name) DO NOTHING",
                                 {name, pg::Int(now_ms)})
                         .status());
  DP_ASSIGN_OR_RETURN(auto sel, conn_->Query("customer",
                                             "SELECT customer_id FROM customers "
                                             "WHERE name=$1",
                                             {name}));
  if (sel.size() == 0) return Internal("customer vanished after insert");
  return Customer{sel.Int(0, 0), name};
}

Result<Customer> PgStore::EnsureCustomer(const std::string& name, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  DP_ASSIGN_OR_RETURN(Customer c, EnsureCustomerTx(name, now_ms));
  DP_RETURN_IF_ERROR(tx.Commit());
  return c;
}

Result<std::string> PgStore::CreateToken(const std::string& customer, std::int64_t now_ms) {
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  DP_ASSIGN_OR_RETURN(Customer c, EnsureCustomerTx(customer, now_ms));
  DP_ASSIGN_OR_RETURN(std::string token, NewToken());
  DP_RETURN_IF_ERROR(conn_
                         ->Query("token",
                                 "INSERT INTO tokens(customer_id, token_hash, created_ms) "
                                 "VALUES($1, $2, $3)",
                                 {pg::Int(c.id), HashToken(token), pg::Int(now_ms)})
                         .status());
  DP_RETURN_IF_ERROR(tx.Commit());
  return token;
}

Result<Customer> PgStore::Authenticate(const std::string& token) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows,
                      conn_->Query("authenticate",
                                   "SELECT c.customer_id, c.name FROM tokens t JOIN customers c "
                                   "USING(customer_id) WHERE t.token_hash=$1 AND t.revoked_ms "
                                   "IS NULL",
                                   {HashToken(token)}));
  if (rows.size() == 0)
    return Status(Code::kUnauthenticated, "unknown or revoked enrollment token");
  return Customer{rows.Int(0, 0), std::string(rows.Text(0, 1))};
}

Result<StreamInfo> PgStore::RegisterTx(std::int64_t customer_id, const v1::Hello& hello,
                                       std::int64_t now_ms) {
  const auto& h = hello.host();
  const std::string customer = pg::Int(customer_id);
  // An existing endpoint is updated in place; a new one gets the next id.
  DP_ASSIGN_OR_RETURN(
      auto up,
      conn_->Query("register endpoint",
                   "UPDATE endpoints SET hostname=$3, os=$4, kernel=$5, "
                   "agent_version=$6, role=$7, site=$8, pool=$9, last_connect_ms=$10 "
                   "WHERE customer_id=$1 AND agent_id=$2 RETURNING endpoint_id",
                   {customer, hello.agent_id(), h.hostname(), h.os(), h.kernel(), h.agent_version(),
                    pg::Int(h.role()), h.site(), h.pool(), pg::Int(now_ms)}));
  std::int64_t endpoint_id = 0;
  if (up.size() > 0) {
    endpoint_id = up.Int(0, 0);
  } else {
    DP_ASSIGN_OR_RETURN(
        auto ins,
        conn_->Query("register endpoint",
                     "INSERT INTO endpoints(customer_id, agent_id, hostname, os, kernel, "
                     "agent_version, role, site, pool, first_seen_ms, last_connect_ms) "
                     "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10) ON CONFLICT(customer_id, "
                     "agent_id) DO UPDATE SET last_connect_ms=excluded.last_connect_ms "
                     "RETURNING endpoint_id",
                     {customer, hello.agent_id(), h.hostname(), h.os(), h.kernel(),
                      h.agent_version(), pg::Int(h.role()), h.site(), h.pool(), pg::Int(now_ms)}));
    endpoint_id = ins.Int(0, 0);
  }
  // Epochs above 2^63 are refused upstream.
  const std::string epoch = pg::Int(static_cast<std::int64_t>(hello.epoch()));
  const Params key{customer, pg::Int(endpoint_id), epoch};
  DP_ASSIGN_OR_RETURN(auto st, conn_->Query("register stream",
                                            "SELECT stream_id, last_seq FROM streams WHERE "
                                            "customer_id=$1 AND endpoint_id=$2 AND epoch=$3",
                                            key));
  if (st.size() == 0) {
    DP_ASSIGN_OR_RETURN(st, conn_->Query("register stream",
                                         "INSERT INTO streams(customer_id, endpoint_id, epoch) "
                                         "VALUES($1,$2,$3) ON CONFLICT(customer_id, endpoint_id, "
                                         "epoch) DO UPDATE SET epoch=excluded.epoch RETURNING "
                                         "stream_id, last_seq",
                                         key));
  }
  return StreamInfo{customer_id, endpoint_id, st.Int(0, 0),
                    static_cast<std::uint64_t>(st.Int(0, 1))};
}

std::vector<Result<StreamInfo>> PgStore::AuthenticateAndRegister(std::span<const v1::Hello> hellos,
                                                                 std::int64_t now_ms) {
  std::vector<Result<StreamInfo>> out(hellos.size(), Status(Code::kInternal, "not registered"));
  auto tx = pg::Transaction::Begin(conn_.get());
  if (!tx.ok()) {
    for (auto& r : out) r = tx.status();
    return out;
  }
  // One order for every collector, so that two registering the same agents
  // at once do not deadlock on their rows.
  std::vector<std::size_t> order(hellos.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (hellos[a].agent_id() != hellos[b].agent_id()) {
      return hellos[a].agent_id() < hellos[b].agent_id();
    }
    return hellos[a].epoch() < hellos[b].epoch();
  });
  for (std::size_t i : order) {
    auto customer = Authenticate(hellos[i].credential());
    out[i] = customer.ok() ? RegisterTx(customer->id, hellos[i], now_ms)
                           : Result<StreamInfo>(customer.status());
  }
  if (Status s = tx->Commit(); !s.ok()) {
    for (auto& r : out) r = s;
  }
  return out;
}

// ---- the hot path

Status PgStore::CommitBatches(std::span<BatchWrite> batches, std::int64_t now_ms) {
  if (batches.empty()) return Status::Ok();
  if (resync_ids_) {
    // A COMMIT whose outcome is unknown may have left pending rows this
    // collector has no memory of: the next flush rebuilds everything up to
    // the newest from the raw rows.
    DP_ASSIGN_OR_RETURN(auto top, conn_->Query("own pending rollups",
                                               "SELECT coalesce(max(pending_id), 0) FROM "
                                               "rollup_pending WHERE collector_id=$1",
                                               {pg::Int(collector_id_)}));
    std::lock_guard lock(pending_mu_);
    last_own_id_ = std::max(last_own_id_, top.Int(0, 0));
    rollups_need_replay_ = true;
    resync_ids_ = false;
  }
  DP_RETURN_IF_ERROR(EnsurePartition(*conn_, now_ms));
  // The group's streams, in key order: the order their rows are locked in.
  std::map<std::pair<std::int64_t, std::int64_t>, std::uint64_t> marks;
  for (const auto& b : batches) marks.try_emplace({b.stream.customer_id, b.stream.stream_id}, 0);
  std::vector<std::int64_t> lock_c, lock_s;
  for (const auto& [key, mark] : marks) {
    lock_c.push_back(key.first);
    lock_s.push_back(key.second);
  }
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  DP_ASSIGN_OR_RETURN(
      auto locked,
      conn_->Query("lock streams",
                   "SELECT s.customer_id, s.stream_id, s.last_seq FROM streams s JOIN "
                   "unnest($1::bigint[], $2::bigint[]) AS v(c, st) ON s.customer_id = v.c AND "
                   "s.stream_id = v.st ORDER BY s.customer_id, s.stream_id FOR UPDATE OF s",
                   {pg::IntArray(lock_c), pg::IntArray(lock_s)}));
  if (locked.size() != static_cast<int>(marks.size())) {
    return Internal("a batch names a stream that is not registered");
  }
  for (int i = 0; i < locked.size(); ++i) {
    marks[{locked.Int(i, 0), locked.Int(i, 1)}] = static_cast<std::uint64_t>(locked.Int(i, 2));
  }
  const auto before = marks;

  struct Range {
    std::uint64_t from = 0, to = 0;
  };
  std::map<std::pair<std::int64_t, std::int64_t>, Range> ranges;
  std::vector<std::pair<const StreamInfo*, const IncomingReport*>> stored;
  std::string copy;
  const std::string received = pg::Int(now_ms);
  for (auto& b : batches) {
    const StreamInfo& s = b.stream;
    std::uint64_t& mark = marks[{s.customer_id, s.stream_id}];
    b.duplicates = 0;
    for (const auto& in : b.reports) {
      const std::uint64_t seq = in.report.seq();
      if (seq <= mark) {
        ++b.duplicates;
        continue;
      }
      fmt::format_to(std::back_inserter(copy), "{}\t{}\t{}\t{}\t{}\t{}\t", s.customer_id,
                     s.endpoint_id, s.stream_id, seq, in.report.observed_at_unix_ms(), now_ms);
      pg::AppendCopyBytea(&copy, in.bytes);
      fmt::format_to(std::back_inserter(copy), "\t{}\n", Crc32c(0, in.bytes));
      auto& r = ranges[{s.customer_id, s.stream_id}];
      if (r.from == 0) r.from = seq;
      r.to = seq;
      stored.emplace_back(&s, &in);
      mark = seq;
    }
    b.acked_through = mark;
  }
  if (!stored.empty()) {
    DP_RETURN_IF_ERROR(conn_->CopyIn("store reports",
                                     "COPY reports(customer_id, endpoint_id, stream_id, seq, "
                                     "observed_at_ms, received_at_ms, body, body_crc) FROM STDIN",
                                     copy));
    std::vector<std::int64_t> uc, us, uq;
    for (const auto& [key, mark] : marks) {
      if (mark == before.at(key)) continue;
      uc.push_back(key.first);
      us.push_back(key.second);
      uq.push_back(static_cast<std::int64_t>(mark));
    }
    DP_RETURN_IF_ERROR(conn_
                           ->Query("advance watermarks",
                                   "UPDATE streams s SET last_seq = v.q FROM unnest($1::bigint[], "
                                   "$2::bigint[], $3::bigint[]) AS v(c, st, q) WHERE "
                                   "s.customer_id = v.c AND s.stream_id = v.st",
                                   {pg::IntArray(uc), pg::IntArray(us), pg::IntArray(uq)})
                           .status());
    std::vector<std::int64_t> pc, ps, pf, pt;
    for (const auto& [key, r] : ranges) {
      pc.push_back(key.first);
      ps.push_back(key.second);
      pf.push_back(static_cast<std::int64_t>(r.from));
      pt.push_back(static_cast<std::int64_t>(r.to));
    }
    DP_ASSIGN_OR_RETURN(
        auto ids, conn_->Query("record pending rollups",
                               "INSERT INTO rollup_pending(customer_id, collector_id, stream_id, "
                               "seq_from, seq_to, received_at_ms) SELECT c, $1, st, f, t, $6 FROM "
                               "unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS "
                               "v(c, st, f, t) RETURNING customer_id, pending_id",
                               {pg::Int(collector_id_), pg::IntArray(pc), pg::IntArray(ps),
                                pg::IntArray(pf), pg::IntArray(pt), received}));
    if (Status s = tx.Commit(); !s.ok()) {
      // Committed or not, nobody can tell: rebuild this collector's rollups
      // from what the store holds.
      resync_ids_ = true;
      return s;
    }
    std::lock_guard lock(pending_mu_);
    for (int i = 0; i < ids.size(); ++i) {
      pending_customers_.push_back(ids.Int(i, 0));
      pending_ids_.push_back(ids.Int(i, 1));
      last_own_id_ = std::max(last_own_id_, ids.Int(i, 1));
    }
    for (const auto& [stream, in] : stored) {
      pending_.AddReport(stream->customer_id, stream->endpoint_id, in->report, in->bytes);
    }
    return Status::Ok();
  }
  return tx.Commit();
}

// ---- rollups

Status PgStore::ApplyRollups(pg::Connection& db, const RollupAccumulator& acc) {
  std::vector<RollupRow> all = acc.Expand();
  SortRollupRows(&all);
  // Counts and sums add up in SQL, in one statement; rows with a histogram
  // are merged in the collector under their locks. Every flush takes the
  // first kind's locks before the second's, each in key order: no deadlock.
  std::vector<RollupRow> rows;
  {
    std::vector<std::int64_t> c, g, e, b, m, n;
    std::vector<std::optional<std::string>> sums;
    for (auto& r : all) {
      if (!r.cell.hist.empty()) {
        rows.push_back(std::move(r));
        continue;
      }
      c.push_back(r.customer_id);
      g.push_back(static_cast<int>(r.grain));
      e.push_back(r.endpoint_id);
      b.push_back(r.bucket_start_ms);
      m.push_back(static_cast<int>(r.metric));
      n.push_back(r.cell.count);
      sums.emplace_back(fmt::format("{}", r.cell.sum));
    }
    if (!c.empty()) {
      DP_RETURN_IF_ERROR(
          db.Query("rollup counts",
                   "INSERT INTO rollups AS r (customer_id, grain, endpoint_id, bucket_start_ms, "
                   "metric, count, sum) SELECT * FROM unnest($1::bigint[], $2::smallint[], "
                   "$3::bigint[], $4::bigint[], $5::smallint[], $6::bigint[], $7::float8[]) ON "
                   "CONFLICT (customer_id, grain, endpoint_id, bucket_start_ms, metric) DO UPDATE "
                   "SET count = r.count + excluded.count, sum = r.sum + excluded.sum",
                   {pg::IntArray(c), pg::IntArray(g), pg::IntArray(e), pg::IntArray(b),
                    pg::IntArray(m), pg::IntArray(n), pg::ArrayLiteral(sums)})
              .status());
    }
  }
  if (!rows.empty()) {
    std::vector<std::int64_t> c, g, e, b, m;
    for (const auto& r : rows) {
      c.push_back(r.customer_id);
      g.push_back(static_cast<int>(r.grain));
      e.push_back(r.endpoint_id);
      b.push_back(r.bucket_start_ms);
      m.push_back(static_cast<int>(r.metric));
    }
    const Params keys{pg::IntArray(c), pg::IntArray(g), pg::IntArray(e), pg::IntArray(b),
                      pg::IntArray(m)};
    constexpr const char* kKeys =
        "unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[], $5::smallint[]) AS "
        "v(c, g, e, b, m)";
    constexpr const char* kMatch =
        "r.customer_id = v.c AND r.grain = v.g AND r.endpoint_id = v.e AND r.bucket_start_ms = "
        "v.b AND r.metric = v.m";
    // Every key exists, then every row is locked in key order: histograms are
    // merged here, under the lock, whatever another collector does meanwhile.
    DP_RETURN_IF_ERROR(db.Query("rollup keys",
                                fmt::format("INSERT INTO rollups(customer_id, grain, "
                                            "endpoint_id, bucket_start_ms, metric, count, "
                                            "sum) SELECT c, g, e, b, m, 0, 0 FROM {} ORDER BY "
                                            "c, g, e, b, m ON CONFLICT DO NOTHING",
                                            kKeys),
                                keys)
                           .status());
    DP_ASSIGN_OR_RETURN(auto cur, db.Query("lock rollups",
                                           fmt::format("SELECT r.hist, r.customer_id, r.grain, "
                                                       "r.endpoint_id, r.bucket_start_ms, "
                                                       "r.metric FROM rollups r JOIN {} "
                                                       "ON {} ORDER BY v.c, v.g, v.e, v.b, "
                                                       "v.m FOR UPDATE OF r",
                                                       kKeys, kMatch),
                                           keys));
    if (cur.size() != static_cast<int>(rows.size())) return Internal("rollup rows vanished");
    std::vector<std::int64_t> n;
    std::vector<std::optional<std::string>> sums, hists;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& cell = rows[i].cell;
      n.push_back(cell.count);
      sums.push_back(fmt::format("{}", cell.sum));
      if (cell.hist.empty()) {
        hists.emplace_back(std::nullopt);
        continue;
      }
      SparseHistogram merged;
      const int row = static_cast<int>(i);
      const RollupRow& want = rows[i];
      if (cur.Int(row, 1) != want.customer_id || cur.Int(row, 2) != static_cast<int>(want.grain) ||
          cur.Int(row, 3) != want.endpoint_id || cur.Int(row, 4) != want.bucket_start_ms ||
          cur.Int(row, 5) != static_cast<int>(want.metric)) {
        return Internal("rollup rows came back out of key order");
      }
      if (!cur.IsNull(row, 0)) {
        auto old = SparseHistogram::Decode(cur.Bytes(row, 0));
        if (!old.ok()) {
          return DataLoss(
              fmt::format("rollup (grain {}, customer {}, endpoint {}, bucket {}, "
                          "metric {}): its histogram does not decode",
                          static_cast<int>(rows[i].grain), rows[i].customer_id, rows[i].endpoint_id,
                          rows[i].bucket_start_ms, static_cast<int>(rows[i].metric)));
        }
        merged = std::move(*old);
      }
      merged.Merge(cell.hist);
      hists.emplace_back(pg::Bytea(merged.Encode()));
    }
    Params update = keys;
    update.push_back(pg::IntArray(n));
    update.push_back(pg::ArrayLiteral(sums));
    update.push_back(pg::ArrayLiteral(hists));
    DP_RETURN_IF_ERROR(
        db.Query("update rollups",
                 "UPDATE rollups r SET count = r.count + v.n, sum = r.sum + v.s, hist = "
                 "coalesce(v.h, r.hist) FROM unnest($1::bigint[], $2::smallint[], "
                 "$3::bigint[], $4::bigint[], $5::smallint[], $6::bigint[], "
                 "$7::float8[], $8::bytea[]) AS v(c, g, e, b, m, n, s, h) WHERE "
                 "r.customer_id = v.c AND r.grain = v.g AND r.endpoint_id = v.e AND "
                 "r.bucket_start_ms = v.b AND r.metric = v.m",
                 update)
            .status());
  }

  // Device instances (the map is in key order), then reconnect-only events.
  std::vector<std::vector<std::optional<std::string>>> cols(21);
  std::vector<std::int64_t> rc, re, rn;
  std::vector<std::optional<std::string>> rk;
  for (const auto& [key, inst] : acc.instances()) {
    if (inst.observations == 0) {
      rc.push_back(inst.customer_id);
      re.push_back(inst.endpoint_id);
      rk.emplace_back(inst.device_key);
      rn.push_back(inst.reconnects);
      continue;
    }
    const auto& s = inst.last;
    const std::optional<std::string> values[21] = {
        pg::Int(inst.customer_id),
        pg::Int(inst.endpoint_id),
        inst.device_key,
        pg::Int(s.bus()),
        pg::Int(s.vendor_id()),
        pg::Int(s.product_id()),
        pg::Int(s.device_class()),
        JoinInts(s.interface_classes()),
        Opt(s.name()),
        JoinStrings(s.drivers()),
        pg::Int(s.redirected() ? 1 : 0),
        s.has_ieee1284_id() ? std::optional<std::string>(s.ieee1284_id()) : std::nullopt,
        pg::Int(s.state()),
        Opt(s.reason()),
        pg::Int(inst.first_seen_ms),
        pg::Int(inst.last_seen_ms),
        pg::Int(inst.last_fail_ms),
        pg::Int(inst.observations),
        pg::Int(inst.fail_observations),
        pg::Int(inst.reconnects),
        s.has_catalog() ? std::optional<std::string>(pg::Bytea(s.catalog().SerializeAsString()))
                        : std::nullopt,
    };
    for (int i = 0; i < 21; ++i) cols[static_cast<std::size_t>(i)].push_back(values[i]);
  }
  if (!cols[0].empty()) {
    Params p;
    for (const auto& col : cols) p.push_back(pg::ArrayLiteral(col));
    auto newer = [](const char* col) {
      return fmt::format(
          "{0} = CASE WHEN excluded.last_seen_ms >= p.last_seen_ms THEN "
          "excluded.{0} ELSE p.{0} END",
          col);
    };
    std::string set;
    for (const char* col :
         {"bus", "vendor_id", "product_id", "device_class", "interface_classes", "name", "drivers",
          "redirected", "ieee1284_id", "last_state", "last_reason", "catalog"}) {
      set += newer(col) + ", ";
    }
    DP_RETURN_IF_ERROR(
        db.Query("device instances",
                 "INSERT INTO peripheral_instances AS p (customer_id, endpoint_id, device_key, "
                 "bus, vendor_id, product_id, device_class, interface_classes, name, drivers, "
                 "redirected, ieee1284_id, last_state, last_reason, first_seen_ms, "
                 "last_seen_ms, last_fail_ms, observations, fail_observations, reconnects, "
                 "catalog) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], "
                 "$4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], "
                 "$9::text[], $10::text[], $11::bigint[], $12::text[], $13::bigint[], "
                 "$14::text[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], "
                 "$19::bigint[], $20::bigint[], $21::bytea[]) ON CONFLICT (customer_id, "
                 "endpoint_id, device_key) DO UPDATE SET " +
                     set +
                     "first_seen_ms = least(p.first_seen_ms, excluded.first_seen_ms), "
                     "last_seen_ms = greatest(p.last_seen_ms, excluded.last_seen_ms), "
                     "last_fail_ms = greatest(p.last_fail_ms, excluded.last_fail_ms), "
                     "observations = p.observations + excluded.observations, "
                     "fail_observations = p.fail_observations + excluded.fail_observations, "
                     "reconnects = p.reconnects + excluded.reconnects",
                 p)
            .status());
  }
  if (!rc.empty()) {
    DP_RETURN_IF_ERROR(
        db.Query("device reconnects",
                 "UPDATE peripheral_instances p SET reconnects = p.reconnects "
                 "+ v.n FROM unnest($1::bigint[], $2::bigint[], $3::text[], "
                 "$4::bigint[]) AS v(c, e, k, n) WHERE p.customer_id = v.c "
                 "AND p.endpoint_id = v.e AND p.device_key = v.k",
                 {pg::IntArray(rc), pg::IntArray(re), pg::ArrayLiteral(rk), pg::IntArray(rn)})
            .status());
  }

  std::vector<std::tuple<std::int64_t, std::int64_t, const RollupAccumulator::Seen*>> seen;
  for (const auto& [endpoint, s] : acc.endpoints_seen()) {
    seen.emplace_back(s.customer_id, endpoint, &s);
  }
  if (!seen.empty()) {
    std::sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
      return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
    });
    std::vector<std::int64_t> sc, se, st;
    std::vector<std::optional<std::string>> sr;
    for (const auto& [c, e, t] : seen) {
      sc.push_back(c);
      se.push_back(e);
      st.push_back(t->last_ms);
      sr.emplace_back(pg::Bytea(t->last_report));
    }
    DP_RETURN_IF_ERROR(
        db.Query("endpoints seen",
                 "UPDATE endpoints e SET last_report = CASE WHEN v.t >= "
                 "e.last_seen_ms THEN v.r ELSE e.last_report END, "
                 "last_seen_ms = greatest(e.last_seen_ms, v.t) FROM "
                 "unnest($1::bigint[], $2::bigint[], $3::bigint[], "
                 "$4::bytea[]) AS v(c, id, t, r) WHERE e.customer_id = v.c "
                 "AND e.endpoint_id = v.id",
                 {pg::IntArray(sc), pg::IntArray(se), pg::IntArray(st), pg::ArrayLiteral(sr)})
            .status());
  }
  return Status::Ok();
}

void PgStore::CountFlush(const Status& s, std::chrono::steady_clock::time_point t0) {
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

Status PgStore::FlushOwn(pg::Connection& db) {
  RollupAccumulator acc;
  std::vector<std::int64_t> customers, ids;
  bool replay = false;
  std::int64_t upto = 0;
  {
    std::lock_guard lock(pending_mu_);
    replay = rollups_need_replay_;
    if (replay) {
      replay_reports_ += pending_.reports();
      pending_.Clear();
      pending_customers_.clear();
      pending_ids_.clear();
      rollups_need_replay_ = false;
      upto = last_own_id_;
    } else {
      acc.Merge(std::move(pending_));
      customers.swap(pending_customers_);
      ids.swap(pending_ids_);
      flushing_reports_ = acc.reports();
    }
  }
  auto failed = [&](Status s) {
    std::lock_guard lock(pending_mu_);
    rollups_need_replay_ = true;
    replay_reports_ += flushing_reports_;
    flushing_reports_ = 0;
    return s;
  };
  if (replay) {
    // Everything of this collector's up to `upto` from the raw rows; what it
    // commits meanwhile has ids above and stays in memory.
    for (;;) {
      auto n = FinishFromRaw(db, /*own=*/true, 2000, upto);
      if (!n.ok()) return failed(n.status());
      if (*n == 0) {
        std::lock_guard lock(pending_mu_);
        replay_reports_ = 0;
        return Status::Ok();
      }
    }
  }
  if (ids.empty()) return Status::Ok();
  const auto t0 = std::chrono::steady_clock::now();
  bool taken = false;
  Status s = [&]() -> Status {
    DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(&db));
    DP_ASSIGN_OR_RETURN(auto gone,
                        db.Query("claim pending rollups",
                                 "DELETE FROM rollup_pending p USING unnest($1::bigint[], "
                                 "$2::bigint[]) AS v(c, id) WHERE p.customer_id = v.c AND "
                                 "p.pending_id = v.id RETURNING p.pending_id",
                                 {pg::IntArray(customers), pg::IntArray(ids)}));
    if (gone.size() != static_cast<int>(ids.size())) {
      // Another collector took some for ours (it thought this one dead):
      // what is left is rebuilt from the raw rows.
      taken = true;
      return Status::Ok();
    }
    DP_RETURN_IF_ERROR(ApplyRollups(db, acc));
    return tx.Commit();
  }();
  CountFlush(s, t0);
  if (!s.ok()) return failed(s);
  if (taken) {
    (void)failed(Status::Ok());
    return FlushOwn(db);
  }
  std::lock_guard lock(pending_mu_);
  flushing_reports_ = 0;
  return Status::Ok();
}

Result<std::int64_t> PgStore::FinishFromRaw(pg::Connection& db, bool own, std::int64_t limit,
                                            std::int64_t own_upto) {
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t finished = 0;
  std::int64_t replayed = 0;
  Status s = [&]() -> Status {
    DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(&db));
    const std::string lease_start = pg::Int(WallMs() - options_.collector_lease.count());
    DP_ASSIGN_OR_RETURN(
        auto recs,
        own ? db.Query("own pending rollups",
                       "SELECT customer_id, pending_id, stream_id, seq_from, seq_to, "
                       "received_at_ms FROM rollup_pending WHERE collector_id = $1 AND "
                       "pending_id <= $3 ORDER BY customer_id, pending_id LIMIT $2 FOR "
                       "UPDATE SKIP LOCKED",
                       {pg::Int(collector_id_), pg::Int(limit), pg::Int(own_upto)})
            : db.Query("orphaned pending rollups",
                       "SELECT customer_id, pending_id, stream_id, seq_from, seq_to, "
                       "received_at_ms FROM rollup_pending WHERE collector_id <> $1 AND "
                       "collector_id NOT IN (SELECT collector_id FROM collectors WHERE "
                       "heartbeat_ms >= $3) ORDER BY customer_id, pending_id LIMIT $2 FOR "
                       "UPDATE SKIP LOCKED",
                       {pg::Int(collector_id_), pg::Int(limit), lease_start}));
    if (recs.size() == 0) return Status::Ok();
    std::vector<std::int64_t> c, id, st, f, t, at;
    for (int i = 0; i < recs.size(); ++i) {
      c.push_back(recs.Int(i, 0));
      id.push_back(recs.Int(i, 1));
      st.push_back(recs.Int(i, 2));
      f.push_back(recs.Int(i, 3));
      t.push_back(recs.Int(i, 4));
      at.push_back(recs.Int(i, 5));
    }
    DP_ASSIGN_OR_RETURN(
        auto raw, db.Query("pending raw reports",
                           "SELECT r.customer_id, r.endpoint_id, r.stream_id, r.seq, r.body, "
                           "r.body_crc FROM reports r JOIN unnest($1::bigint[], "
                           "$2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(c, "
                           "st, f, t, at) ON r.customer_id = v.c AND r.stream_id = v.st AND "
                           "r.seq BETWEEN v.f AND v.t AND r.received_at_ms = v.at",
                           {pg::IntArray(c), pg::IntArray(st), pg::IntArray(f), pg::IntArray(t),
                            pg::IntArray(at)}));
    RollupAccumulator acc;
    for (int i = 0; i < raw.size(); ++i) {
      v1::Report report;
      const std::int64_t crc = raw.IsNull(i, 5) ? 0 : raw.Int(i, 5);
      const std::string why =
          DecodeRawBody(raw.Bytes(i, 4), raw.IsNull(i, 5) ? nullptr : &crc, &report);
      if (!why.empty()) {
        std::uint64_t n = 0;
        {
          std::lock_guard lock(mu_);
          n = ++stats_.damaged_rows;
        }
        if (n <= 20) {
          spdlog::error("store {}: {}; left out of rollups and scores", name_,
                        DescribeDamagedRow(0, raw.Int(i, 0), raw.Int(i, 1), raw.Int(i, 2),
                                           raw.Int(i, 3), why));
        }
        continue;
      }
      acc.AddReport(raw.Int(i, 0), raw.Int(i, 1), report);
      ++replayed;
    }
    DP_RETURN_IF_ERROR(db.Query("finish pending rollups",
                                "DELETE FROM rollup_pending p USING unnest($1::bigint[], "
                                "$2::bigint[]) AS v(c, id) WHERE p.customer_id = v.c AND "
                                "p.pending_id = v.id",
                                {pg::IntArray(c), pg::IntArray(id)})
                           .status());
    DP_RETURN_IF_ERROR(ApplyRollups(db, acc));
    DP_RETURN_IF_ERROR(tx.Commit());
    finished = recs.size();
    return Status::Ok();
  }();
  // Counted when there was something to finish: an idle collector's counters stand still.
  if (finished > 0 || !s.ok()) CountFlush(s, t0);
  if (!s.ok()) return s;
  if (finished > 0) {
    {
      std::lock_guard lock(mu_);
      stats_.reports_replayed += static_cast<std::uint64_t>(replayed);
    }
    spdlog::info("store {}: rolled up {} of {} {}", name_, Counted(replayed, "report"),
                 Counted(finished, "batch", "batches"),
                 own ? "from the stored rows" : "left pending by a collector that stopped");
  }
  return finished;
}

Status PgStore::FlushRollups(std::chrono::steady_clock::time_point deadline) {
  StopMaintenance();
  const auto left_over = [&] {
    return Status(Code::kDeadlineExceeded,
                  fmt::format("the rollups of {} reports are left to the other collectors or "
                              "the next start",
                              stats().rollup_backlog_reports));
  };
  const auto past = [&] { return std::chrono::steady_clock::now() >= deadline; };
  if (past()) return stats().rollup_backlog_reports > 0 ? left_over() : Status::Ok();
  // Past the deadline the statement running is cancelled and its transaction
  // rolled back: the pending records stay, and once this collector has
  // deregistered (at close) any other collector, or the next to start,
  // finishes them from the stored rows.
  pg::CancelAt bound(*conn_, deadline);
  if (Status s = FlushOwn(*conn_); !s.ok()) return bound.fired() ? left_over() : s;
  // Then what stopped collectors left, while there is time: theirs, not this
  // one's, so running out of it is no failure.
  while (!past()) {
    auto n = FinishFromRaw(*conn_, /*own=*/false, 2000, 0);
    if (!n.ok()) return bound.fired() ? Status::Ok() : n.status();
    if (*n == 0) break;
  }
  return Status::Ok();
}

Status PgStore::ApplyRetention(std::int64_t now_ms) { return RetentionOn(*conn_, now_ms); }

std::chrono::steady_clock::time_point PgStore::MaintainOn(pg::Connection& db, std::int64_t now_ms) {
  const auto now = std::chrono::steady_clock::now();
  if (now >= next_heartbeat_) {
    Status s = Heartbeat(db, now_ms);
    if (s.ok()) s = EnsurePartition(db, now_ms + kDayMs);
    if (!s.ok()) spdlog::warn("store {}: {}", name_, s.message());
    next_heartbeat_ = now + std::max(options_.collector_lease / 6, std::chrono::milliseconds(100));
  }
  if (now >= next_round_) {
    if (Status s = FlushOwn(db); !s.ok()) {
      if (flush_faults_.Note("rollup flushes failed (will retry)", s.message(), now)) {
        spdlog::error("rollup flush failed (will retry): {}", s.ToString());
      }
    }
    if (auto n = FinishFromRaw(db, /*own=*/false, 2000, 0); !n.ok()) {
      if (flush_faults_.Note("rollups of stopped collectors failed (will retry)",
                             n.status().message(), now)) {
        spdlog::error("rollups of stopped collectors (will retry): {}", n.status().ToString());
      }
    }
    for (const auto& line : flush_faults_.Due(now)) {
      spdlog::error("store {}: {}", name_, line.Text());
    }
    next_round_ = std::chrono::steady_clock::now() + options_.rollup_flush_interval;
  }
  if (now >= next_retention_) {
    if (Status s = RetentionOn(db, now_ms); !s.ok()) {
      spdlog::warn("retention pass failed: {}", s.ToString());
    }
    next_retention_ = now + options_.retention_interval;
  }
  return std::min({next_heartbeat_, next_round_, next_retention_});
}

std::chrono::steady_clock::time_point PgStore::Maintain(std::int64_t now_ms) {
  // A serving store maintains itself on its own thread.
  if (maint_conn_ != nullptr) return std::chrono::steady_clock::now() + std::chrono::hours(1);
  return MaintainOn(*conn_, now_ms);
}

void PgStore::RunMaintenance() {
  std::unique_lock lock(maint_mu_);
  while (!maint_stopping_) {
    lock.unlock();
    const auto next = MaintainOn(*maint_conn_, WallMs());
    lock.lock();
    maint_cv_.wait_until(lock, next, [&] { return maint_stopping_; });
  }
}

void PgStore::StopMaintenance() {
  {
    std::lock_guard lock(maint_mu_);
    maint_stopping_ = true;
  }
  maint_cv_.notify_all();
  if (maint_thread_.joinable()) maint_thread_.join();
}

Status PgStore::RetentionOn(pg::Connection& db, std::int64_t now_ms) {
  // One collector at a time; the others skip the pass.
  DP_RETURN_IF_ERROR(db.EnsureConnected());
  DP_ASSIGN_OR_RETURN(
      auto got,
      db.Query("retention lock", fmt::format("SELECT pg_try_advisory_lock({})", kRetentionLock)));
  if (got.Text(0, 0) != "t") return Status::Ok();
  Status s = [&]() -> Status {
    {
      std::lock_guard lock(mu_);
      stats_.retention_passes += 1;
    }
    const std::int64_t raw_cutoff = now_ms - options_.raw_retention_days * kDayMs;
    // A partition goes once it is past retention and every batch in it is in
    // the rollups.
    DP_ASSIGN_OR_RETURN(auto oldest, db.Query("oldest pending",
                                              "SELECT min(received_at_ms) FROM "
                                              "rollup_pending"));
    const std::int64_t pending_from = oldest.IsNull(0, 0) ? INT64_MAX : oldest.Int(0, 0);
    DP_ASSIGN_OR_RETURN(auto parts, db.Query("partitions",
                                             "SELECT c.relname FROM pg_inherits i JOIN "
                                             "pg_class c ON c.oid = i.inhrelid WHERE "
                                             "i.inhparent = 'reports'::regclass"));
    for (int i = 0; i < parts.size(); ++i) {
      const std::string part(parts.Text(i, 0));
      if (!part.starts_with("reports_d")) continue;
      const std::int64_t day = std::strtoll(part.c_str() + 9, nullptr, 10);
      const std::int64_t upper = (day + 1) * kDayMs;
      if (upper > raw_cutoff || upper > pending_from) continue;
      // Detached concurrently, so that commits into today's partition never wait.
      DP_RETURN_IF_ERROR(
          db.Exec(fmt::format("ALTER TABLE reports DETACH PARTITION {} CONCURRENTLY", part)));
      DP_RETURN_IF_ERROR(db.Exec(fmt::format("DROP TABLE {}", part)));
      {
        std::lock_guard lock(pending_mu_);
        partitions_.erase(day);
      }
      spdlog::info("store {}: dropped the raw reports of day {} (past {} days)", name_, day,
                   options_.raw_retention_days);
    }
    DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(&db));
    const std::string q = "DELETE FROM rollups WHERE grain=$1 AND bucket_start_ms < $2";
    DP_RETURN_IF_ERROR(
        db.Query("rollup retention", q,
                 {pg::Int(1), pg::Int(now_ms - options_.hourly_retention_days * kDayMs)})
            .status());
    DP_RETURN_IF_ERROR(
        db.Query("rollup retention", q,
                 {pg::Int(2), pg::Int(now_ms - options_.daily_retention_days * kDayMs)})
            .status());
    DP_RETURN_IF_ERROR(db.Query("stopped collectors",
                                "DELETE FROM collectors c WHERE heartbeat_ms < $1 AND NOT "
                                "EXISTS (SELECT 1 FROM rollup_pending p WHERE p.collector_id "
                                "= c.collector_id)",
                                {pg::Int(now_ms - kDayMs)})
                           .status());
    return tx.Commit();
  }();
  (void)db.Exec(fmt::format("SELECT pg_advisory_unlock({})", kRetentionLock));
  return s;
}

// ---- the read side

Result<std::vector<Customer>> PgStore::ListCustomers() {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("customers",
                                              "SELECT customer_id, name FROM "
                                              "customers ORDER BY name"));
  std::vector<Customer> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({rows.Int(i, 0), std::string(rows.Text(i, 1))});
  }
  return out;
}

Result<scoring::WindowRollup> PgStore::LoadWindow(std::int64_t customer_id, std::int64_t from_ms,
                                                  std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  const Params p{pg::Int(customer_id), pg::Int(from_ms), pg::Int(to_ms)};
  scoring::WindowRollup w;
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("window",
                                              "SELECT metric, count, sum, hist FROM rollups "
                                              "WHERE customer_id=$1 AND grain=2 AND "
                                              "endpoint_id=0 AND bucket_start_ms >= $2 AND "
                                              "bucket_start_ms < $3",
                                              p));
  for (int i = 0; i < rows.size(); ++i) {
    SparseHistogram hist;
    if (!rows.IsNull(i, 3)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(rows.Bytes(i, 3)));
    }
    AddToWindow(static_cast<Metric>(rows.Int(i, 0)), rows.Int(i, 1), rows.Double(i, 2), hist, &w);
  }
  DP_ASSIGN_OR_RETURN(auto ep, conn_->Query("window endpoints",
                                            "SELECT count(*) FROM endpoints WHERE customer_id=$1 "
                                            "AND last_seen_ms >= $2 AND first_seen_ms < $3",
                                            p));
  w.endpoints = ep.Int(0, 0);
  DP_ASSIGN_OR_RETURN(auto pi, conn_->Query("window devices",
                                            "SELECT count(*) FILTER (WHERE last_fail_ms < $2), "
                                            "count(*) FILTER (WHERE last_fail_ms >= $2) FROM "
                                            "peripheral_instances WHERE customer_id=$1 AND "
                                            "last_seen_ms >= $2 AND observations > 0",
                                            {pg::Int(customer_id), pg::Int(from_ms)}));
  w.peripherals_working = pi.Int(0, 0);
  w.peripherals_failed = pi.Int(0, 1);
  return w;
}

Result<std::map<std::int64_t, scoring::WindowRollup>> PgStore::LoadWindows(std::int64_t from_ms,
                                                                           std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  std::map<std::int64_t, scoring::WindowRollup> out;
  // Customer by customer through the rollups' key, never over endpoint rows
  // (and on Citus each customer's rows on its own shard). OFFSET 0 keeps the
  // planner from flattening the lateral subquery into a scan of all rollups.
  DP_ASSIGN_OR_RETURN(
      auto rows,
      conn_->Query("windows",
                   "SELECT c.customer_id, r.metric, r.count, r.sum, r.hist FROM customers c "
                   "CROSS JOIN LATERAL (SELECT metric, count, sum, hist FROM rollups WHERE "
                   "customer_id=c.customer_id AND grain=2 AND endpoint_id=0 AND "
                   "bucket_start_ms >= $1 AND bucket_start_ms < $2 OFFSET 0) r",
                   {pg::Int(from_ms), pg::Int(to_ms)}));
  for (int i = 0; i < rows.size(); ++i) {
    SparseHistogram hist;
    if (!rows.IsNull(i, 4)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(rows.Bytes(i, 4)));
    }
    AddToWindow(static_cast<Metric>(rows.Int(i, 1)), rows.Int(i, 2), rows.Double(i, 3), hist,
                &out[rows.Int(i, 0)]);
  }
  DP_ASSIGN_OR_RETURN(auto ep, conn_->Query("windows endpoints",
                                            "SELECT customer_id, count(*) FROM endpoints WHERE "
                                            "last_seen_ms >= $1 AND first_seen_ms < $2 GROUP BY "
                                            "customer_id",
                                            {pg::Int(from_ms), pg::Int(to_ms)}));
  for (int i = 0; i < ep.size(); ++i) out[ep.Int(i, 0)].endpoints = ep.Int(i, 1);
  DP_ASSIGN_OR_RETURN(auto pi, conn_->Query("windows devices",
                                            "SELECT customer_id, count(*) FILTER (WHERE "
                                            "last_fail_ms < $1), count(*) FILTER (WHERE "
                                            "last_fail_ms >= $1) FROM peripheral_instances WHERE "
                                            "last_seen_ms >= $1 AND observations > 0 GROUP BY "
                                            "customer_id",
                                            {pg::Int(from_ms)}));
  for (int i = 0; i < pi.size(); ++i) {
    scoring::WindowRollup& w = out[pi.Int(i, 0)];
    w.peripherals_working = pi.Int(i, 1);
    w.peripherals_failed = pi.Int(i, 2);
  }
  return out;
}

Result<std::vector<PeripheralInstance>> PgStore::LoadPeripheralInstances(std::int64_t customer_id,
                                                                         std::int64_t from_ms) {
  return ReadPeripheralInstances(customer_id, std::nullopt, from_ms);
}

Result<std::vector<PeripheralInstance>> PgStore::LoadEndpointPeripheralInstances(
    std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms) {
  return ReadPeripheralInstances(customer_id, endpoint_id, from_ms);
}

Result<std::vector<PeripheralInstance>> PgStore::ReadPeripheralInstances(
    std::int64_t customer_id, std::optional<std::int64_t> endpoint_id, std::int64_t from_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  pg::Params params = {pg::Int(customer_id), pg::Int(from_ms)};
  if (endpoint_id) params.push_back(pg::Int(*endpoint_id));
  DP_ASSIGN_OR_RETURN(
      auto rows,
      conn_->Query("device instances",
                   std::string("SELECT endpoint_id, device_key, bus, vendor_id, product_id, "
                               "device_class, interface_classes, name, drivers, redirected, "
                               "ieee1284_id, last_state, last_reason, last_seen_ms, last_fail_ms, "
                               "observations, fail_observations, reconnects, catalog, "
                               "first_seen_ms FROM peripheral_instances WHERE customer_id=$1 AND "
                               "last_seen_ms >= $2 AND observations > 0") +
                       (endpoint_id ? " AND endpoint_id=$3" : "") +
                       " ORDER BY endpoint_id, device_key COLLATE \"C\"",
                   params));
  std::vector<PeripheralInstance> out;
  for (int i = 0; i < rows.size(); ++i) {
    PeripheralInstance p;
    p.customer_id = customer_id;
    p.endpoint_id = rows.Int(i, 0);
    p.device_key = std::string(rows.Text(i, 1));
    auto& s = p.last;
    s.set_bus(static_cast<v1::PeripheralBus>(rows.Int(i, 2)));
    s.set_vendor_id(static_cast<std::uint32_t>(rows.Int(i, 3)));
    s.set_product_id(static_cast<std::uint32_t>(rows.Int(i, 4)));
    s.set_device_class(static_cast<std::uint32_t>(rows.Int(i, 5)));
    SetInterfaceClasses(rows.Text(i, 6), &s);
    s.set_name(std::string(rows.Text(i, 7)));
    for (auto& d : SplitList(rows.Text(i, 8))) s.add_drivers(std::move(d));
    s.set_redirected(rows.Int(i, 9) != 0);
    if (!rows.IsNull(i, 10)) s.set_ieee1284_id(std::string(rows.Text(i, 10)));
    s.set_state(static_cast<v1::DeviceState>(rows.Int(i, 11)));
    s.set_reason(std::string(rows.Text(i, 12)));
    p.last_seen_ms = rows.Int(i, 13);
    p.last_fail_ms = rows.Int(i, 14);
    p.observations = rows.Int(i, 15);
    p.fail_observations = rows.Int(i, 16);
    p.reconnects = rows.Int(i, 17);
    p.first_seen_ms = rows.Int(i, 19);
    if (!rows.IsNull(i, 18) && !s.mutable_catalog()->ParseFromString(rows.Bytes(i, 18))) {
      return DataLoss("peripheral instance " + p.device_key + " of endpoint " +
                      std::to_string(p.endpoint_id) + " has a corrupt catalog verdict");
    }
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::int64_t> PgStore::CountRawReports() {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("count reports", "SELECT count(*) FROM reports"));
  return rows.Int(0, 0);
}

namespace {

constexpr const char* kEndpointColumns =
    "endpoint_id, customer_id, agent_id, coalesce(hostname, ''), coalesce(os, ''), "
    "coalesce(kernel, ''), coalesce(agent_version, ''), coalesce(role, 0), coalesce(site, ''), "
    "coalesce(pool, ''), first_seen_ms, last_seen_ms";

EndpointInfo EndpointFromRow(const pg::Rows& rows, int i) {
  return EndpointInfo{.id = rows.Int(i, 0),
                      .customer_id = rows.Int(i, 1),
                      .agent_id = std::string(rows.Text(i, 2)),
                      .hostname = std::string(rows.Text(i, 3)),
                      .os = std::string(rows.Text(i, 4)),
                      .kernel = std::string(rows.Text(i, 5)),
                      .agent_version = std::string(rows.Text(i, 6)),
                      .role = rows.Int(i, 7),
                      .site = std::string(rows.Text(i, 8)),
                      .pool = std::string(rows.Text(i, 9)),
                      .first_seen_ms = rows.Int(i, 10),
                      .last_seen_ms = rows.Int(i, 11),
                      .latest_report = std::nullopt};
}

Result<std::map<std::int64_t, scoring::WindowRollup>> WindowsByFirstColumn(const pg::Rows& rows) {
  std::map<std::int64_t, scoring::WindowRollup> out;
  for (int i = 0; i < rows.size(); ++i) {
    SparseHistogram hist;
    if (!rows.IsNull(i, 4)) {
      DP_ASSIGN_OR_RETURN(hist, SparseHistogram::Decode(rows.Bytes(i, 4)));
    }
    scoring::WindowRollup& w = out[rows.Int(i, 0)];
    w.endpoints = 1;
    AddToWindow(static_cast<Metric>(rows.Int(i, 1)), rows.Int(i, 2), rows.Double(i, 3), hist, &w);
  }
  return out;
}

}  // namespace

Result<std::vector<EndpointInfo>> PgStore::ListEndpoints(std::int64_t customer_id) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("endpoints",
                                              fmt::format("SELECT {} FROM endpoints WHERE "
                                                          "customer_id=$1 ORDER BY endpoint_id",
                                                          kEndpointColumns),
                                              {pg::Int(customer_id)}));
  std::vector<EndpointInfo> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(EndpointFromRow(rows, i));
  return out;
}

Result<std::optional<EndpointInfo>> PgStore::LoadEndpoint(std::int64_t customer_id,
                                                          std::int64_t endpoint_id) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("endpoint",
                                              fmt::format("SELECT {}, last_report FROM endpoints "
                                                          "WHERE customer_id=$1 AND "
                                                          "endpoint_id=$2",
                                                          kEndpointColumns),
                                              {pg::Int(customer_id), pg::Int(endpoint_id)}));
  if (rows.size() == 0) return std::optional<EndpointInfo>();
  EndpointInfo e = EndpointFromRow(rows, 0);
  if (!rows.IsNull(0, 12)) {
    v1::Report r;
    if (!r.ParseFromString(rows.Bytes(0, 12))) {
      return Status(Code::kDataLoss,
                    fmt::format("endpoint {}: its latest report does not parse", endpoint_id));
    }
    e.latest_report = std::move(r);
  }
  return std::optional<EndpointInfo>(std::move(e));
}

Result<std::map<std::int64_t, scoring::WindowRollup>> PgStore::LoadEndpointWindows(
    std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows,
                      conn_->Query("endpoint windows",
                                   "SELECT endpoint_id, metric, count, sum, hist FROM "
                                   "rollups WHERE customer_id=$1 AND grain=2 AND "
                                   "endpoint_id > 0 AND bucket_start_ms >= $2 AND "
                                   "bucket_start_ms < $3",
                                   {pg::Int(customer_id), pg::Int(from_ms), pg::Int(to_ms)}));
  return WindowsByFirstColumn(rows);
}

Result<std::map<std::int64_t, scoring::WindowRollup>> PgStore::LoadEndpointDays(
    std::int64_t customer_id, std::int64_t endpoint_id, std::int64_t from_ms, std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("endpoint days",
                                              "SELECT bucket_start_ms, metric, count, sum, hist "
                                              "FROM rollups WHERE customer_id=$1 AND grain=2 AND "
                                              "endpoint_id=$2 AND bucket_start_ms >= $3 AND "
                                              "bucket_start_ms < $4",
                                              {pg::Int(customer_id), pg::Int(endpoint_id),
                                               pg::Int(from_ms), pg::Int(to_ms)}));
  return WindowsByFirstColumn(rows);
}

Result<std::map<std::int64_t, scoring::WindowRollup>> PgStore::LoadCustomerDays(
    std::int64_t customer_id, std::int64_t from_ms, std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows,
                      conn_->Query("customer days",
                                   "SELECT bucket_start_ms, metric, count, sum, hist "
                                   "FROM rollups WHERE customer_id=$1 AND grain=2 AND "
                                   "endpoint_id=0 AND bucket_start_ms >= $2 AND "
                                   "bucket_start_ms < $3",
                                   {pg::Int(customer_id), pg::Int(from_ms), pg::Int(to_ms)}));
  DP_ASSIGN_OR_RETURN(auto out, WindowsByFirstColumn(rows));
  for (auto& [day, w] : out) w.endpoints = 0;
  DP_ASSIGN_OR_RETURN(auto ep,
                      conn_->Query("customer days' endpoints",
                                   "SELECT bucket_start_ms, count(*) FROM rollups "
                                   "WHERE customer_id=$1 AND grain=2 AND endpoint_id > 0 "
                                   "AND metric=1 AND bucket_start_ms >= $2 AND "
                                   "bucket_start_ms < $3 GROUP BY bucket_start_ms",
                                   {pg::Int(customer_id), pg::Int(from_ms), pg::Int(to_ms)}));
  for (int i = 0; i < ep.size(); ++i) out[ep.Int(i, 0)].endpoints = ep.Int(i, 1);
  return out;
}

Result<std::map<std::int64_t, std::map<std::int64_t, RollupCell>>> PgStore::LoadEndpointDayCells(
    std::int64_t customer_id, Metric metric, std::int64_t from_ms, std::int64_t to_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows,
                      conn_->Query("endpoint day cells",
                                   "SELECT endpoint_id, bucket_start_ms, count, sum, "
                                   "hist FROM rollups WHERE customer_id=$1 AND "
                                   "grain=2 AND endpoint_id > 0 AND bucket_start_ms "
                                   ">= $2 AND bucket_start_ms < $3 AND metric=$4",
                                   {pg::Int(customer_id), pg::Int(from_ms), pg::Int(to_ms),
                                    pg::Int(static_cast<std::int64_t>(metric))}));
  std::map<std::int64_t, std::map<std::int64_t, RollupCell>> out;
  for (int i = 0; i < rows.size(); ++i) {
    RollupCell& c = out[rows.Int(i, 0)][rows.Int(i, 1)];
    c.count = rows.Int(i, 2);
    c.sum = rows.Double(i, 3);
    if (!rows.IsNull(i, 4)) {
      DP_ASSIGN_OR_RETURN(c.hist, SparseHistogram::Decode(rows.Bytes(i, 4)));
    }
  }
  return out;
}

Result<std::vector<StreamInfo>> PgStore::ListStreams() {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("streams",
                                              "SELECT customer_id, endpoint_id, stream_id, "
                                              "last_seq FROM streams ORDER BY stream_id"));
  std::vector<StreamInfo> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({rows.Int(i, 0), rows.Int(i, 1), rows.Int(i, 2),
                   static_cast<std::uint64_t>(rows.Int(i, 3))});
  }
  return out;
}

Result<std::vector<RollupRow>> PgStore::LoadRollupRows() {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("rollups",
                                              "SELECT grain, customer_id, endpoint_id, "
                                              "bucket_start_ms, metric, count, sum, hist FROM "
                                              "rollups ORDER BY grain, customer_id, "
                                              "endpoint_id, bucket_start_ms, metric"));
  std::vector<RollupRow> out;
  for (int i = 0; i < rows.size(); ++i) {
    RollupRow r{static_cast<Grain>(rows.Int(i, 0)),
                rows.Int(i, 1),
                rows.Int(i, 2),
                rows.Int(i, 3),
                static_cast<Metric>(rows.Int(i, 4)),
                {}};
    r.cell.count = rows.Int(i, 5);
    r.cell.sum = rows.Double(i, 6);
    if (!rows.IsNull(i, 7)) {
      DP_ASSIGN_OR_RETURN(r.cell.hist, SparseHistogram::Decode(rows.Bytes(i, 7)));
    }
    out.push_back(std::move(r));
  }
  return out;
}

Status PgStore::ForEachRawReport(const std::function<void(const RawReport&)>& fn) {
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  DP_RETURN_IF_ERROR(conn_->Exec(
      "DECLARE raw NO SCROLL CURSOR FOR SELECT customer_id, endpoint_id, stream_id, seq, "
      "received_at_ms, body, body_crc FROM reports"));
  for (;;) {
    DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("raw reports", "FETCH 10000 FROM raw"));
    if (rows.size() == 0) break;
    for (int i = 0; i < rows.size(); ++i) {
      RawReport r{rows.Int(i, 0), rows.Int(i, 1), rows.Int(i, 2),
                  rows.Int(i, 3), rows.Int(i, 4), {}};
      const std::int64_t crc = rows.IsNull(i, 6) ? 0 : rows.Int(i, 6);
      const std::string why =
          DecodeRawBody(rows.Bytes(i, 5), rows.IsNull(i, 6) ? nullptr : &crc, &r.report);
      if (!why.empty()) {
        std::lock_guard lock(mu_);
        ++stats_.damaged_rows;
        continue;
      }
      fn(r);
    }
  }
  return tx.Commit();
}

Result<IntegrityReport> PgStore::Check(bool full) {
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
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  for (const char* table : {"meta", "collectors", "customers", "tokens", "endpoints", "streams",
                            "reports", "rollup_pending", "rollups", "peripheral_instances"}) {
    auto r = conn_->Query("check", fmt::format("SELECT 1 FROM {} LIMIT 1", table));
    if (!r.ok()) add(fmt::format("table {}: {}", table, r.status().message()));
  }
  if (!full || !report.ok()) return report;

  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  DP_RETURN_IF_ERROR(conn_->Exec(
      "DECLARE raw NO SCROLL CURSOR FOR SELECT customer_id, endpoint_id, stream_id, seq, body, "
      "body_crc FROM reports"));
  for (;;) {
    DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("raw reports", "FETCH 10000 FROM raw"));
    if (rows.size() == 0) break;
    for (int i = 0; i < rows.size(); ++i) {
      ++report.rows_checked;
      v1::Report decoded;
      const std::int64_t crc = rows.IsNull(i, 5) ? 0 : rows.Int(i, 5);
      const std::string why =
          DecodeRawBody(rows.Bytes(i, 4), rows.IsNull(i, 5) ? nullptr : &crc, &decoded);
      if (why.empty()) continue;
      ++report.damaged_rows;
      add(DescribeDamagedRow(0, rows.Int(i, 0), rows.Int(i, 1), rows.Int(i, 2), rows.Int(i, 3),
                             why));
    }
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  DP_ASSIGN_OR_RETURN(auto marks, conn_->Query("watermarks",
                                               "SELECT s.stream_id, s.last_seq, max(r.seq) FROM "
                                               "streams s JOIN reports r USING(customer_id, "
                                               "stream_id) GROUP BY s.customer_id, s.stream_id, "
                                               "s.last_seq HAVING max(r.seq) > s.last_seq"));
  for (int i = 0; i < marks.size(); ++i) {
    add(
        fmt::format("stream {}: its watermark is seq {} but seq {} is stored (a resend would be "
                    "stored twice)",
                    marks.Int(i, 0), marks.Int(i, 1), marks.Int(i, 2)));
  }
  DP_ASSIGN_OR_RETURN(auto hists, conn_->Query("rollup histograms",
                                               "SELECT grain, customer_id, endpoint_id, "
                                               "bucket_start_ms, metric, hist FROM rollups WHERE "
                                               "hist IS NOT NULL"));
  for (int i = 0; i < hists.size(); ++i) {
    if (!SparseHistogram::Decode(hists.Bytes(i, 5)).ok()) {
      add(fmt::format(
          "rollup (grain {}, customer {}, endpoint {}, bucket {}, metric {}): its "
          "histogram does not decode",
          hists.Int(i, 0), hists.Int(i, 1), hists.Int(i, 2), hists.Int(i, 3), hists.Int(i, 4)));
    }
  }
  return report;
}

// ---- Business signals ----

namespace {

using Column = std::vector<std::optional<std::string>>;

std::optional<std::string> Text(const std::optional<double>& v) {
  if (!v) return std::nullopt;
  return fmt::format("{}", *v);
}

std::optional<std::string> Text(const std::optional<std::int64_t>& v) {
  if (!v) return std::nullopt;
  return pg::Int(*v);
}

std::optional<double> OptDouble(const pg::Rows& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return r.Double(row, col);
}

std::optional<std::int64_t> OptInt(const pg::Rows& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return r.Int(row, col);
}

/// customer id of every row's customer, in row order; kNotFound for the
/// first row whose customer is unknown.
template <typename RowT>
Result<Column> CustomerIds(pg::Connection& conn, const std::vector<RowT>& rows) {
  Column names;
  for (const RowT& r : rows) names.emplace_back(r.customer);
  DP_ASSIGN_OR_RETURN(auto found, conn.Query("import customers",
                                             "SELECT name, customer_id FROM customers WHERE "
                                             "name = ANY($1::text[])",
                                             {pg::ArrayLiteral(names)}));
  std::map<std::string, std::int64_t, std::less<>> ids;
  for (int i = 0; i < found.size(); ++i) ids.emplace(found.Text(i, 0), found.Int(i, 1));
  Column out;
  for (const RowT& r : rows) {
    auto it = ids.find(r.customer);
    if (it == ids.end()) return UnknownSignalCustomer(r);
    out.emplace_back(pg::Int(it->second));
  }
  return out;
}

}  // namespace

Result<ImportResult> PgStore::ImportSignals(const SignalBatch& batch, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  // Claimed first: a second import of the same file waits for this one and
  // then finds it done.
  DP_ASSIGN_OR_RETURN(
      auto claimed,
      conn_->Query("import log",
                   "INSERT INTO signal_imports(kind, content_sha256, rows, "
                   "imported_ms) VALUES($1, $2, $3, $4) ON CONFLICT DO NOTHING "
                   "RETURNING 1",
                   {SignalKindName(batch.kind), batch.content_sha256,
                    pg::Int(static_cast<std::int64_t>(batch.size())), pg::Int(now_ms)}));
  if (claimed.size() == 0) return ImportResult{.already_imported = true, .rows = 0};
  const std::string now = pg::Int(now_ms);

  if (!batch.surveys.empty()) {
    DP_ASSIGN_OR_RETURN(Column ids, CustomerIds(*conn_, batch.surveys));
    Column date, nps, ces, ves, respondents;
    for (const SurveyRow& r : batch.surveys) {
      date.emplace_back(pg::Int(r.survey.date_ms));
      nps.push_back(Text(r.survey.nps));
      ces.push_back(Text(r.survey.ces));
      ves.push_back(Text(r.survey.ves));
      respondents.emplace_back(pg::Int(r.survey.respondents));
    }
    DP_RETURN_IF_ERROR(
        conn_
            ->Query(
                "import surveys",
                "INSERT INTO surveys(customer_id, date_ms, nps, ces, ves, respondents, "
                "imported_ms) SELECT c, d, n, ce, v, r, $7 FROM unnest($1::bigint[], "
                "$2::bigint[], $3::float8[], $4::float8[], $5::float8[], $6::bigint[]) AS "
                "u(c, d, n, ce, v, r) ON CONFLICT (customer_id, date_ms) DO UPDATE SET "
                "nps = excluded.nps, ces = excluded.ces, ves = excluded.ves, respondents = "
                "excluded.respondents, imported_ms = excluded.imported_ms",
                {pg::ArrayLiteral(ids), pg::ArrayLiteral(date), pg::ArrayLiteral(nps),
                 pg::ArrayLiteral(ces), pg::ArrayLiteral(ves), pg::ArrayLiteral(respondents), now})
            .status());
  }
  if (!batch.tickets.empty()) {
    DP_ASSIGN_OR_RETURN(Column ids, CustomerIds(*conn_, batch.tickets));
    Column id, opened, first, resolved, severity;
    for (const TicketRow& r : batch.tickets) {
      id.emplace_back(r.ticket.id);
      opened.emplace_back(pg::Int(r.ticket.opened_ms));
      first.push_back(Text(r.ticket.first_response_ms));
      resolved.push_back(Text(r.ticket.resolved_ms));
      severity.emplace_back(r.ticket.severity);
    }
    DP_RETURN_IF_ERROR(
        conn_
            ->Query("import tickets",
                    "INSERT INTO tickets(customer_id, ticket_id, opened_ms, first_response_ms, "
                    "resolved_ms, severity, imported_ms) SELECT c, t, o, f, r, s, $7 FROM "
                    "unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], "
                    "$6::text[]) AS u(c, t, o, f, r, s) ON CONFLICT (customer_id, ticket_id) DO "
                    "UPDATE SET opened_ms = excluded.opened_ms, first_response_ms = "
                    "excluded.first_response_ms, resolved_ms = excluded.resolved_ms, severity = "
                    "excluded.severity, imported_ms = excluded.imported_ms",
                    {pg::ArrayLiteral(ids), pg::ArrayLiteral(id), pg::ArrayLiteral(opened),
                     pg::ArrayLiteral(first), pg::ArrayLiteral(resolved),
                     pg::ArrayLiteral(severity), now})
            .status());
  }
  if (!batch.contracts.empty()) {
    DP_ASSIGN_OR_RETURN(Column ids, CustomerIds(*conn_, batch.contracts));
    std::array<Column, 13> cols;
    for (const ContractRow& r : batch.contracts) {
      const scoring::Contract& c = r.contract;
      cols[0].emplace_back(std::string(1, c.tier));
      cols[1].push_back(Text(std::optional<double>(c.annual_value)));
      cols[2].emplace_back(pg::Int(c.start_ms));
      cols[3].emplace_back(pg::Int(c.renewal_ms));
      cols[4].emplace_back(scoring::RenewalStatusName(c.renewal_status));
      cols[5].push_back(Text(c.expected_savings));
      cols[6].push_back(Text(c.realised_savings));
      cols[7].push_back(Text(r.sla.boot_s));
      cols[8].push_back(Text(r.sla.boot_pct));
      cols[9].push_back(Text(r.sla.rtt_ms));
      cols[10].push_back(Text(r.sla.rtt_pct));
      cols[11].push_back(Text(r.sla.peripherals_pct));
      cols[12].push_back(Text(r.sla.availability_pct));
    }
    pg::Params params{pg::ArrayLiteral(ids)};
    for (const Column& col : cols) params.emplace_back(pg::ArrayLiteral(col));
    params.emplace_back(now);
    DP_RETURN_IF_ERROR(
        conn_
            ->Query("import contracts",
                    "INSERT INTO contracts(customer_id, tier, annual_value, start_ms, renewal_ms, "
                    "renewal_status, expected_savings, realised_savings, sla_boot_s, "
                    "sla_boot_pct, sla_rtt_ms, sla_rtt_pct, sla_peripherals_pct, "
                    "sla_availability_pct, imported_ms) SELECT *, $15 FROM unnest($1::bigint[], "
                    "$2::text[], $3::float8[], $4::bigint[], $5::bigint[], $6::text[], "
                    "$7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], "
                    "$12::float8[], $13::float8[], $14::float8[]) ON CONFLICT (customer_id) DO "
                    "UPDATE SET tier = excluded.tier, annual_value = excluded.annual_value, "
                    "start_ms = excluded.start_ms, renewal_ms = excluded.renewal_ms, "
                    "renewal_status = excluded.renewal_status, expected_savings = "
                    "excluded.expected_savings, realised_savings = excluded.realised_savings, "
                    "sla_boot_s = excluded.sla_boot_s, sla_boot_pct = excluded.sla_boot_pct, "
                    "sla_rtt_ms = excluded.sla_rtt_ms, sla_rtt_pct = excluded.sla_rtt_pct, "
                    "sla_peripherals_pct = excluded.sla_peripherals_pct, sla_availability_pct = "
                    "excluded.sla_availability_pct, imported_ms = excluded.imported_ms",
                    params)
            .status());
  }
  if (!batch.reviews.empty()) {
    DP_ASSIGN_OR_RETURN(Column ids, CustomerIds(*conn_, batch.reviews));
    Column date;
    for (const ReviewRow& r : batch.reviews) date.emplace_back(pg::Int(r.date_ms));
    DP_RETURN_IF_ERROR(conn_
                           ->Query("import reviews",
                                   "INSERT INTO business_reviews(customer_id, date_ms, "
                                   "imported_ms) SELECT c, d, $3 FROM unnest($1::bigint[], "
                                   "$2::bigint[]) AS u(c, d) ON CONFLICT (customer_id, date_ms) "
                                   "DO UPDATE SET imported_ms = excluded.imported_ms",
                                   {pg::ArrayLiteral(ids), pg::ArrayLiteral(date), now})
                           .status());
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  return ImportResult{.already_imported = false, .rows = batch.size()};
}

Result<CustomerSignals> PgStore::LoadSignals(std::int64_t customer_id) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  CustomerSignals out;
  scoring::BusinessSignals& s = out.signals;
  const pg::Params id{pg::Int(customer_id)};
  DP_ASSIGN_OR_RETURN(auto surveys,
                      conn_->Query("surveys",
                                   "SELECT date_ms, nps, ces, ves, respondents FROM surveys "
                                   "WHERE customer_id = $1 ORDER BY date_ms",
                                   id));
  for (int i = 0; i < surveys.size(); ++i) {
    s.surveys.push_back({.date_ms = surveys.Int(i, 0),
                         .nps = OptDouble(surveys, i, 1),
                         .ces = OptDouble(surveys, i, 2),
                         .ves = OptDouble(surveys, i, 3),
                         .respondents = surveys.Int(i, 4)});
  }
  DP_ASSIGN_OR_RETURN(auto tickets,
                      conn_->Query("tickets",
                                   "SELECT ticket_id, opened_ms, first_response_ms, resolved_ms, "
                                   "severity FROM tickets WHERE customer_id = $1 ORDER BY "
                                   "ticket_id COLLATE \"C\"",
                                   id));
  for (int i = 0; i < tickets.size(); ++i) {
    s.tickets.push_back({.id = std::string(tickets.Text(i, 0)),
                         .opened_ms = tickets.Int(i, 1),
                         .first_response_ms = OptInt(tickets, i, 2),
                         .resolved_ms = OptInt(tickets, i, 3),
                         .severity = std::string(tickets.Text(i, 4))});
  }
  DP_ASSIGN_OR_RETURN(
      auto contract,
      conn_->Query("contract",
                   "SELECT tier, annual_value, start_ms, renewal_ms, renewal_status, "
                   "expected_savings, realised_savings, sla_boot_s, sla_boot_pct, sla_rtt_ms, "
                   "sla_rtt_pct, sla_peripherals_pct, sla_availability_pct FROM contracts WHERE "
                   "customer_id = $1",
                   id));
  if (contract.size() > 0) {
    scoring::Contract c;
    const std::string_view tier = contract.Text(0, 0);
    c.tier = tier.empty() ? 'C' : tier[0];
    c.annual_value = contract.Double(0, 1);
    c.start_ms = contract.Int(0, 2);
    c.renewal_ms = contract.Int(0, 3);
    c.renewal_status =
        scoring::ParseRenewalStatus(contract.Text(0, 4)).value_or(scoring::RenewalStatus::kPending);
    c.expected_savings = OptDouble(contract, 0, 5);
    c.realised_savings = OptDouble(contract, 0, 6);
    s.contract = c;
    out.sla = {.boot_s = OptDouble(contract, 0, 7),
               .boot_pct = OptDouble(contract, 0, 8),
               .rtt_ms = OptDouble(contract, 0, 9),
               .rtt_pct = OptDouble(contract, 0, 10),
               .peripherals_pct = OptDouble(contract, 0, 11),
               .availability_pct = OptDouble(contract, 0, 12)};
  }
  DP_ASSIGN_OR_RETURN(auto reviews, conn_->Query("reviews",
                                                 "SELECT date_ms FROM business_reviews WHERE "
                                                 "customer_id = $1 ORDER BY date_ms",
                                                 id));
  for (int i = 0; i < reviews.size(); ++i) s.review_dates_ms.push_back(reviews.Int(i, 0));
  DP_ASSIGN_OR_RETURN(auto overrides, conn_->Query("overrides",
                                                   "SELECT factor, value, reason, expires_ms "
                                                   "FROM overrides WHERE customer_id = $1 ORDER "
                                                   "BY created_ms, factor COLLATE \"C\"",
                                                   id));
  for (int i = 0; i < overrides.size(); ++i) {
    const auto factor = scoring::ParseFactor(overrides.Text(i, 0));
    if (!factor) continue;  // a factor this build does not know
    s.overrides.push_back({.factor = *factor,
                           .value = overrides.Double(i, 1),
                           .reason = std::string(overrides.Text(i, 2)),
                           .expires_ms = overrides.Int(i, 3)});
  }
  return out;
}

Status PgStore::SetOverride(std::int64_t customer_id, const scoring::Override& o,
                            std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  return conn_
      ->Query("override",
              "INSERT INTO overrides(customer_id, factor, value, reason, expires_ms, created_ms) "
              "VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT (customer_id, factor) DO UPDATE SET "
              "value = excluded.value, reason = excluded.reason, expires_ms = "
              "excluded.expires_ms, created_ms = excluded.created_ms",
              {pg::Int(customer_id), scoring::FactorName(o.factor), fmt::format("{}", o.value),
               o.reason, pg::Int(o.expires_ms), pg::Int(now_ms)})
      .status();
}

Result<std::vector<std::optional<RiskEvent>>> PgStore::RecordHealthBatch(
    std::span<const HealthRecord> records, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  // The customers' rows locked first, in id order: two collectors recording
  // the same customers' day take turns (never deadlock), and each sees the
  // other's snapshots.
  std::vector<std::int64_t> ids;
  ids.reserve(records.size());
  for (const HealthRecord& r : records) ids.push_back(r.snapshot.customer_id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  DP_RETURN_IF_ERROR(conn_
                         ->Query("health lock",
                                 "SELECT 1 FROM customers WHERE customer_id = ANY($1::bigint[]) "
                                 "ORDER BY customer_id FOR UPDATE",
                                 {fmt::format("{{{}}}", fmt::join(ids, ","))})
                         .status());
  std::vector<std::optional<RiskEvent>> events;
  events.reserve(records.size());
  for (const HealthRecord& r : records) {
    const HealthSnapshot& snap = r.snapshot;
    DP_ASSIGN_OR_RETURN(auto last, conn_->Query("last snapshot",
                                                "SELECT risk FROM health_snapshots WHERE "
                                                "customer_id = $1 AND day_ms <= $2 ORDER BY "
                                                "day_ms DESC LIMIT 1",
                                                {pg::Int(snap.customer_id), pg::Int(snap.day_ms)}));
    const std::optional<std::string> before =
        last.size() > 0 ? std::optional<std::string>(last.Text(0, 0)) : std::nullopt;
    DP_RETURN_IF_ERROR(
        conn_
            ->Query("snapshot",
                    "INSERT INTO health_snapshots(customer_id, day_ms, tps, lhi, coverage, risk, "
                    "recorded_ms) VALUES($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (customer_id, "
                    "day_ms) DO UPDATE SET tps = excluded.tps, lhi = excluded.lhi, coverage = "
                    "excluded.coverage, risk = excluded.risk, recorded_ms = excluded.recorded_ms",
                    {pg::Int(snap.customer_id), pg::Int(snap.day_ms), Text(snap.tps),
                     Text(snap.lhi), fmt::format("{}", snap.coverage), snap.risk, pg::Int(now_ms)})
            .status());
    std::optional<RiskEvent> event = RiskChange(snap, before, r.reasons, now_ms);
    if (event) {
      DP_RETURN_IF_ERROR(conn_
                             ->Query("risk event",
                                     "INSERT INTO risk_events(customer_id, at_ms, from_risk, "
                                     "to_risk, reasons) VALUES($1, $2, $3, $4, $5) ON CONFLICT "
                                     "(customer_id, at_ms) DO UPDATE SET from_risk = "
                                     "excluded.from_risk, to_risk = excluded.to_risk, reasons = "
                                     "excluded.reasons",
                                     {pg::Int(snap.customer_id), pg::Int(now_ms), event->from_risk,
                                      event->to_risk, JoinReasons(event->reasons)})
                             .status());
    }
    events.push_back(std::move(event));
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  return events;
}

Result<std::vector<HealthSnapshot>> PgStore::LoadHistory(std::int64_t customer_id,
                                                         std::int64_t from_day_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("history",
                                              "SELECT day_ms, tps, lhi, coverage, risk FROM "
                                              "health_snapshots WHERE customer_id = $1 AND "
                                              "day_ms >= $2 ORDER BY day_ms",
                                              {pg::Int(customer_id), pg::Int(from_day_ms)}));
  std::vector<HealthSnapshot> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({.customer_id = customer_id,
                   .day_ms = rows.Int(i, 0),
                   .tps = OptDouble(rows, i, 1),
                   .lhi = OptDouble(rows, i, 2),
                   .coverage = rows.Double(i, 3),
                   .risk = std::string(rows.Text(i, 4))});
  }
  return out;
}

Result<std::vector<ImportRecord>> PgStore::ListImports(std::size_t limit) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("imports",
                                              "SELECT kind, content_sha256, rows, imported_ms "
                                              "FROM signal_imports ORDER BY imported_ms DESC, "
                                              "kind, content_sha256 LIMIT $1",
                                              {pg::Int(static_cast<std::int64_t>(limit))}));
  std::vector<ImportRecord> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    const auto kind = ParseSignalKind(rows.Text(i, 0));
    if (!kind) {
      return Status(Code::kDataLoss,
                    "signal_imports: unknown kind " + std::string(rows.Text(i, 0)));
    }
    out.push_back({*kind, std::string(rows.Text(i, 1)), rows.Int(i, 2), rows.Int(i, 3)});
  }
  return out;
}

Result<std::vector<RiskEvent>> PgStore::LoadRiskEvents(std::int64_t customer_id) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("risk events",
                                              "SELECT at_ms, from_risk, to_risk, reasons FROM "
                                              "risk_events WHERE customer_id = $1 ORDER BY at_ms",
                                              {pg::Int(customer_id)}));
  std::vector<RiskEvent> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({.customer_id = customer_id,
                   .at_ms = rows.Int(i, 0),
                   .from_risk = std::string(rows.Text(i, 1)),
                   .to_risk = std::string(rows.Text(i, 2)),
                   .reasons = SplitReasons(rows.Text(i, 3))});
  }
  return out;
}

// ---- API tokens ----

namespace {
constexpr const char* kApiTokenColumns =
    "SELECT t.token_id, t.role, t.customer_id, c.name, t.created_ms, t.revoked_ms FROM "
    "api_tokens t LEFT JOIN customers c ON c.customer_id = t.customer_id ";

ApiToken ApiTokenFrom(const pg::Rows& r, int i) {
  ApiToken t;
  t.id = r.Int(i, 0);
  t.role = ParseApiRole(r.Text(i, 1)).value_or(ApiRole::kCustomerAdmin);
  if (!r.IsNull(i, 2)) t.customer = Customer{r.Int(i, 2), std::string(r.Text(i, 3))};
  t.created_ms = r.Int(i, 4);
  t.revoked_ms = OptInt(r, i, 5);
  return t;
}
}  // namespace

Result<std::pair<ApiToken, std::string>> PgStore::CreateApiToken(
    ApiRole role, std::optional<std::int64_t> customer_id, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(CheckApiGrant(role, customer_id));
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(std::string token, NewToken("dpa_"));
  DP_ASSIGN_OR_RETURN(
      auto rows,
      conn_->Query("api token",
                   "WITH t AS (INSERT INTO api_tokens(token_hash, role, customer_id, created_ms) "
                   "SELECT $1, $2, $3::bigint, $4 WHERE $3::bigint IS NULL OR EXISTS (SELECT 1 "
                   "FROM customers WHERE customer_id = $3::bigint) RETURNING token_id, "
                   "customer_id) SELECT t.token_id, c.name FROM t LEFT JOIN customers c ON "
                   "c.customer_id = t.customer_id",
                   {HashToken(token), ApiRoleName(role), Text(customer_id), pg::Int(now_ms)}));
  if (rows.size() == 0) return NotFound("no customer with id " + std::to_string(*customer_id));
  ApiToken t{.id = rows.Int(0, 0),
             .role = role,
             .customer = std::nullopt,
             .created_ms = now_ms,
             .revoked_ms = std::nullopt};
  if (customer_id) t.customer = Customer{*customer_id, std::string(rows.Text(0, 1))};
  return std::pair{t, token};
}

Result<std::vector<ApiToken>> PgStore::ListApiTokens() {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(
      auto rows, conn_->Query("api tokens", std::string(kApiTokenColumns) + "ORDER BY token_id"));
  std::vector<ApiToken> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(ApiTokenFrom(rows, i));
  return out;
}

Status PgStore::RevokeApiToken(std::int64_t token_id, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("revoke api token",
                                              "UPDATE api_tokens SET revoked_ms = "
                                              "COALESCE(revoked_ms, $1) WHERE token_id = $2 "
                                              "RETURNING 1",
                                              {pg::Int(now_ms), pg::Int(token_id)}));
  if (rows.size() == 0) return NotFound("no API token with id " + std::to_string(token_id));
  return Status::Ok();
}

Result<ApiToken> PgStore::AuthenticateApiToken(const std::string& token) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("api token",
                                              std::string(kApiTokenColumns) +
                                                  "WHERE t.token_hash = $1 AND t.revoked_ms IS "
                                                  "NULL",
                                              {HashToken(token)}));
  if (rows.size() == 0) return Status(Code::kUnauthenticated, "unknown or revoked API token");
  return ApiTokenFrom(rows, 0);
}

// ---- webhook deliveries ----

namespace {
constexpr const char* kDeliveryColumns =
    "delivery_id, webhook, event_key, payload, created_ms, attempts, next_attempt_ms, "
    "delivered_ms, abandoned_ms, last_error";

WebhookDelivery DeliveryFrom(const pg::Rows& r, int i) {
  return WebhookDelivery{.id = r.Int(i, 0),
                         .webhook = std::string(r.Text(i, 1)),
                         .event_key = std::string(r.Text(i, 2)),
                         .payload = std::string(r.Text(i, 3)),
                         .created_ms = r.Int(i, 4),
                         .attempts = r.Int(i, 5),
                         .next_attempt_ms = r.Int(i, 6),
                         .delivered_ms = OptInt(r, i, 7),
                         .abandoned_ms = OptInt(r, i, 8),
                         .last_error = std::string(r.Text(i, 9))};
}
}  // namespace

Result<std::size_t> PgStore::EnqueueDeliveries(const std::vector<WebhookDelivery>& deliveries,
                                               std::int64_t now_ms) {
  if (deliveries.empty()) return std::size_t{0};
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn_.get()));
  std::size_t added = 0;
  for (const WebhookDelivery& d : deliveries) {
    DP_ASSIGN_OR_RETURN(auto rows,
                        conn_->Query("queue webhook delivery",
                                     "INSERT INTO webhook_deliveries(webhook, event_key, payload, "
                                     "created_ms, next_attempt_ms) VALUES($1, $2, $3, $4, $4) ON "
                                     "CONFLICT (webhook, event_key) DO NOTHING RETURNING 1",
                                     {d.webhook, d.event_key, d.payload, pg::Int(now_ms)}));
    added += static_cast<std::size_t>(rows.size());
  }
  DP_RETURN_IF_ERROR(tx.Commit());
  return added;
}

Result<std::vector<WebhookDelivery>> PgStore::ClaimDeliveries(const std::string& webhook,
                                                              std::int64_t now_ms,
                                                              std::int64_t lease_ms,
                                                              std::size_t limit) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  // SKIP LOCKED: another collector claiming at the same moment takes other
  // rows (or none) rather than waiting for these.
  DP_ASSIGN_OR_RETURN(
      auto rows,
      conn_->Query("claim webhook deliveries",
                   std::string("UPDATE webhook_deliveries SET attempts = attempts + 1, "
                               "next_attempt_ms = $1 WHERE delivery_id IN (SELECT delivery_id "
                               "FROM webhook_deliveries WHERE webhook = $2 AND delivered_ms IS "
                               "NULL AND abandoned_ms IS NULL AND next_attempt_ms <= $3 ORDER BY "
                               "next_attempt_ms, delivery_id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                               "RETURNING ") +
                       kDeliveryColumns,
                   {pg::Int(now_ms + lease_ms), webhook, pg::Int(now_ms),
                    pg::Int(static_cast<std::int64_t>(limit))}));
  std::vector<WebhookDelivery> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(DeliveryFrom(rows, i));
  std::sort(out.begin(), out.end(),
            [](const WebhookDelivery& a, const WebhookDelivery& b) { return a.id < b.id; });
  return out;
}

Status PgStore::CompleteDelivery(std::int64_t id, std::int64_t now_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("complete webhook delivery",
                                              "UPDATE webhook_deliveries SET delivered_ms = "
                                              "COALESCE(delivered_ms, $1), last_error = '' WHERE "
                                              "delivery_id = $2 RETURNING 1",
                                              {pg::Int(now_ms), pg::Int(id)}));
  if (rows.size() == 0) return NotFound("no webhook delivery " + std::to_string(id));
  return Status::Ok();
}

Status PgStore::FailDelivery(std::int64_t id, const std::string& error, std::int64_t retry_at_ms,
                             bool abandon) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(
      auto rows,
      conn_->Query("fail webhook delivery",
                   "UPDATE webhook_deliveries SET last_error = $1, next_attempt_ms = $2, "
                   "abandoned_ms = CASE WHEN $3::boolean THEN $2 ELSE abandoned_ms END WHERE "
                   "delivery_id = $4 AND delivered_ms IS NULL RETURNING 1",
                   {error.substr(0, 500), pg::Int(retry_at_ms), std::string(abandon ? "t" : "f"),
                    pg::Int(id)}));
  if (rows.size() == 0) return NotFound("no pending webhook delivery " + std::to_string(id));
  return Status::Ok();
}

Result<std::vector<WebhookDelivery>> PgStore::ListDeliveries(const std::string& webhook) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("webhook deliveries",
                                              std::string("SELECT ") + kDeliveryColumns +
                                                  " FROM webhook_deliveries WHERE webhook = $1 "
                                                  "ORDER BY delivery_id",
                                              {webhook}));
  std::vector<WebhookDelivery> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(DeliveryFrom(rows, i));
  return out;
}

Result<std::size_t> PgStore::PruneDeliveries(std::int64_t before_ms) {
  DP_RETURN_IF_ERROR(conn_->EnsureConnected());
  DP_ASSIGN_OR_RETURN(auto rows, conn_->Query("prune webhook deliveries",
                                              "DELETE FROM webhook_deliveries WHERE "
                                              "COALESCE(delivered_ms, abandoned_ms) < $1 "
                                              "RETURNING 1",
                                              {pg::Int(before_ms)}));
  return static_cast<std::size_t>(rows.size());
}

}  // namespace deskpulse::collector
