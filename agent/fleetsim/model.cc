#include "agent/fleetsim/model.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

namespace deskpulse::fleetsim {

namespace v1 = deskpulse::v1;

namespace {
constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::int64_t kDayMs = 24 * kHourMs;
constexpr int kFirstHour = 8;  // boot around 08:00 local (UTC here)
constexpr int kWorkHours = 9;  // hourly reports 09:00..17:00

std::uint64_t Mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t HashString(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

double LogNormal(std::mt19937_64& rng, double median, double sigma) {
  std::normal_distribution<double> n(0, sigma);
  return median * std::exp(n(rng));
}

bool Chance(std::mt19937_64& rng, double p) {
  return std::uniform_real_distribution<double>(0, 1)(rng) < p;
}

bool IsWeekend(std::int64_t day_start_ms) {
  const std::int64_t days = day_start_ms / kDayMs;       // 1970-01-01 was a Thursday
  const int weekday = static_cast<int>((days + 4) % 7);  // 0 = Sunday
  return weekday == 0 || weekday == 6;
}

std::string Slug(const std::string& name) {
  std::string s;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!s.empty() && s.back() != '-') {
      s += '-';
    }
  }
  while (!s.empty() && s.back() == '-') s.pop_back();
  return s.empty() ? "customer" : s;
}
}  // namespace

Result<Profile> ParseProfile(const std::string& name) {
  if (name == "healthy") return Profile::kHealthy;
  if (name == "typical") return Profile::kTypical;
  if (name == "struggling") return Profile::kStruggling;
  return InvalidArgument("profile '" + name + "' is not one of healthy, typical, struggling");
}

const char* ProfileName(Profile p) {
  switch (p) {
    case Profile::kHealthy:
      return "healthy";
    case Profile::kTypical:
      return "typical";
    case Profile::kStruggling:
      return "struggling";
  }
  return "?";
}

const ProfileParams& ParamsFor(Profile p) {
  // healthy: boots ~25 s, LAN-like RTT, ~95% of devices work.
  // typical: the field average: boots ~58 s, RTT near the 100 ms target, ~78% of devices work.
  // struggling: slow VM boots (median 80 s, a quarter past 100 s), RTT past 150 ms, ~64%.
  // Devices working ≈ (1 − problem − partial)(1 − supported_fail) + partial/2 + problem/10.
  static const ProfileParams kHealthy{24, 0.18, 45, 0.10, 800, 0.015, 0.02, 0.03, 0.002, 15, 0.002};
  static const ProfileParams kTypical{55, 0.30, 120, 0.10, 4000, 0.08, 0.04, 0.15, 0.010, 40, 0.01};
  static const ProfileParams kStruggling{80,   0.35, 200,   0.10, 9000, 0.15,
                                         0.06, 0.25, 0.040, 90,   0.04};
  switch (p) {
    case Profile::kHealthy:
      return kHealthy;
    case Profile::kTypical:
      return kTypical;
    case Profile::kStruggling:
      return kStruggling;
  }
  return kTypical;
}

Result<std::vector<CustomerSpec>> ParseTokensFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Code::kNotFound, "cannot open tokens file " + path);
  std::vector<CustomerSpec> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.empty()) continue;
    if (w.size() < 3) {
      return InvalidArgument(path + ":" + std::to_string(lineno) +
                             ": expected `customer token profile`");
    }
    auto profile = ParseProfile(w.back());
    if (!profile.ok()) {
      return InvalidArgument(path + ":" + std::to_string(lineno) + ": " +
                             profile.status().message());
    }
    CustomerSpec c;
    c.profile = *profile;
    c.token = w[w.size() - 2];
    for (std::size_t i = 0; i + 2 < w.size(); ++i) c.name += (i ? " " : "") + w[i];
    out.push_back(std::move(c));
  }
  if (out.empty()) return InvalidArgument(path + ": no customers");
  return out;
}

namespace {

// Rows of a catalog query as strings, through the linked SQLite.
Result<std::vector<std::vector<std::string>>> Rows(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
    return DataLoss(std::string("catalog query failed: ") + sqlite3_errmsg(db));
  }
  std::vector<std::vector<std::string>> out;
  for (;;) {
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    std::vector<std::string> row;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      const unsigned char* t = sqlite3_column_text(st, i);
      row.emplace_back(t ? reinterpret_cast<const char*>(t) : "");
    }
    out.push_back(std::move(row));
  }
  sqlite3_finalize(st);
  return out;
}

}  // namespace

