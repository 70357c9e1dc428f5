#include "collector/scoring/loyalty.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>
#include <map>
#include <utility>

#include "deskpulse/common/text.h"

namespace deskpulse::scoring {

namespace {

constexpr std::int64_t kDayMs = 86'400'000;

/// EventScore for a figure where more is better: 1 at or above `good`.
double HigherIsBetter(double x, double good, double poor) { return EventScore(-x, -good, -poor); }

std::string Date(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

Input Named(const char* name) {
  Input in;
  in.name = name;
  return in;
}

double Days(std::int64_t ms) { return static_cast<double>(ms) / kDayMs; }

std::string Minutes(double min) {
  return min < 120 ? fmt::format("{:.0f} min", min) : fmt::format("{:.1f} h", min / 60);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

const char* FactorLabel(Factor f) {
  switch (f) {
    case Factor::kTechnical:
      return "TPS";
    case Factor::kValue:
      return "Value";
    case Factor::kService:
      return "Service";
    case Factor::kBrand:
      return "Brand";
    case Factor::kRelationship:
      return "Relationship";
  }
  return "?";
}

/// The newest survey that carries `field`, if any.
const Survey* NewestWith(const std::vector<Survey>& surveys, std::int64_t now_ms,
                         std::optional<double> Survey::*field) {
  const Survey* best = nullptr;
  for (const Survey& s : surveys) {
    if (!(s.*field) || s.date_ms > now_ms) continue;
    if (best == nullptr || s.date_ms > best->date_ms) best = &s;
  }
  return best;
}

/// An input from the newest survey's `field`, scored by `score`; stale past
/// the policy's survey age.
template <typename ScoreFn>
Input SurveyInput(const char* name, const std::vector<Survey>& surveys,
                  std::optional<double> Survey::*field, std::int64_t now_ms, const LoyaltyPolicy& p,
                  ScoreFn score) {
  Input in = Named(name);
  const Survey* s = NewestWith(surveys, now_ms, field);
  if (s == nullptr) {
    in.detail = fmt::format("{}: no survey has it", name);
    return in;
  }
  const double age = Days(now_ms - s->date_ms);
  const std::string from =
      fmt::format("survey {}, {}", Date(s->date_ms), Counted(s->respondents, "respondent"));
  if (age > p.survey_max_age_days) {
    in.stale = true;
    in.detail = fmt::format("{}: stale, the last ({}) is {} old, over {}", name, from,
                            CountedRounded(age, "day"), p.survey_max_age_days);
    return in;
  }
  in.score = score(*(s->*field));
  in.detail = fmt::format("{} {:g} ({})", name, *(s->*field), from);
  return in;
}

/// Ticket times of the window: the minutes each ticket took or, still
/// waiting past `poor_min`, has waited so far. Waits shorter than that are
/// not scored yet.
struct TicketTimes {
  std::vector<double> minutes;
  int waiting = 0;
};
TicketTimes Times(const std::vector<const Ticket*>& tickets, std::int64_t now_ms, double poor_min,
                  std::optional<std::int64_t> Ticket::*done) {
  TicketTimes t;
  for (const Ticket* k : tickets) {
    if (k->*done) {
      t.minutes.push_back(std::max<double>(0, static_cast<double>(*(k->*done) - k->opened_ms)) /
                          60'000);
    } else if (static_cast<double>(now_ms - k->opened_ms) / 60'000 >= poor_min) {
      t.minutes.push_back(static_cast<double>(now_ms - k->opened_ms) / 60'000);
      ++t.waiting;
    }
  }
  return t;
}

Input TicketInput(const char* name, const std::vector<const Ticket*>& tickets, std::int64_t now_ms,
                  double good_min, double poor_min, std::optional<std::int64_t> Ticket::*done,
                  const LoyaltyPolicy& p) {
  Input in = Named(name);
  const TicketTimes t = Times(tickets, now_ms, poor_min, done);
  if (t.minutes.empty()) {
    in.detail = tickets.empty()
                    ? fmt::format("{}: no ticket opened in the last {}", name,
                                  Counted(p.ticket_window_days, "day"))
                    : fmt::format("{}: {} due yet", name,
                                  tickets.size() == 1
                                      ? std::string("the one ticket is not")
                                      : fmt::format("none of {} tickets is", tickets.size()));
    return in;
  }
  double sum = 0;
  for (double m : t.minutes) sum += EventScore(m, good_min, poor_min);
  in.score = 100 * sum / static_cast<double>(t.minutes.size());
  in.detail = fmt::format("{} p50 {} on {}", name, Minutes(Median(t.minutes)),
                          Counted(static_cast<std::int64_t>(t.minutes.size()), "ticket"));
  if (t.waiting > 0) in.detail += fmt::format(", {} still waiting", t.waiting);
  return in;
}

std::vector<Input> ValueInputs(const BusinessSignals& s, std::int64_t now_ms,
                               const LoyaltyPolicy& p) {
  std::vector<Input> inputs;
  inputs.push_back(SurveyInput("VES", s.surveys, &Survey::ves, now_ms, p, [&](double v) {
    return 100 * HigherIsBetter(v, p.survey_scale_good, p.survey_scale_poor);
  }));
  Input savings = Named("savings");
  if (s.contract && s.contract->expected_savings && s.contract->realised_savings &&
      *s.contract->expected_savings > 0) {
    const double ratio = *s.contract->realised_savings / *s.contract->expected_savings;
    savings.score = 100 * HigherIsBetter(ratio, p.savings_good_ratio, p.savings_poor_ratio);
    savings.detail = fmt::format("savings realised {:.0f}% of expected ({:g} of {:g})", 100 * ratio,
                                 *s.contract->realised_savings, *s.contract->expected_savings);
  } else {
    savings.detail = "savings: no expected and realised savings in the contract";
  }
  inputs.push_back(std::move(savings));
  return inputs;
}

std::vector<Input> ServiceInputs(const BusinessSignals& s, std::int64_t now_ms,
                                 const LoyaltyPolicy& p) {
  std::vector<const Ticket*> recent;
  for (const Ticket& t : s.tickets) {
    if (t.opened_ms <= now_ms && now_ms - t.opened_ms <= p.ticket_window_days * kDayMs) {
      recent.push_back(&t);
    }
  }
  std::vector<Input> inputs;
  inputs.push_back(TicketInput("first response", recent, now_ms, p.first_response_good_min,
                               p.first_response_poor_min, &Ticket::first_response_ms, p));
  inputs.push_back(TicketInput("resolution", recent, now_ms, p.resolution_good_h * 60,
                               p.resolution_poor_h * 60, &Ticket::resolved_ms, p));
  inputs.push_back(SurveyInput("CES", s.surveys, &Survey::ces, now_ms, p, [&](double v) {
    return 100 * HigherIsBetter(v, p.survey_scale_good, p.survey_scale_poor);
  }));
  return inputs;
}

std::vector<Input> BrandInputs(const BusinessSignals& s, std::int64_t now_ms,
                               const LoyaltyPolicy& p) {
  // -100..100 onto 0..100: the healthy bar, NPS 40, lands on 70, the good band.
  return {SurveyInput("NPS", s.surveys, &Survey::nps, now_ms, p,
                      [](double v) { return std::clamp((v + 100) / 2, 0.0, 100.0); })};
}

/// Days a pending renewal is past its date (negative: not due yet).
std::optional<double> RenewalOverdueDays(const BusinessSignals& s, std::int64_t now_ms) {
  if (!s.contract || s.contract->renewal_status != RenewalStatus::kPending) return std::nullopt;
  return Days(now_ms - s.contract->renewal_ms);
}

std::vector<Input> RelationshipInputs(const BusinessSignals& s, std::int64_t now_ms,
                                      const LoyaltyPolicy& p) {
  std::vector<Input> inputs;
  Input review = Named("business review");
  std::optional<std::int64_t> last;
  for (std::int64_t d : s.review_dates_ms) {
    if (d <= now_ms && (!last || d > *last)) last = d;
  }
  if (!last) {
    review.detail = "business review: none held";
  } else if (const double age = Days(now_ms - *last); age > p.review_max_age_days) {
    review.stale = true;
    review.detail = fmt::format("business review: stale, the last ({}) is {} old, over {}",
                                Date(*last), CountedRounded(age, "day"), p.review_max_age_days);
  } else {
    review.score = 100 * EventScore(age, p.review_good_days, p.review_poor_days);
    review.detail =
        fmt::format("last business review {} ago ({})", CountedRounded(age, "day"), Date(*last));
  }
  inputs.push_back(std::move(review));

  Input renewal = Named("renewal");
  if (!s.contract) {
    renewal.detail = "renewal: no contract imported";
  } else if (s.contract->renewal_status == RenewalStatus::kRenewed) {
    renewal.score = 100;
    renewal.detail = fmt::format("renewed (renewal date {})", Date(s.contract->renewal_ms));
  } else if (s.contract->renewal_status == RenewalStatus::kCancelled) {
    renewal.score = 0;
    renewal.detail =
        fmt::format("renewal cancelled (renewal date {})", Date(s.contract->renewal_ms));
  } else {
    const double overdue = *RenewalOverdueDays(s, now_ms);
    renewal.score = 100 * EventScore(overdue, 0, p.renewal_overdue_poor_days);
    renewal.detail =
        overdue > 0 ? fmt::format("renewal {} overdue (due {})", CountedRounded(overdue, "day"),
                                  Date(s.contract->renewal_ms))
                    : fmt::format("renewal pending, due {} in {}", Date(s.contract->renewal_ms),
                                  CountedRounded(-overdue, "day"));
  }
  inputs.push_back(std::move(renewal));
  return inputs;
}

std::vector<Input> TechnicalInputs(const TechScore& t) {
  std::vector<Input> inputs;
  auto add = [&](const char* name, const Component& c) {
    Input in = Named(name);
    in.score = c.score;
    in.weight = c.weight;
    in.detail = c.score ? fmt::format("{} {:.0f}: {}", name, *c.score, c.detail)
                        : fmt::format("{}: no data in the window", name);
    in.source = c.source;
    inputs.push_back(std::move(in));
  };
  add("latency", t.latency);
  add("boot", t.boot);
  add("peripherals", t.peripherals);
  add("stability", t.stability);
  return inputs;
}

/// The factor's own score: the mean of its inputs with data.
void ScoreFactor(FactorScore& f) {
  double sum = 0;
  int n = 0;
  bool stale = false;
  for (const Input& in : f.inputs) {
    if (in.score) {
      sum += *in.score;
      ++n;
    }
    stale = stale || in.stale;
  }
  if (n > 0) f.score = sum / n;
  f.stale = n == 0 && stale;
}

/// The newest day at or before `day_ms` and no more than `slack_days`
/// earlier that has a value.
std::optional<double> ValueAt(const std::map<std::int64_t, std::optional<double>>& days,
                              std::int64_t day_ms, int slack_days) {
  auto it = days.upper_bound(day_ms);
  while (it != days.begin()) {
    --it;
    if (it->first < day_ms - slack_days * kDayMs) break;
    if (it->second) return it->second;
  }
  return std::nullopt;
}

Trend TrendOf(const std::vector<DaySnapshot>& history, std::optional<double> DaySnapshot::*field,
              std::int64_t today_ms, std::optional<double> today) {
  std::map<std::int64_t, std::optional<double>> days;
  for (const DaySnapshot& s : history) {
    if (s.day_ms < today_ms) days[s.day_ms] = s.*field;
  }
  days[today_ms] = today;
  Trend t;
  // A change compares with the snapshot of that day, or the nearest one up to
  // 3 days earlier: never with a later one, which would shorten the period.
  auto change = [&](int n) -> std::optional<double> {
    const auto then = ValueAt(days, today_ms - n * kDayMs, 3);
    if (!today || !then) return std::nullopt;
    return *today - *then;
  };
  t.change_7d = change(7);
  t.change_30d = change(30);
  for (int k = 12; k >= 0; --k)
    t.weekly.push_back(ValueAt(days, today_ms - std::int64_t{7} * k * kDayMs, 6));
  return t;
}

}  // namespace

const char* RenewalStatusName(RenewalStatus s) {
  switch (s) {
    case RenewalStatus::kPending:
      return "pending";
    case RenewalStatus::kRenewed:
      return "renewed";
    case RenewalStatus::kCancelled:
      return "cancelled";
  }
  return "?";
}

std::optional<RenewalStatus> ParseRenewalStatus(std::string_view s) {
  for (RenewalStatus r :
       {RenewalStatus::kPending, RenewalStatus::kRenewed, RenewalStatus::kCancelled}) {
    if (s == RenewalStatusName(r)) return r;
  }
  return std::nullopt;
}

const char* FactorName(Factor f) {
  switch (f) {
    case Factor::kTechnical:
      return "technical";
    case Factor::kValue:
      return "value";
    case Factor::kService:
      return "service";
    case Factor::kBrand:
      return "brand";
    case Factor::kRelationship:
      return "relationship";
  }
  return "?";
}

std::optional<Factor> ParseFactor(std::string_view s) {
  for (Factor f : kFactors) {
    if (s == FactorName(f)) return f;
  }
  return std::nullopt;
}

const char* RiskName(Risk r) {
  switch (r) {
    case Risk::kUnknown:
      return "unknown";
    case Risk::kLow:
      return "low";
    case Risk::kMedium:
      return "medium";
    case Risk::kHigh:
      return "high";
  }
  return "?";
}

double LoyaltyPolicy::Weight(Factor f) const {
  switch (f) {
    case Factor::kTechnical:
      return weight_technical;
    case Factor::kValue:
      return weight_value;
    case Factor::kService:
      return weight_service;
    case Factor::kBrand:
      return weight_brand;
    case Factor::kRelationship:
      return weight_relationship;
  }
  return 0;
}

Status LoyaltyPolicy::Validate() const {
  double sum = 0;
  for (Factor f : kFactors) {
    if (Weight(f) < 0) return InvalidArgument("loyalty policy: weights must not be negative");
    sum += Weight(f);
  }
  if (sum <= 0) return InvalidArgument("loyalty policy: weights sum to 0");
  if (survey_max_age_days < 1 || review_max_age_days < 1 || ticket_window_days < 1) {
    return InvalidArgument("loyalty policy: ages and windows must be at least 1 day");
  }
  auto ordered = [](double good, double poor, const char* name) -> Status {
    if (!(good < poor)) {
      return InvalidArgument(std::string("loyalty policy: ") + name +
                             " good threshold must be below poor");
    }
    return Status::Ok();
  };
  DP_RETURN_IF_ERROR(ordered(first_response_good_min, first_response_poor_min, "first response"));
  DP_RETURN_IF_ERROR(ordered(resolution_good_h, resolution_poor_h, "resolution"));
  DP_RETURN_IF_ERROR(ordered(review_good_days, review_poor_days, "business review"));
  DP_RETURN_IF_ERROR(ordered(survey_scale_poor, survey_scale_good, "survey scale (reversed)"));
  DP_RETURN_IF_ERROR(ordered(savings_poor_ratio, savings_good_ratio, "savings (reversed)"));
  if (renewal_overdue_poor_days <= 0) {
    return InvalidArgument("loyalty policy: renewal_overdue_poor_days must be > 0");
  }
  return Status::Ok();
}

LoyaltyHealth ScoreLoyalty(const TechScore& tech, const BusinessSignals& signals,
                           const std::vector<DaySnapshot>& history, std::int64_t now_ms,
                           const LoyaltyPolicy& p) {
  LoyaltyHealth h;
  for (Factor f : kFactors) {
    FactorScore fs;
    fs.factor = f;
    fs.weight = p.Weight(f);
    switch (f) {
      case Factor::kTechnical:
        fs.inputs = TechnicalInputs(tech);
        break;
      case Factor::kValue:
        fs.inputs = ValueInputs(signals, now_ms, p);
        break;
      case Factor::kService:
        fs.inputs = ServiceInputs(signals, now_ms, p);
        break;
      case Factor::kBrand:
        fs.inputs = BrandInputs(signals, now_ms, p);
        break;
      case Factor::kRelationship:
        fs.inputs = RelationshipInputs(signals, now_ms, p);
        break;
    }
    if (f == Factor::kTechnical) {
      fs.score = tech.tps;  // weighted by the policy, not the plain mean of its inputs
    } else {
      ScoreFactor(fs);
      // An override holds until it expires; the newest one wins.
      for (const Override& o : signals.overrides) {
        if (o.factor == f && now_ms < o.expires_ms) fs.override_applied = o;
      }
      if (fs.override_applied) {
        fs.score = std::clamp(fs.override_applied->value, 0.0, 100.0);
        fs.stale = false;
      }
    }
    h.factors.push_back(std::move(fs));
  }

  double weight_total = 0;
  double weight_with_data = 0;
  double weighted = 0;
  for (const FactorScore& f : h.factors) {
    weight_total += f.weight;
    if (!f.score) continue;
    weight_with_data += f.weight;
    weighted += f.weight * *f.score;
  }
  h.coverage = weight_total > 0 ? weight_with_data / weight_total : 0;
  if (weight_with_data > 0) h.lhi = weighted / weight_with_data;

  // Drivers: the LHI points each input costs. A factor's loss is split over
  // its inputs with data by their weights: evenly for a business factor (its
  // score is their mean), by the TPS weights for the technical one.
  for (const FactorScore& f : h.factors) {
    if (!f.score) {
      for (const Input& in : f.inputs) h.gaps.push_back(in.detail);
      h.gaps.push_back(fmt::format("{} excluded: {}", FactorLabel(f.factor),
                                   f.stale ? "only stale data" : "no data"));
      continue;
    }
    const double share = f.weight / weight_with_data;
    if (f.override_applied) {
      const double lost = 100 - *f.score;
      if (lost > 0) {
        h.drivers.push_back(
            {.factor = f.factor,
             .text =
                 fmt::format("{} overridden to {:.0f} until {}: {} (-{:.1f} points of {})",
                             FactorLabel(f.factor), *f.score, Date(f.override_applied->expires_ms),
                             f.override_applied->reason, lost, FactorLabel(f.factor)),
             .lhi_points = share * lost,
             .factor_points = lost,
             .where = {}});
      }
      continue;
    }
    double input_weight = 0;
    for (const Input& in : f.inputs) {
      if (in.score) input_weight += in.weight;
    }
    for (const Input& in : f.inputs) {
      if (!in.score) {
        h.gaps.push_back(in.detail);
        continue;
      }
      const double points = in.weight / input_weight * (100 - *in.score);
      if (points <= 0) continue;
      if (in.source) {
        // Where it comes from: the group that costs most, then the rest.
        const LossSource& src = *in.source;
        const std::string where = src.dimension + " " + src.name;
        const double mine = points * src.share;
        h.drivers.push_back(
            {.factor = f.factor,
             .text = fmt::format("{} {} on {} {} {} (-{:.1f} points of {})", in.name, src.figures,
                                 src.endpoints, src.endpoints == 1 ? "endpoint" : "endpoints",
                                 src.dimension == "protocol" ? "over " + src.name : "of " + where,
                                 mine, FactorLabel(f.factor)),
             .lhi_points = share * mine,
             .factor_points = mine,
             .where = where});
        if (points - mine > 0) {
          h.drivers.push_back(
              {.factor = f.factor,
               .text = fmt::format("{} {} on the other {}{} (-{:.1f} points of {})", in.name,
                                   src.rest_figures, Counted(src.rest_endpoints, "endpoint"),
                                   src.dimension == "protocol" ? " (other protocols)" : "",
                                   points - mine, FactorLabel(f.factor)),
               .lhi_points = share * (points - mine),
               .factor_points = points - mine,
               .where = {}});
        }
        continue;
      }
      h.drivers.push_back({.factor = f.factor,
                           .text = fmt::format("{} (-{:.1f} points of {})", in.detail, points,
                                               FactorLabel(f.factor)),
                           .lhi_points = share * points,
                           .factor_points = points,
                           .where = {}});
    }
  }
  std::stable_sort(h.drivers.begin(), h.drivers.end(),
                   [](const Driver& a, const Driver& b) { return a.lhi_points > b.lhi_points; });

  const std::int64_t today = now_ms / kDayMs * kDayMs;
  h.tps_trend = TrendOf(history, &DaySnapshot::tps, today, tech.tps);
  h.lhi_trend = TrendOf(history, &DaySnapshot::lhi, today, h.lhi);

  // Churn risk: every rule that holds, high ones first.
  std::vector<std::string> high, medium;
  const Input& nps = h.factors[static_cast<int>(Factor::kBrand)].inputs[0];
  if (const Survey* s = NewestWith(signals.surveys, now_ms, &Survey::nps);
      s != nullptr && nps.score && *s->nps < p.high_nps_below) {
    high.push_back(fmt::format("NPS {:g} < {:g} ({}, {})", *s->nps, p.high_nps_below,
                               Date(s->date_ms), Counted(s->respondents, "respondent")));
  }
  if (signals.contract && signals.contract->renewal_status == RenewalStatus::kCancelled) {
    high.push_back(
        fmt::format("renewal cancelled (renewal date {})", Date(signals.contract->renewal_ms)));
  }
  if (const auto overdue = RenewalOverdueDays(signals, now_ms);
      overdue && *overdue >= p.high_renewal_overdue_days) {
    high.push_back(fmt::format("renewal {} overdue (due {})", CountedRounded(*overdue, "day"),
                               Date(signals.contract->renewal_ms)));
  }
  if (h.tps_trend.change_30d && -*h.tps_trend.change_30d >= p.high_tps_fall_points) {
    high.push_back(fmt::format("TPS fell {:.1f} points in 30 days ({:.1f} -> {:.1f})",
                               -*h.tps_trend.change_30d, *tech.tps - *h.tps_trend.change_30d,
                               *tech.tps));
  }
  if (h.lhi && *h.lhi < p.high_lhi_below) {
    high.push_back(fmt::format("LHI {:.1f} < {:g}", *h.lhi, p.high_lhi_below));
  } else if (h.lhi && *h.lhi < p.medium_lhi_below) {
    medium.push_back(fmt::format("LHI {:.1f} < {:g}", *h.lhi, p.medium_lhi_below));
  }
  for (const Input& in : h.factors[0].inputs) {
    if (in.score && BandOf(*in.score) == Band::kPoor) medium.push_back(in.detail + ": poor band");
  }
  for (const FactorScore& f : h.factors) {
    if (f.factor != Factor::kTechnical && f.score && BandOf(*f.score) == Band::kPoor) {
      medium.push_back(fmt::format("{} {:.0f}: poor band", FactorLabel(f.factor), *f.score));
    }
  }
  if (!high.empty()) {
    h.risk = Risk::kHigh;
  } else if (!medium.empty()) {
    h.risk = Risk::kMedium;
  } else {
    h.risk = h.lhi ? Risk::kLow : Risk::kUnknown;  // no data is not "low"
  }
  h.risk_reasons = std::move(high);
  h.risk_reasons.insert(h.risk_reasons.end(), medium.begin(), medium.end());
  return h;
}

}  // namespace deskpulse::scoring
