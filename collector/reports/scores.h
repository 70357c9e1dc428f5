#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "collector/scoring/score.h"
#include "collector/store/store.h"

namespace deskpulse::collector {

struct CustomerScore {
  Customer customer;
  scoring::WindowRollup window;
  scoring::TechScore score;
  /// "HP LaserJet 1020 (03f0:2b17): no driver on 12 of 40 endpoints", when devices failed.
  std::string worst_peripheral;
};

/// Scores every customer over the policy's window ending with the day of `now_ms`.
Result<std::vector<CustomerScore>> ScoreAllCustomers(ReadStore& store,
                                                     const scoring::Policy& policy,
                                                     std::int64_t now_ms);

/// Groups the customer's endpoint rollups over the policy's window by site,
/// pool and display protocol, and names in `cs.score` where each
/// component's lost points come from (scoring::AttributeLosses).
Status AttachLossSources(ReadStore& store, CustomerScore& cs, const scoring::Policy& policy,
                         std::int64_t now_ms);

/// A component as JSON: score (null without data), band, weight, detail.
nlohmann::json ComponentToJson(const scoring::Component& c);

/// A display protocol's short name ("ICA"), or "protocol N".
std::string ProtocolName(int protocol);
/// Adds `w`'s figures to `into` (its endpoints and peripheral instances are
/// not additive and stay as they are).
void MergeWindow(scoring::WindowRollup& into, const scoring::WindowRollup& w);

/// One customer's score over the policy's window ending with the day of `now_ms`.
Result<CustomerScore> ScoreCustomer(ReadStore& store, const Customer& customer,
                                    const scoring::Policy& policy, std::int64_t now_ms);

/// A fixed-width table for a terminal, best TPS first.
std::string FormatScoreTable(const std::vector<CustomerScore>& scores);
nlohmann::json ScoresToJson(const std::vector<CustomerScore>& scores, const scoring::Policy& policy,
                            std::int64_t from_ms, std::int64_t to_ms);

}  // namespace deskpulse::collector