Result<CustomerDevices> DrawCustomerDevices(const std::string& catalog_path,
                                            const std::string& customer, std::uint64_t seed) {
  DP_ASSIGN_OR_RETURN(auto reader, catalog::Reader::Open(catalog_path, LinkedSqliteApi()));
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(catalog_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return NotFound("cannot open catalog " + catalog_path);
  }
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> guard(db, &sqlite3_close);
  std::mt19937_64 rng(Mix(seed ^ Mix(HashString(customer)) ^ 0x7065726970ULL));
  CustomerDevices out;

  // Draws `n` models from the query's rows, keeping those the catalog gives
  // `want`; each row is (vendor_id, product_id, name) or, for printers, (name, ieee1284).
  struct Kind {
    const char* sql;
    int n;
    catalog::Verdict want;
    v1::PeripheralBus bus;
    std::uint32_t device_class;
    std::vector<std::uint32_t> interface_classes;
    std::vector<std::string> drivers;
  };
  using V = catalog::Verdict;
  const Kind kKinds[] = {
      {"SELECT make || ' ' || model, ieee1284 FROM printers WHERE rating IN ('perfectly', "
       "'mostly') AND ieee1284 != '' ORDER BY foomatic_id",
       3,
       V::kSupported,
       v1::PERIPHERAL_BUS_CUPS,
       0,
       {},
       {}},
      {"SELECT vendor_id, product_id, name FROM usb_names WHERE product_id >= 0 AND name LIKE "
       "'%webcam%' ORDER BY vendor_id, product_id",
       2,
       V::kSupported,
       v1::PERIPHERAL_BUS_USB,
       0xef,
       {0x0e, 0x01},
       {"uvcvideo", "snd-usb-audio"}},
      {"SELECT vendor_id, product_id, models FROM sane_scanners ORDER BY vendor_id, product_id",
       1,
       V::kSupported,
       v1::PERIPHERAL_BUS_USB,
       0,
       {0xff},
       {"sane"}},
      {"SELECT vendor_id, product_id, name FROM ccid_readers ORDER BY vendor_id, product_id",
       2,
       V::kSupported,
       v1::PERIPHERAL_BUS_USB,
       0,
       {0x0b},
       {"usbfs(pcscd)"}},
      {"SELECT make || ' ' || model, ieee1284 FROM printers WHERE rating = 'partially' AND "
       "ieee1284 != '' ORDER BY foomatic_id",
       1,
       V::kPartial,
       v1::PERIPHERAL_BUS_CUPS,
       0,
       {},
       {}},
      {"SELECT make || ' ' || model, ieee1284 FROM printers WHERE rating = 'paperweight' AND "
       "ieee1284 != '' ORDER BY foomatic_id",
       1,
       V::kUnsupported,
       v1::PERIPHERAL_BUS_CUPS,
       0,
       {},
       {}},
      {"SELECT n.vendor_id, n.product_id, n.name FROM usb_names n WHERE n.product_id >= 0 AND "
       "n.name LIKE '%scanner%' AND n.name NOT LIKE '%barcode%' AND NOT EXISTS (SELECT 1 FROM "
       "sane_scanners s WHERE "
       "s.vendor_id = n.vendor_id AND s.product_id = n.product_id) ORDER BY 1, 2",
       1,
       V::kUnsupported,
       v1::PERIPHERAL_BUS_USB,
       0,
       {0xff},
       {}},
      {"SELECT vendor_id, product_id, name FROM usb_names WHERE product_id >= 0 AND name LIKE "
       "'%fingerprint%' ORDER BY vendor_id, product_id",
       1,
       V::kUnknown,
       v1::PERIPHERAL_BUS_USB,
       0,
       {0xff},
       {}},
  };
  for (const Kind& k : kKinds) {
    DP_ASSIGN_OR_RETURN(auto rows, Rows(db, k.sql));
    std::shuffle(rows.begin(), rows.end(), rng);
    int got = 0;
    for (const auto& row : rows) {
      if (got == k.n) break;
      DeviceModel m;
      m.bus = k.bus;
      m.device_class = k.device_class;
      m.interface_classes = k.interface_classes;
      m.drivers = k.drivers;
      if (k.bus == v1::PERIPHERAL_BUS_CUPS) {
        m.name = row[0];
        m.ieee1284_id = row[1];
      } else {
        m.vendor_id = static_cast<std::uint32_t>(std::stoul(row[0]));
        m.product_id = static_cast<std::uint32_t>(std::stoul(row[1]));
        m.name = row[2];
      }
      v1::PeripheralState probe;
      probe.set_bus(m.bus);
      probe.set_vendor_id(m.vendor_id);
      probe.set_product_id(m.product_id);
      probe.set_device_class(m.device_class);
      for (auto c : m.interface_classes) probe.add_interface_classes(c);
      if (!m.ieee1284_id.empty()) probe.set_ieee1284_id(m.ieee1284_id);
      for (const auto& d : m.drivers) probe.add_drivers(d);
      DP_ASSIGN_OR_RETURN(auto c, reader.Classify(catalog::ObservationOf(probe)));
      if (c.verdict != k.want) continue;
      m.verdict = c.verdict;
      auto& pool = k.want == V::kSupported ? out.supported
                   : k.want == V::kPartial ? out.partial
                                           : out.problem;
      pool.push_back(std::move(m));
      ++got;
    }
  }
  if (out.supported.empty()) {
    return DataLoss(catalog_path + " yields no supported devices to simulate");
  }
  return out;
}
SimEndpoint::SimEndpoint(const CustomerSpec& customer, const CustomerDevices& devices, int index,
                         std::uint64_t seed, std::int64_t start_ms)
    : params_(&ParamsFor(customer.profile)),
      rng_(Mix(seed ^ Mix(HashString(customer.name)) ^ Mix(static_cast<std::uint64_t>(index)))),
      health_rng_(Mix(seed ^ Mix(HashString(customer.name)) ^
                      Mix(static_cast<std::uint64_t>(index)) ^ 0x9e3779b97f4a7c15ULL)),
      cursor_ms_(start_ms - start_ms % kDayMs) {
  char id[160];
  std::snprintf(id, sizeof id, "sim-%s-%05d-%llx", Slug(customer.name).c_str(), index,
                static_cast<unsigned long long>(seed));
  agent_id_ = id;
  const int site = index % 3;
  facts_.set_hostname("tc-" + std::to_string(index));
  facts_.set_os("Debian GNU/Linux 12 (bookworm)");
  facts_.set_kernel("6.1.0-27-amd64");
  facts_.set_agent_version("fleetsim");
  facts_.set_role(index % 5 == 0 ? v1::ENDPOINT_ROLE_VDI_GUEST : v1::ENDPOINT_ROLE_THIN_CLIENT);
  facts_.set_site("site-" + std::to_string(site + 1));
  facts_.set_pool(index % 2 ? "office-vdi" : "finance-vdi");

  // The site's base RTT: a near, a middle and a far site around the profile's
  // median, with a small per-(customer, site) wiggle so endpoints of a site agree.
  static constexpr double kSiteFactor[] = {0.8, 1.0, 1.25};
  std::mt19937_64 site_rng(Mix(seed ^ HashString(customer.name) ^ Mix(1000 + site)));
  site_rtt_ms_ =
      LogNormal(site_rng, params_->rtt_site_median_ms * kSiteFactor[site], params_->rtt_site_sigma);

  std::uniform_int_distribution<int> count(1, 4);
  const int n = count(rng_);
  for (int i = 0; i < n; ++i) {
    const double kind = std::uniform_real_distribution<double>(0, 1)(rng_);
    const std::vector<DeviceModel>* pool = &devices.supported;
    if (kind < params_->problem_device_p && !devices.problem.empty()) {
      pool = &devices.problem;
    } else if (kind < params_->problem_device_p + params_->partial_device_p &&
               !devices.partial.empty()) {
      pool = &devices.partial;
    }
    if (pool->empty()) continue;
    Device d;
    d.model = &(*pool)[std::uniform_int_distribution<std::size_t>(0, pool->size() - 1)(rng_)];
    char serial[24];
    std::snprintf(serial, sizeof serial, "%016llx", static_cast<unsigned long long>(rng_()));
    d.serial_hash = serial;
    d.redirected = d.model->bus == v1::PERIPHERAL_BUS_USB && Chance(rng_, 0.6);
    // Whether it works follows what the catalog says of it.
    double working_p = 1 - params_->supported_fail_p;
    if (d.model->verdict == catalog::Verdict::kPartial) working_p = 0.5;
    if (d.model->verdict == catalog::Verdict::kUnsupported) working_p = 0;
    if (d.model->verdict == catalog::Verdict::kUnknown) working_p = 0.2;
    if (Chance(rng_, working_p)) {
      d.state = v1::DEVICE_STATE_WORKING;
    } else if (d.model->verdict == catalog::Verdict::kPartial) {
      d.state = v1::DEVICE_STATE_ERROR;
    } else if (d.model->verdict != catalog::Verdict::kSupported) {
      d.state = d.redirected ? v1::DEVICE_STATE_REDIRECT_FAILED : v1::DEVICE_STATE_NO_DRIVER;
    } else {
      const double f = std::uniform_real_distribution<double>(0, 1)(rng_);
      d.state = f < 0.40 ? v1::DEVICE_STATE_NO_DRIVER
                : f < 0.75
                    ? (d.redirected ? v1::DEVICE_STATE_REDIRECT_FAILED : v1::DEVICE_STATE_NO_DRIVER)
                : f < 0.90 ? v1::DEVICE_STATE_BLOCKED_BY_POLICY
                           : v1::DEVICE_STATE_ERROR;
    }
    devices_.push_back(std::move(d));
  }
}

