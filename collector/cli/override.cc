// deskpulse-collector override: an account manager's value for a business
// factor, with its reason, until it expires (docs/scoring.md, "Overrides").
#include <ctime>
#include <iostream>

#include "collector/cli/commands.h"
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

/// Midnight UTC of `date` (YYYY-MM-DD), or nothing when it is not one.
std::optional<std::int64_t> DateMs(const std::string& date) {
  std::tm tm{};
  const char* end = strptime(date.c_str(), "%Y-%m-%d", &tm);
  if (end == nullptr || *end != '\0' || date.size() != 10) return std::nullopt;
  const int day = tm.tm_mday;
  const std::time_t t = timegm(&tm);
  if (tm.tm_mday != day) return std::nullopt;  // 2026-02-30
  return static_cast<std::int64_t>(t) * 1000;
}

int SetOverride(const OverrideArgs& a) {
  (void)SetUpLogging("collector", "warn");  // errors on standard error, before the store opens
  const auto factor = scoring::ParseFactor(a.factor);
  if (!factor || *factor == scoring::Factor::kTechnical) {
    return Fail(InvalidArgument(
        "--factor must be value, service, brand or relationship (technical is measured)"));
  }
  if (a.reason.empty() || a.reason.size() > 500) {
    return Fail(InvalidArgument("--reason must be 1..500 characters: say why"));
  }
  const auto expires = DateMs(a.expires);
  const std::int64_t now = NowMs();
  if (!expires) return Fail(InvalidArgument("--expires must be a date, YYYY-MM-DD"));
  if (*expires <= now) return Fail(InvalidArgument("--expires must be in the future"));
  auto store = OpenForCommand(a.db, /*read_only=*/false);
  if (!store.ok()) return Fail(store.status());
  auto customers = (*store)->ListCustomers();
  if (!customers.ok()) return Fail(customers.status());
  std::optional<std::int64_t> id;
  for (const Customer& c : *customers) {
    if (c.name == a.customer) id = c.id;
  }
  if (!id) return Fail(NotFound("no customer named '" + a.customer + "'"));
  const scoring::Override o{
      .factor = *factor, .value = a.value, .reason = a.reason, .expires_ms = *expires};
  if (Status s = (*store)->SetOverride(*id, o, now); !s.ok()) return Fail(s);
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
      ->check(CLI::IsMember({"value", "service", "brand", "relationship"}));
  sub->add_option("--value", args->value, "the factor's score, 0..100")
      ->required()
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option("--reason", args->reason, "why, shown with the override everywhere")->required();
  sub->add_option("--expires", args->expires, "YYYY-MM-DD (UTC): the override ends then")
      ->required();
  sub->callback([run, args] { *run = [args] { return SetOverride(*args); }; });
}

}  // namespace deskpulse::collector::cli
