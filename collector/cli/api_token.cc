// deskpulse-collector api-token create|list|revoke: the API's bearer tokens
// (docs/api.md). A token is printed once, at creation; only its SHA-256 is
// stored.
#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"

namespace deskpulse::collector::cli {
namespace {

struct ApiTokenArgs {
  std::string db;
  std::string role;
  std::string customer;
  std::int64_t token_id = 0;
};

std::string When(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// A token's id, never the token: a pasted token is neither accepted nor
/// repeated back.
CLI::Validator TokenId() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (::deskpulse::cli::LooksLikeSecret(value)) {
          return "must be the token's id, as api-token list shows it, not the token itself "
                 "(which is not shown here)";
        }
        std::int64_t id = 0;
        const char* end = value.data() + value.size();
        const auto [ptr, ec] = std::from_chars(value.data(), end, id);
        if (value.empty() || ec != std::errc() || ptr != end || id < 1) {
          return "must be a token's id, a number as api-token list shows it, not " +
                 ::deskpulse::cli::Shown(value);
        }
        return {};
      },
      "ID", "TokenId");
}

int Create(const ApiTokenArgs& a) {
  const auto role = ParseApiRole(a.role);
  if (!role) return Fail(InvalidArgument("--role must be vendor or customer-admin"));
  // The vendor's first token may come before serve has run: like token
  // create, this makes the store, and says so.
  std::error_code ec;
  const bool new_file = !IsPostgresUri(a.db) && !std::filesystem::exists(a.db, ec);
  auto store = OpenForCommand(a.db, StoreUse::kCreate);
  if (!store.ok()) return Fail(store.status());
  if (new_file) std::cerr << CommandName() << ": made a new store at " << a.db << "\n";
  std::optional<std::int64_t> customer_id;
  if (!a.customer.empty()) {
    auto customer = FindCustomerNamed(**store, a.customer);
    if (!customer.ok()) return Fail(customer.status());
    customer_id = customer->id;
  }
  auto created = (*store)->CreateApiToken(*role, customer_id, NowMs());
  if (!created.ok()) return Fail(created.status());
  std::cerr << CommandName() << ": api token " << created->first.id << " (" << a.role
            << (a.customer.empty() ? "" : ", " + a.customer)
            << ") created; the token itself is on standard output, this once only\n";
  std::cout << created->second << "\n";
  return kExitOk;
}

int List(const ApiTokenArgs& a) {
  auto store = OpenForCommand(a.db, StoreUse::kRead);
  if (!store.ok()) return Fail(store.status());
  auto tokens = (*store)->ListApiTokens();
  if (!tokens.ok()) return Fail(tokens.status());
  std::cout << fmt::format("{:>6}  {:<15} {:<24} {:<21} {}\n", "ID", "ROLE", "CUSTOMER", "CREATED",
                           "REVOKED");
  for (const ApiToken& t : *tokens) {
    std::cout << fmt::format("{:>6}  {:<15} {:<24} {:<21} {}\n", t.id, ApiRoleName(t.role),
                             t.customer ? t.customer->name.substr(0, 24) : std::string("(all)"),
                             When(t.created_ms), t.revoked_ms ? When(*t.revoked_ms) : "-");
  }
  return kExitOk;
}

int Revoke(const ApiTokenArgs& a) {
  auto store = OpenForCommand(a.db, StoreUse::kWrite);
  if (!store.ok()) return Fail(store.status());
  if (Status s = (*store)->RevokeApiToken(a.token_id, NowMs()); !s.ok()) return Fail(s);
  std::cout << "api token " << a.token_id << " revoked\n";
  return kExitOk;
}

}  // namespace

void AddApiToken(CLI::App& app, Run* run) {
  auto args = std::make_shared<ApiTokenArgs>();
  auto* sub = app.add_subcommand("api-token", "Manage the JSON API's bearer tokens");
  sub->require_subcommand(1);
  auto* create = sub->add_subcommand("create", "Create a token; prints it once");
  AddDbOption(create, &args->db)->required();
  create->add_option("--role", args->role, "vendor (every customer) or customer-admin (one)")
      ->required()
      ->check(OneOf({"vendor", "customer-admin"}));
  create->add_option("--customer", args->customer, "the customer-admin's customer");
  create->callback([run, args] { *run = [args] { return Create(*args); }; });
  auto* list = sub->add_subcommand("list", "List tokens (never the tokens themselves)");
  AddDbOption(list, &args->db)->required();
  list->callback([run, args] { *run = [args] { return List(*args); }; });
  auto* revoke = sub->add_subcommand("revoke", "Revoke a token by its id");
  AddDbOption(revoke, &args->db)->required();
  revoke->add_option("TOKEN_ID", args->token_id, "as api-token list shows it")
      ->required()
      ->check(TokenId());
  revoke->callback([run, args] { *run = [args] { return Revoke(*args); }; });
}

}  // namespace deskpulse::collector::cli