void SimEndpoint::FillBoot(std::int64_t at_ms, v1::Report* r) {
  auto* b = r->mutable_boot();
  char boot_id[40];
  std::snprintf(boot_id, sizeof boot_id, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  b->set_boot_id(boot_id);
  b->set_source(v1::BOOT_SOURCE_SYSTEMD);
  const double total_ms =
      std::min(600'000.0, LogNormal(rng_, params_->boot_median_s * 1000, params_->boot_sigma));
  const auto total = static_cast<std::uint64_t>(total_ms);
  // Thin clients with stock GRUB/OVMF report no firmware time; most do.
  if (Chance(rng_, 0.8)) {
    b->set_firmware_ms(total * 12 / 100);
    b->set_loader_ms(total * 3 / 100);
  }
  b->set_kernel_ms(total * 9 / 100);
  b->set_initrd_ms(total * 11 / 100);
  b->set_userspace_ms(total * 40 / 100);
  b->set_login_ready_ms(total);
  b->set_desktop_ready_ms(total + static_cast<std::uint64_t>(LogNormal(rng_, 6000, 0.4)));
  b->set_booted_at_unix_ms(at_ms);
}

void SimEndpoint::FillHour(std::int64_t start_ms, std::uint32_t window_s, v1::Report* r) {
  auto* w = r->add_sessions();
  w->set_protocol(v1::DISPLAY_PROTOCOL_ICA);
  w->set_peer("vdi-gw.example:2598");
  w->set_window_start_unix_ms(start_ms);
  w->set_window_s(window_s);
  const double p95 = LogNormal(rng_, site_rtt_ms_, 0.2);
  w->set_rtt_p95_us(static_cast<std::uint32_t>(p95 * 1000));
  w->set_rtt_p50_us(static_cast<std::uint32_t>(p95 * 650));
  w->set_rtt_max_us(static_cast<std::uint32_t>(p95 * 1600));
  w->set_jitter_us(static_cast<std::uint32_t>(p95 * 120));
  w->set_retransmit_ppm(static_cast<std::uint32_t>(
      std::min(200'000.0, LogNormal(rng_, params_->retransmit_median_ppm, 0.7))));
  w->set_source(v1::LATENCY_SOURCE_PASSIVE_TCP_INFO);

  auto* s = r->mutable_stability();
  s->set_session_s(window_s);
  const double hours = window_s / 3600.0;
  if (Chance(rng_, params_->disconnect_per_hour * hours)) {
    auto* e = s->add_session_events();
    e->set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
    e->set_at_unix_ms(start_ms + static_cast<std::int64_t>(window_s) * 500);
    e->set_reason("network: peer reset");
    e->set_downtime_ms(
        static_cast<std::uint64_t>(LogNormal(rng_, params_->downtime_median_s * 1000, 0.6)));
    auto* re = s->add_session_events();
    re->set_kind(v1::SESSION_EVENT_KIND_RECONNECT);
    re->set_at_unix_ms(e->at_unix_ms() + static_cast<std::int64_t>(e->downtime_ms()));
    re->set_reason("auto-reconnect");
  }
  if (Chance(rng_, params_->crash_per_day * hours / kWorkHours)) {
    auto* c = s->add_crashes();
    c->set_component(v1::CRASH_COMPONENT_VDI_CLIENT);
    c->set_at_unix_ms(start_ms + static_cast<std::int64_t>(window_s) * 300);
    c->set_reason("wfica: SIGSEGV");
    c->set_downtime_ms(static_cast<std::uint64_t>(LogNormal(rng_, 45'000, 0.5)));
  }
}

void SimEndpoint::FillPeripherals(std::int64_t at_ms, v1::Report* r) {
  for (const auto& d : devices_) {
    const DeviceModel& m = *d.model;
    auto* p = r->add_peripherals();
    p->set_bus(m.bus);
    p->set_vendor_id(m.vendor_id);
    p->set_product_id(m.product_id);
    p->set_device_class(m.device_class);
    for (auto c : m.interface_classes) p->add_interface_classes(c);
    if (!m.ieee1284_id.empty()) p->set_ieee1284_id(m.ieee1284_id);
    p->set_serial_hash(d.serial_hash);
    p->set_name(m.name);
    p->set_redirected(d.redirected);
    p->set_state(d.state);
    if (d.state == v1::DEVICE_STATE_WORKING) {
      if (d.redirected) {
        p->add_drivers("usbip-host");
      } else {
        for (const auto& drv : m.drivers) p->add_drivers(drv);
      }
    } else if (d.state == v1::DEVICE_STATE_NO_DRIVER) {
      p->set_reason(m.bus == v1::PERIPHERAL_BUS_CUPS ? "no driver for this printer in the queue"
                                                     : "no interface driver bound");
    } else if (d.state == v1::DEVICE_STATE_REDIRECT_FAILED) {
      p->set_reason("redirection claim failed: device busy");
    } else if (d.state == v1::DEVICE_STATE_BLOCKED_BY_POLICY) {
      p->set_reason("authorized=0 (USB policy)");
    } else {
      p->set_reason(m.verdict == catalog::Verdict::kPartial
                        ? "the driver lacks a feature the job needs"
                        : "device reported an error");
    }
  }
  // Flaky cables and hubs: the occasional detach+attach of a USB device.
  if (!devices_.empty() && Chance(rng_, 0.02)) {
    const auto& d = devices_[rng_() % devices_.size()];
    if (d.model->bus != v1::PERIPHERAL_BUS_USB) return;
    auto* e = r->add_peripheral_events();
    e->set_kind(v1::PERIPHERAL_EVENT_KIND_RECONNECT);
    e->set_vendor_id(d.model->vendor_id);
    e->set_product_id(d.model->product_id);
    e->set_serial_hash(d.serial_hash);
    e->set_at_unix_ms(at_ms);
  }
}

bool SimEndpoint::NextHistory(std::int64_t until_ms, v1::Report* out) {
  for (;;) {
    const std::int64_t day = cursor_ms_;
    if (day >= until_ms) return false;
    if (IsWeekend(day)) {
      cursor_ms_ += kDayMs;
      hour_of_day_ = -1;
      continue;
    }
    std::int64_t at;
    out->Clear();
    if (hour_of_day_ < 0) {
      std::uniform_int_distribution<int> jitter(-1800, 1800);
      at = day + kFirstHour * kHourMs + jitter(rng_) * 1000LL;
      if (at >= until_ms) return false;
      FillBoot(at, out);
      FillPeripherals(at, out);
    } else {
      at = day + (kFirstHour + 1 + hour_of_day_) * kHourMs;
      if (at + kHourMs > until_ms) return false;
      FillHour(at, 3600, out);
    }
    FillAgentHealth(hour_of_day_ < 0, out);
    out->set_seq(++seq_);
    out->set_observed_at_unix_ms(hour_of_day_ < 0 ? at : at + kHourMs);
    if (++hour_of_day_ >= kWorkHours) {
      hour_of_day_ = -1;
      cursor_ms_ += kDayMs;
    }
    return true;
  }
}

void SimEndpoint::FillAgentHealth(bool boot, v1::Report* r) {
  if (boot) {
    if (seq_ > 0) ++restarts_;  // the agent starts with the machine
    // A power cut mid-write leaves a damaged spool record now and then.
    if (Chance(health_rng_, params_->crash_per_day / 4)) ++corrupt_;
  } else if (Chance(health_rng_, params_->disconnect_per_hour / 4)) {
    // Cut off for longer than the spool holds: it dropped its oldest reports.
    std::uniform_int_distribution<int> lost(1, 30);
    dropped_ += static_cast<std::uint64_t>(lost(health_rng_));
  }
  auto* h = r->mutable_agent_health();
  h->set_rss_bytes(3'200'000);
  h->set_cpu_us(900);
  h->set_restarts(restarts_);
  h->set_dropped_reports(dropped_);
  h->set_corrupt_records(corrupt_);
}

void SimEndpoint::Live(std::int64_t now_ms, std::uint32_t window_s, v1::Report* out) {
  out->Clear();
  FillHour(now_ms - static_cast<std::int64_t>(window_s) * 1000, window_s, out);
  FillAgentHealth(false, out);
  out->set_seq(++seq_);
  out->set_observed_at_unix_ms(now_ms);
}

}  // namespace deskpulse::fleetsim
