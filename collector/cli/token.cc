#include <algorithm>
#include <filesystem>
#include <iostream>

#include "collector/cli/commands.h"
#include "deskpulse/common/exit_codes.h"

namespace deskpulse::collector::cli {
namespace {

struct TokenArgs {
  std::string db;
  std::string customer;
};

int TokenCreate(const TokenArgs& a) {
  std::error_code ec;
  const bool new_file = !IsPostgresUri(a.db) && !std::filesystem::exists(a.db, ec);
  auto store = OpenForCommand(a.db, StoreUse::kCreate);
  if (!store.ok()) return Fail(store.status());
  auto customers = (*store)->ListCustomers();
  if (!customers.ok()) return Fail(customers.status());
  const bool new_customer = std::none_of(customers->begin(), customers->end(),
                                         [&](const Customer& c) { return c.name == a.customer; });
  auto token = (*store)->CreateToken(a.customer, NowMs());
  if (!token.ok()) return Fail(token.status());
  // Said on standard error, so that a typo in --db or --customer shows at once.
  if (new_file) std::cerr << CommandName() << ": made a new store at " << a.db << "\n";
  if (new_customer) std::cerr << CommandName() << ": added customer '" << a.customer << "'\n";
  std::cout << *token << "\n";
  return kExitOk;
}

}  // namespace

void AddToken(CLI::App& app, Run* run) {
  auto args = std::make_shared<TokenArgs>();
  auto* token = app.add_subcommand("token", "Manage enrollment tokens");
  token->require_subcommand(1);
  auto* create = token->add_subcommand("create", "Create a token for a customer; prints it");
  AddDbOption(create, &args->db)->required();
  create->add_option("--customer", args->customer, "customer name (created if new)")->required();
  create->callback([run, args] { *run = [args] { return TokenCreate(*args); }; });
}

}  // namespace deskpulse::collector::cli
