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
  auto store = OpenForCommand(a.db, /*read_only=*/false);
  if (!store.ok()) return Fail(store.status());
  auto token = (*store)->CreateToken(a.customer, NowMs());
  if (!token.ok()) return Fail(token.status());
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
