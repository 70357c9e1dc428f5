// deskpulse-collector override: an account manager's value for a business
// factor, with its reason, until it expires (docs/scoring.md, "Overrides").
#include <ctime>
#include <iostream>

#include "collector/cli/commands.h"
#include "collector/signals/parse.h"
#include "deskpulse/common/exit_codes.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::collector::cli {
namespace {

struct OverrideArgs {
  std::string db;
  std::string customer;
  std::string factor;
  double value = 0;
  std::string reason;
  std::string expires;  // YYYY-MM-DD, UTC
};

int SetOverride(const OverrideArgs& a) {
  (void)SetUpLogging("collector", "warn");  // errors on standard error, before the store opens
  const std::int64_t now = NowMs();
  std::string field;
  auto o = MakeOverride(a.factor, a.value, a.reason, a.expires, now, &field);
  if (!o.ok()) return Fail(InvalidArgument("--" + o.status().message()));
  auto store = OpenForCommand(a.db, StoreUse::kWrite);
  if (!store.ok()) return Fail(store.status());
  auto customer = FindCustomerNamed(**store, a.customer);
  if (!customer.ok()) return Fail(customer.status());
  if (Status s = (*store)->SetOverride(customer->id, *o, now); !s.ok()) return Fail(s);
  std::cout << a.customer << ": " << a.factor << " overridden to " << a.value << " until "
            << a.expires << " (" << a.reason << ")\n";
  return kExitOk;
}

}  // namespace

void AddOverride(CLI::App& app, Run* run) {
  auto args = std::make_shared<OverrideArgs>();
  auto* sub = app.add_subcommand(
      "override", "Override a customer's business factor with a value and a reason, until a date");
  AddDbOption(sub, &args->db)->required();
  sub->add_option("--customer", args->customer, "the customer")->required();
  sub->add_option("--factor", args->factor, "value, service, brand or relationship")
      ->required()
      ->check(OneOf({"value", "service", "brand", "relationship"}));
  sub->add_option("--value", args->value, "the factor's score, 0..100")
      ->required()
      ->check(Number(0.0, 100.0));
  sub->add_option("--reason", args->reason, "why, shown with the override everywhere")->required();
  sub->add_option("--expires", args->expires, "YYYY-MM-DD (UTC): the override ends then")
      ->required();
  sub->callback([run, args] { *run = [args] { return SetOverride(*args); }; });
}

}  // namespace deskpulse::collector::cli
