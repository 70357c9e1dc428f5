// Business-signal files: every bad row reported with its line and field, no
// batch at all when anything is wrong, later rows replacing earlier ones with
// the same key, and caps applied before parsing.
#include <gtest/gtest.h>

#include <string>

#include "collector/signals/parse.h"

namespace deskpulse::collector {
namespace {

constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t k20261120 = 20'777LL * kDay;  // 2026-11-20 00:00 UTC

bool HasError(const ParseOutcome& o, const std::string& where, const std::string& field,
              const std::string& part) {
  for (const FieldError& e : o.errors) {
    if (e.where == where && e.field == field && e.message.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

std::string Dump(const ParseOutcome& o) {
  std::string s;
  for (const FieldError& e : o.errors) s += e.where + " [" + e.field + "] " + e.message + "\n";
  return s;
}

TEST(SignalParse, SurveysCsvWithQuotesBomAndBlankLines) {
  const std::string csv =
      "\xEF\xBB\xBF"
      "customer,date,nps,ces,ves,respondents\n"
      "\"Northwind, Ltd\",2026-11-20,35,5.5,6,40\n"
      "\n"
      "Contoso,2026-11-20T09:30:00+02:00,-20,,,12\r\n";
  const ParseOutcome o = ParseSignals(SignalKind::kSurveys, SignalFormat::kCsv, csv);
  ASSERT_TRUE(o.batch.has_value()) << Dump(o);
  ASSERT_EQ(o.batch->surveys.size(), 2u);
  const SurveyRow& a = o.batch->surveys[0];
  EXPECT_EQ(a.customer, "Northwind, Ltd");
  EXPECT_EQ(a.survey.date_ms, k20261120);
  EXPECT_EQ(a.survey.nps, 35);
  EXPECT_EQ(a.survey.ces, 5.5);
  EXPECT_EQ(a.survey.respondents, 40);
  const SurveyRow& b = o.batch->surveys[1];
  EXPECT_EQ(b.survey.date_ms, k20261120 + std::int64_t{9 * 60 + 30 - 120} * 60'000);  // 07:30 UTC
  EXPECT_FALSE(b.survey.ces.has_value());
  EXPECT_EQ(b.where, "line 4");
  EXPECT_EQ(o.batch->content_sha256.size(), 64u);
}

TEST(SignalParse, EveryBadRowIsReportedWithItsLineAndFieldAndNothingIsReturned) {
  const std::string csv =
      "customer,date,nps,ces,ves,respondents\n"
      "Northwind,2026-11-20,35,5,6,40\n"
      "Contoso,2026-02-30,35,5,6,40\n"  // no such day
      "Fabrikam,2026-11-20,140,8,6,40\n"
      "Tailspin,2026-11-20T09:30:00,10,,,4\n"  // a time without its zone
      ",2026-11-20,10,,,4\n"
      "Litware,2026-11-20,,,,\n"
      "Adatum,2026-11-20,ten,,,1.5\n";
  const ParseOutcome o = ParseSignals(SignalKind::kSurveys, SignalFormat::kCsv, csv);
  EXPECT_FALSE(o.batch.has_value());
  EXPECT_TRUE(HasError(o, "line 3", "date", "must be a date")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 4", "nps", "within -100..100, got 140")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 4", "ces", "within 1..7, got 8")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 5", "date", "with its zone")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 6", "customer", "required")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 7", "nps", "at least one of nps, ces, ves")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 8", "nps", "must be a number, got 'ten'")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 8", "respondents", "whole number")) << Dump(o);
  EXPECT_EQ(o.errors.size(), 8u) << Dump(o);
  EXPECT_NE(o.Summary().find("line 3, field date"), std::string::npos) << o.Summary();
  EXPECT_NE(o.Summary().find("and 7 more"), std::string::npos) << o.Summary();
}

TEST(SignalParse, HeaderProblemsStopTheFile) {
  const ParseOutcome o = ParseSignals(SignalKind::kTickets, SignalFormat::kCsv,
                                      "customer,ticket,opened,opened\nNorthwind,T1,2026-11-20\n");
  EXPECT_FALSE(o.batch.has_value());
  EXPECT_TRUE(HasError(o, "header", "ticket", "unknown column for tickets")) << Dump(o);
  EXPECT_TRUE(HasError(o, "header", "opened", "column given twice")) << Dump(o);
  EXPECT_TRUE(HasError(o, "header", "ticket_id", "required column missing")) << Dump(o);
  const ParseOutcome empty = ParseSignals(SignalKind::kTickets, SignalFormat::kCsv, "");
  EXPECT_TRUE(HasError(empty, "header", "", "empty")) << Dump(empty);
}

TEST(SignalParse, MalformedCsvAndRaggedRowsNameTheLine) {
  const ParseOutcome quote =
      ParseSignals(SignalKind::kReviews, SignalFormat::kCsv,
                   "customer,date\nNorthwind,2026-11-20\n\"Cont\"oso,2026-11-21\n");
  EXPECT_FALSE(quote.batch.has_value());
  ASSERT_FALSE(quote.errors.empty());
  EXPECT_EQ(quote.errors[0].where, "line 3") << Dump(quote);
  const ParseOutcome ragged = ParseSignals(SignalKind::kReviews, SignalFormat::kCsv,
                                           "customer,date\nNorthwind,2026-11-20,extra\n");
  EXPECT_TRUE(HasError(ragged, "line 2", "", "3 fields, the header has 2")) << Dump(ragged);
}

TEST(SignalParse, TicketsCheckTheirOrderOfTimes) {
  const std::string csv =
      "customer,ticket_id,opened,first_response,resolved,severity\n"
      "Northwind,T1,2026-11-20T09:00:00Z,2026-11-20T08:00:00Z,,1\n"
      "Northwind,T2,2026-11-20T09:00:00Z,,2026-11-19T09:00:00Z,2\n";
  const ParseOutcome o = ParseSignals(SignalKind::kTickets, SignalFormat::kCsv, csv);
  EXPECT_TRUE(HasError(o, "line 2", "first_response", "before opened")) << Dump(o);
  EXPECT_TRUE(HasError(o, "line 3", "resolved", "before opened")) << Dump(o);
}

TEST(SignalParse, ALaterRowWithTheSameKeyReplacesTheEarlier) {
  const std::string csv =
      "customer,ticket_id,opened,first_response,resolved,severity\n"
      "Northwind,T1,2026-11-20T09:00:00Z,,,2\n"
      "Northwind,T2,2026-11-20T10:00:00Z,,,3\n"
      "Contoso,T1,2026-11-20T11:00:00Z,,,3\n"
      "Northwind,T1,2026-11-20T09:00:00Z,2026-11-20T09:10:00Z,,1\n";
  const ParseOutcome o = ParseSignals(SignalKind::kTickets, SignalFormat::kCsv, csv);
  ASSERT_TRUE(o.batch.has_value()) << Dump(o);
  ASSERT_EQ(o.batch->tickets.size(), 3u);  // Contoso's T1 is another ticket
  EXPECT_EQ(o.batch->tickets[0].ticket.id, "T1");
  EXPECT_EQ(o.batch->tickets[0].ticket.severity, "1");
  EXPECT_TRUE(o.batch->tickets[0].ticket.first_response_ms.has_value());
  EXPECT_EQ(o.batch->tickets[0].where, "line 5");
}

TEST(SignalParse, ContractsAsJson) {
  const std::string json = R"([
    {"customer": "Northwind", "tier": "a", "annual_value": 480000, "start": "2024-03-01",
     "renewal": "2027-03-01", "renewal_status": "pending", "expected_savings": 100000,
     "realised_savings": null, "sla_boot_s": 30, "sla_boot_pct": 95},
    {"customer": "Contoso", "tier": "D", "annual_value": -1, "start": "2024-03-01",
     "renewal": "2023-03-01", "renewal_status": "maybe", "colour": "red", "sla_rtt_pct": true}
  ])";
  const ParseOutcome o = ParseSignals(SignalKind::kContracts, SignalFormat::kJson, json);
  EXPECT_FALSE(o.batch.has_value());
  EXPECT_TRUE(HasError(o, "record 2", "tier", "S, A, B or C")) << Dump(o);
  EXPECT_TRUE(HasError(o, "record 2", "annual_value", "within 0..")) << Dump(o);
  EXPECT_TRUE(HasError(o, "record 2", "renewal_status", "pending, renewed or cancelled"))
      << Dump(o);
  EXPECT_TRUE(HasError(o, "record 2", "colour", "unknown field for contracts")) << Dump(o);
  EXPECT_TRUE(HasError(o, "record 2", "sla_rtt_pct", "string or a number")) << Dump(o);
  EXPECT_FALSE(HasError(o, "record 1", "tier", "")) << Dump(o);

  const std::string good = R"([{"customer": "Northwind", "tier": "a", "annual_value": 480000,
    "start": "2024-03-01", "renewal": "2027-03-01", "renewal_status": "renewed",
    "sla_boot_s": 30, "sla_boot_pct": 95}])";
  const ParseOutcome g = ParseSignals(SignalKind::kContracts, SignalFormat::kJson, good);
  ASSERT_TRUE(g.batch.has_value()) << Dump(g);
  const ContractRow& c = g.batch->contracts.at(0);
  EXPECT_EQ(c.contract.tier, 'A');
  EXPECT_EQ(c.contract.renewal_status, scoring::RenewalStatus::kRenewed);
  EXPECT_EQ(c.sla.boot_s, 30);
  EXPECT_FALSE(c.sla.rtt_ms.has_value());
  EXPECT_FALSE(c.contract.expected_savings.has_value());
}

