#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "deskpulse/common/catalog.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::fleetsim {

/// How a simulated customer's desktops behave.
enum class Profile { kHealthy, kTypical, kStruggling };

Result<Profile> ParseProfile(const std::string& name);
const char* ProfileName(Profile p);

/// The seeded distributions behind one profile.
struct ProfileParams {
  double boot_median_s;  // power-on → login-ready, lognormal
  double boot_sigma;
  double rtt_site_median_ms;  // base RTT p95 of the middle site (near ×0.8, far ×1.25)
  double rtt_site_sigma;      // per-(customer, site) wiggle, lognormal
  double retransmit_median_ppm;
  double problem_device_p;  // chance a device is one the catalog does not support or know
  double partial_device_p;  // chance a device is one the catalog rates partial
  double supported_fail_p;  // chance a supported device fails here (configuration, redirection)
  double disconnect_per_hour;
  double downtime_median_s;
  double crash_per_day;
};
const ProfileParams& ParamsFor(Profile p);

struct CustomerSpec {
  std::string name;
  std::string token;
  Profile profile;
};

/// Parse a tokens file: one `customer token profile` line per customer (the
/// customer name may contain spaces; '#' starts a comment).
Result<std::vector<CustomerSpec>> ParseTokensFile(const std::string& path);

/// A device model drawn from the peripheral catalog: real ids (or, for a
/// print queue, a real IEEE-1284 id) and the verdict the catalog gives it.
struct DeviceModel {
  deskpulse::v1::PeripheralBus bus = deskpulse::v1::PERIPHERAL_BUS_USB;
  std::uint32_t vendor_id = 0;
  std::uint32_t product_id = 0;
  std::uint32_t device_class = 0;
  std::vector<std::uint32_t> interface_classes;
  std::string name;
  std::string ieee1284_id;
  std::vector<std::string> drivers;  // bound on the endpoint when it works there
  catalog::Verdict verdict = catalog::Verdict::kUnknown;
};

/// The device models one customer's endpoints have: a fleet standard of
/// supported printers, webcams, scanners and smart-card readers, a partially
/// supported printer, and a few problem devices (an OpenPrinting "paperweight",
/// a scanner SANE lacks, a device no source knows).
struct CustomerDevices {
  std::vector<DeviceModel> supported;
  std::vector<DeviceModel> partial;
  std::vector<DeviceModel> problem;
};

/// Draws a customer's device models from the catalog file at `catalog_path`,
/// seeded by the customer's name and `seed`; each model's verdict is the
/// catalog's own classification of it.
Result<CustomerDevices> DrawCustomerDevices(const std::string& catalog_path,
                                            const std::string& customer, std::uint64_t seed);

/// One simulated endpoint: its identity and a deterministic timeline of reports.
///
/// Reports are generated lazily in time order: backfilled history from
/// `start_ms` (one boot per working day, one report per working hour), then
/// live reports every `live_interval_ms` of wall time.
class SimEndpoint {
 public:
  /// `index` numbers the endpoint within its customer (0, 1, 2, ...).
  /// `devices` must outlive the endpoint.
  SimEndpoint(const CustomerSpec& customer, const CustomerDevices& devices, int index,
              std::uint64_t seed, std::int64_t start_ms);

  const std::string& agent_id() const { return agent_id_; }
  const deskpulse::v1::HostFacts& facts() const { return facts_; }

  /// The next backfill report (observed before `until_ms`), or false when the
  /// history is exhausted.
  bool NextHistory(std::int64_t until_ms, deskpulse::v1::Report* out);
  /// A report describing the last `window_s` seconds ending at `now_ms`.
  void Live(std::int64_t now_ms, std::uint32_t window_s, deskpulse::v1::Report* out);

  std::uint64_t next_seq() const { return seq_ + 1; }

 private:
  void FillBoot(std::int64_t at_ms, deskpulse::v1::Report* r);
  void FillHour(std::int64_t start_ms, std::uint32_t window_s, deskpulse::v1::Report* r);
  void FillPeripherals(std::int64_t at_ms, deskpulse::v1::Report* r);
  /// The agent's self-health: its spool counters and restarts, which rise
  /// as a real agent's do (a start per boot, now and then a spool that
  /// overflowed while the endpoint was cut off, rarely a damaged record).
  void FillAgentHealth(bool boot, deskpulse::v1::Report* r);

  const ProfileParams* params_;
  std::mt19937_64 rng_;
  std::mt19937_64 health_rng_;  // its own, so the rest of the model draws as before
  std::string agent_id_;
  deskpulse::v1::HostFacts facts_;
  double site_rtt_ms_;
  struct Device {
    const DeviceModel* model;
    std::string serial_hash;
    deskpulse::v1::DeviceState state;
    bool redirected;
  };
  std::vector<Device> devices_;
  std::uint64_t seq_ = 0;
  std::int64_t cursor_ms_;  // next history slot
  int hour_of_day_ = -1;    // -1: the day's boot comes next
  std::uint64_t restarts_ = 0, dropped_ = 0, corrupt_ = 0;
};

}  // namespace deskpulse::fleetsim
