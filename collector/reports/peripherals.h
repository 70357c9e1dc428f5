#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "collector/scoring/score.h"
#include "collector/store/store.h"
#include "deskpulse/common/catalog.h"

namespace deskpulse::collector {

/// Why a failing device fails, as the catalog sees it (docs/catalog.md).
enum class FailureKind {
  kSupportedButFailing,  // the catalog says it works: configuration or redirection, fixable
  kPartial,              // the catalog rates its support partial
  kUnsupported,          // the catalog says no driver works: needs a driver
  kUnknown,              // the catalog does not know it
};
const char* FailureKindName(FailureKind k);

/// One device model across a customer's endpoints.
struct ModelCompatibility {
  std::string key;       // "03f0:2b17", or "printer:hp/laserjet1020", or "pcsc:<reader name>"
  std::string usb_id;    // "03f0:2b17" when known
  std::string ieee1284;  // a printer's device id, when reported
  std::string name;      // the catalog's name, else what the endpoint called it
  catalog::Classification classification;
  std::string classified_by;  // "agent" (the endpoint's catalog) or "collector"
  std::int64_t instances = 0;
  std::int64_t working = 0;
  std::int64_t failed = 0;  // failed at some point in the window
  std::int64_t endpoints = 0;
  std::int64_t endpoints_failed = 0;
  std::int64_t reconnects = 0;                         // since the instances were first seen
  std::map<std::string, std::int64_t> failure_states;  // "no_driver": 8, "recovered": 1
  std::string example_reason;  // the most frequent reason a failing instance gave
  FailureKind kind() const;
};

struct FailureSplit {
  std::int64_t instances = 0;
  std::int64_t endpoints = 0;
  std::int64_t models = 0;
};

/// The peripheral compatibility of one customer over the policy's window.
struct PeripheralsReport {
  Customer customer;
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;
  /// The compatibility component of docs/scoring.md, computed as `scores` does.
  scoring::Component component;
  std::int64_t working = 0;
  std::int64_t failed = 0;
  std::int64_t reconnects = 0;  // in the window (the rollups)
  std::int64_t endpoints = 0;   // with a device seen in the window
  std::map<FailureKind, FailureSplit> split;
  std::vector<ModelCompatibility> failing;  // ranked: endpoints affected, instances, reconnects
  std::vector<ModelCompatibility> working_models;
  std::string catalog_version;               // the collector's catalog, "" without one
  std::int64_t classified_by_agent = 0;      // instances
  std::int64_t classified_by_collector = 0;  // instances
  std::int64_t unclassified = 0;             // no verdict and no catalog here
};

/// Reads the customer's device instances and classifies each (the agent's
/// verdict when it attached one, else `catalog`, which may be null).
Result<PeripheralsReport> AnalysePeripherals(ReadStore& store, const std::string& customer,
                                             const scoring::Policy& policy, std::int64_t now_ms,
                                             catalog::Reader* catalog);
/// The same for a customer already looked up; `window`, when the caller has
/// read it already (ScoreAllCustomers), is not read again.
Result<PeripheralsReport> AnalyseCustomerPeripherals(ReadStore& store, const Customer& customer,
                                                     const scoring::Policy& policy,
                                                     std::int64_t now_ms, catalog::Reader* catalog,
                                                     const scoring::WindowRollup* window = nullptr);

/// Gives a device its verdict: the one its endpoint attached, else the
/// collector's catalog's (cached by how the device was observed), else none.
class DeviceClassifier {
 public:
  explicit DeviceClassifier(catalog::Reader* catalog) : catalog_(catalog) {}
  enum class By { kNone, kAgent, kCollector };
  /// "agent", "collector"; "" for kNone.
  static const char* ByName(By by);
  struct Verdict {
    catalog::Classification classification;
    By by = By::kNone;
  };
  Result<Verdict> Classify(const deskpulse::v1::PeripheralState& s);

 private:
  catalog::Reader* catalog_;
  std::map<std::string, catalog::Classification> cache_;
};

/// One device of one endpoint over the policy's window.
struct EndpointDevice {
  PeripheralInstance instance;
  DeviceClassifier::Verdict verdict;
  bool failed = false;  // failing at some point in the window
};

/// An endpoint's devices seen in the window, failing ones first, then by
/// when they were last seen (newest first).
Result<std::vector<EndpointDevice>> AnalyseEndpointDevices(
    ReadStore& store, std::int64_t customer_id, std::int64_t endpoint_id,
    const scoring::Policy& policy, std::int64_t now_ms, catalog::Reader* catalog);
nlohmann::json EndpointDevicesToJson(const std::vector<EndpointDevice>& devices);

/// The collector's catalog for devices that arrive without an endpoint's
/// verdict: `path` when given (an error naming it if it cannot be opened), else
/// catalog::kDefaultPath when that file exists, else none, with a warning that
/// says what is lost and how to build one.
Result<std::optional<catalog::Reader>> OpenCollectorCatalog(const std::string& path);

nlohmann::json PeripheralsToJson(const PeripheralsReport& r);
std::string FormatPeripherals(const PeripheralsReport& r);

}  // namespace deskpulse::collector