TEST(SignalParse, MalformedJsonNamesWhere) {
  const ParseOutcome bad =
      ParseSignals(SignalKind::kReviews, SignalFormat::kJson, R"([{"customer": "N", )");
  ASSERT_FALSE(bad.errors.empty());
  EXPECT_NE(bad.errors[0].where.find("byte"), std::string::npos) << Dump(bad);
  const ParseOutcome object =
      ParseSignals(SignalKind::kReviews, SignalFormat::kJson, R"({"customer": "N"})");
  EXPECT_TRUE(HasError(object, "file", "", "array of objects")) << Dump(object);
  const ParseOutcome deep = ParseSignals(SignalKind::kReviews, SignalFormat::kJson,
                                         std::string(100'000, '[') + std::string(100'000, ']'));
  EXPECT_TRUE(HasError(deep, "file", "", "nests deeper")) << Dump(deep);
}

TEST(SignalParse, SizesAreCappedBeforeParsing) {
  SignalLimits limits;
  limits.max_bytes = 1000;
  const std::string big = "customer,date\n" + std::string(2000, 'x');
  const ParseOutcome o = ParseSignals(SignalKind::kReviews, SignalFormat::kCsv, big, limits);
  EXPECT_TRUE(HasError(o, "file", "", "over the 1000 byte limit")) << Dump(o);

  limits = {};
  limits.max_rows = 2;
  const ParseOutcome rows =
      ParseSignals(SignalKind::kReviews, SignalFormat::kCsv,
                   "customer,date\nA,2026-11-01\nB,2026-11-02\nC,2026-11-03\n", limits);
  EXPECT_TRUE(HasError(rows, "line 4", "", "more than 2 rows")) << Dump(rows);

  limits = {};
  limits.max_field_bytes = 10;
  const ParseOutcome field = ParseSignals(SignalKind::kReviews, SignalFormat::kCsv,
                                          "customer,date\nNorthwind Traders,2026-11-01\n", limits);
  EXPECT_TRUE(HasError(field, "line 2", "customer", "longer than 10 bytes")) << Dump(field);

  limits = {};
  limits.max_errors = 3;
  std::string many = "customer,date\n";
  for (int i = 0; i < 50; ++i) many += "X,not-a-date\n";
  const ParseOutcome capped = ParseSignals(SignalKind::kReviews, SignalFormat::kCsv, many, limits);
  EXPECT_EQ(capped.errors.size(), 3u);
  EXPECT_EQ(capped.more_errors, 47u);
}

TEST(SignalParse, FormatFromTheNameOrTheFirstByte) {
  EXPECT_EQ(SignalFormatOf("a/b/Tickets.JSON", "customer"), SignalFormat::kJson);
  EXPECT_EQ(SignalFormatOf("tickets.csv", "[{"), SignalFormat::kCsv);
  EXPECT_EQ(SignalFormatOf("-", "  [{}]"), SignalFormat::kJson);
  EXPECT_EQ(SignalFormatOf("-", "customer,date"), SignalFormat::kCsv);
}

}  // namespace
}  // namespace deskpulse::collector
