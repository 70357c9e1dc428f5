// Choosing a backend by the form of --db, and what every backend shares.
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>

#include "collector/store/postgres/pg_store.h"
#include "collector/store/postgres_migrations.h"
#include "collector/store/sqlite/sqlite_store.h"
#include "collector/store/sqlite_migrations.h"
#include "collector/store/store.h"
#include "deskpulse/common/hex.h"

namespace deskpulse::collector {

bool IsPostgresUri(std::string_view db) {
  return db.starts_with("postgresql://") || db.starts_with("postgres://");
}

std::string RedactDb(std::string_view db) {
  if (!IsPostgresUri(db)) return std::string(db);
  std::string out(db);
  // scheme://user:password@host...: the password ends at the last '@' of the authority.
  const std::size_t auth = out.find("://") + 3;
  const std::size_t auth_end = out.find_first_of("/?#", auth);
  const std::size_t at = out.rfind('@', auth_end == std::string::npos ? out.size() : auth_end);
  if (at != std::string::npos && at > auth) {
    const std::size_t colon = out.find(':', auth);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  // ...and a password=... query parameter.
  for (std::size_t q = out.find('?'); q != std::string::npos;) {
    const std::size_t key = q + 1;
    const std::size_t amp = out.find('&', key);
    if (out.compare(key, 9, "password=") == 0) {
      const std::size_t v = key + 9;
      out.replace(v, (amp == std::string::npos ? out.size() : amp) - v, "***");
    }
    q = out.find('&', key);
  }
  return out;
}

std::string NoStoreHint() {
  return "; give the --db that serve uses (a store is made only by `deskpulse-collector "
         "serve`, `token create` or `api-token create`)";
}

Result<Customer> FindCustomerNamed(ReadStore& store, const std::string& name) {
  DP_ASSIGN_OR_RETURN(auto customers, store.ListCustomers());
  std::string names;
  constexpr std::size_t kShown = 10;
  for (std::size_t i = 0; i < customers.size(); ++i) {
    if (customers[i].name == name) return customers[i];
    if (i < kShown) names += (names.empty() ? "" : ", ") + customers[i].name;
  }
  if (customers.size() > kShown) names += fmt::format(" and {} more", customers.size() - kShown);
  return NotFound("no customer named '" + name + "'" +
                  (names.empty() ? " (the store has none)" : " (customers: " + names + ")"));
}

// Version N is the same logical schema on both backends.
static_assert(kSqliteMigrations.size() == kPostgresMigrations.size(),
              "each schema version needs a migration on both backends");
int LatestSchemaVersion() { return static_cast<int>(kSqliteMigrations.size()); }

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  if (options.db.empty()) return InvalidArgument("no store given (--db FILE or postgresql://...)");
  if (IsPostgresUri(options.db)) {
    DP_ASSIGN_OR_RETURN(auto pg, PgStore::Open(options));
    return std::unique_ptr<Store>(std::move(pg));
  }
  DP_ASSIGN_OR_RETURN(auto sqlite, SqliteStore::Open(options));
  return std::unique_ptr<Store>(std::move(sqlite));
}

std::string Sha256Hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md.data(), &len, EVP_sha256(), nullptr);
  return HexEncode(md.data(), len);
}

std::string HashToken(const std::string& token) { return Sha256Hex(token); }

Status UnknownSignalCustomer(const SignalRow& row) {
  return NotFound(row.where + ", field customer: '" + row.customer +
                  "' is not a customer of this store (a customer is created with its first "
                  "enrollment token)");
}

const char* SignalKindName(SignalKind k) {
  switch (k) {
    case SignalKind::kSurveys:
      return "surveys";
    case SignalKind::kTickets:
      return "tickets";
    case SignalKind::kContracts:
      return "contracts";
    case SignalKind::kReviews:
      return "reviews";
  }
  return "?";
}

std::optional<SignalKind> ParseSignalKind(std::string_view s) {
  for (SignalKind k : kSignalKinds) {
    if (s == SignalKindName(k)) return k;
  }
  return std::nullopt;
}

Result<std::string> NewToken(std::string_view prefix) {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return Internal("no randomness for a new token");
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out(prefix);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(acc >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

const char* ApiRoleName(ApiRole r) { return r == ApiRole::kVendor ? "vendor" : "customer-admin"; }

std::optional<ApiRole> ParseApiRole(std::string_view s) {
  if (s == "vendor") return ApiRole::kVendor;
  if (s == "customer-admin") return ApiRole::kCustomerAdmin;
  return std::nullopt;
}

Status CheckApiGrant(ApiRole role, const std::optional<std::int64_t>& customer_id) {
  if (role == ApiRole::kCustomerAdmin && !customer_id) {
    return InvalidArgument("a customer-admin token needs its customer (--customer)");
  }
  if (role == ApiRole::kVendor && customer_id) {
    return InvalidArgument("a vendor token reads every customer: give no --customer");
  }
  return Status::Ok();
}

std::optional<RiskEvent> RiskChange(const HealthSnapshot& snapshot,
                                    const std::optional<std::string>& before,
                                    const std::vector<std::string>& reasons, std::int64_t now_ms) {
  if (!before || *before == snapshot.risk) return std::nullopt;
  return RiskEvent{.customer_id = snapshot.customer_id,
                   .at_ms = now_ms,
                   .from_risk = *before,
                   .to_risk = snapshot.risk,
                   .reasons = SplitReasons(JoinReasons(reasons))};
}

Result<std::optional<RiskEvent>> SignalStore::RecordHealth(const HealthSnapshot& snapshot,
                                                           const std::vector<std::string>& reasons,
                                                           std::int64_t now_ms) {
  const HealthRecord record{.snapshot = snapshot, .reasons = reasons};
  DP_ASSIGN_OR_RETURN(auto events, RecordHealthBatch(std::span(&record, 1), now_ms));
  return std::move(events.front());
}

std::string JoinReasons(const std::vector<std::string>& reasons) {
  std::string out;
  for (const std::string& r : reasons) {
    std::string line = r;
    std::replace(line.begin(), line.end(), '\n', ' ');
    out += (out.empty() ? "" : "\n") + line;
  }
  return out;
}

std::vector<std::string> SplitReasons(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    out.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

Result<std::unique_ptr<Store>> OpenSideConnection(const StoreOptions& serving) {
  StoreOptions so = serving;
  so.serving = false;
  so.check_at_open = false;
  so.read_only = false;
  return OpenStore(so);
}

}  // namespace deskpulse::collector
