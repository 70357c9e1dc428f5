#include "deskpulse/common/report_limits.h"

#include <string>

namespace deskpulse {
namespace {

namespace v1 = deskpulse::v1;
using limits::kMaxSeq;

// One walk over every bounded field of a Report, for both checking and
// cutting, so the two can never disagree. `path` is a callable that builds
// the field's name, run only when the field is over its limit.
template <typename Visitor>
bool WalkReport(v1::Report& r, Visitor& v) {
  using namespace limits;
  if (r.has_boot() && !v.Str(r.mutable_boot()->mutable_boot_id(), kBootId,
                             [] { return std::string("boot.boot_id"); })) {
    return false;
  }
  if (!v.List(r.mutable_vm_boots(), kVmBoots, [] { return std::string("vm_boots"); })) return false;
  for (int i = 0; i < r.vm_boots_size(); ++i) {
    auto* b = r.mutable_vm_boots(i);
    auto at = [i](const char* f) { return "vm_boots[" + std::to_string(i) + "]." + f; };
    if (!v.Str(b->mutable_vm_name(), kVmName, [&] { return at("vm_name"); }) ||
        !v.Str(b->mutable_vm_uuid(), kVmUuid, [&] { return at("vm_uuid"); })) {
      return false;
    }
  }
  if (!v.List(r.mutable_sessions(), kSessions, [] { return std::string("sessions"); })) {
    return false;
  }
  for (int i = 0; i < r.sessions_size(); ++i) {
    if (!v.Str(r.mutable_sessions(i)->mutable_peer(), kPeer,
               [i] { return "sessions[" + std::to_string(i) + "].peer"; })) {
      return false;
    }
  }
  if (!v.List(r.mutable_peripherals(), kPeripherals, [] { return std::string("peripherals"); })) {
    return false;
  }
  for (int i = 0; i < r.peripherals_size(); ++i) {
    auto* p = r.mutable_peripherals(i);
    auto at = [i](const std::string& f) { return "peripherals[" + std::to_string(i) + "]." + f; };
    if (!v.List(p->mutable_interface_classes(), kInterfaceClasses,
                [&] { return at("interface_classes"); }) ||
        !v.Str(p->mutable_serial_hash(), kSerialHash, [&] { return at("serial_hash"); }) ||
        !v.Str(p->mutable_name(), kDeviceName, [&] { return at("name"); }) ||
        !v.List(p->mutable_drivers(), kDrivers, [&] { return at("drivers"); }) ||
        !v.Str(p->mutable_reason(), kReason, [&] { return at("reason"); })) {
      return false;
    }
    for (int j = 0; j < p->drivers_size(); ++j) {
      if (!v.Str(p->mutable_drivers(j), kDriverName,
                 [&] { return at("drivers[" + std::to_string(j) + "]"); })) {
        return false;
      }
    }
    if (p->has_ieee1284_id() &&
        !v.Str(p->mutable_ieee1284_id(), kIeee1284Id, [&] { return at("ieee1284_id"); })) {
      return false;
    }
    if (p->has_catalog()) {
      auto* c = p->mutable_catalog();
      if (!v.Str(c->mutable_source(), kCatalogSource, [&] { return at("catalog.source"); }) ||
          !v.Str(c->mutable_catalog_version(), kCatalogVersion,
                 [&] { return at("catalog.catalog_version"); }) ||
          !v.Str(c->mutable_model(), kCatalogModel, [&] { return at("catalog.model"); }) ||
          !v.Str(c->mutable_driver(), kCatalogDriver, [&] { return at("catalog.driver"); }) ||
          !v.Str(c->mutable_detail(), kCatalogDetail, [&] { return at("catalog.detail"); })) {
        return false;
      }
    }
  }
  if (!v.List(r.mutable_peripheral_events(), kPeripheralEvents,
              [] { return std::string("peripheral_events"); })) {
    return false;
  }
  for (int i = 0; i < r.peripheral_events_size(); ++i) {
    auto* e = r.mutable_peripheral_events(i);
    auto at = [i](const char* f) { return "peripheral_events[" + std::to_string(i) + "]." + f; };
    if (!v.Str(e->mutable_serial_hash(), kSerialHash, [&] { return at("serial_hash"); }) ||
        !v.Str(e->mutable_driver(), kDriverName, [&] { return at("driver"); })) {
      return false;
    }
  }
  if (r.has_stability()) {
    auto* s = r.mutable_stability();
    if (!v.List(s->mutable_session_events(), kSessionEvents,
                [] { return std::string("stability.session_events"); }) ||
        !v.List(s->mutable_crashes(), kCrashes, [] { return std::string("stability.crashes"); }) ||
        !v.List(s->mutable_stalls(), kStalls, [] { return std::string("stability.stalls"); })) {
      return false;
    }
    for (int i = 0; i < s->stalls_size(); ++i) {
      if (!v.Str(s->mutable_stalls(i)->mutable_peer(), kPeer,
                 [i] { return "stability.stalls[" + std::to_string(i) + "].peer"; })) {
        return false;
      }
    }
    for (int i = 0; i < s->session_events_size(); ++i) {
      if (!v.Str(s->mutable_session_events(i)->mutable_reason(), kReason,
                 [i] { return "stability.session_events[" + std::to_string(i) + "].reason"; })) {
        return false;
      }
    }
    for (int i = 0; i < s->crashes_size(); ++i) {
      if (!v.Str(s->mutable_crashes(i)->mutable_reason(), kReason,
                 [i] { return "stability.crashes[" + std::to_string(i) + "].reason"; })) {
        return false;
      }
    }
  }
  if (!v.List(r.mutable_unavailable(), kUnavailable, [] { return std::string("unavailable"); })) {
    return false;
  }
  for (int i = 0; i < r.unavailable_size(); ++i) {
    auto* u = r.mutable_unavailable(i);
    auto at = [i](const char* f) { return "unavailable[" + std::to_string(i) + "]." + f; };
    if (!v.Str(u->mutable_measurement(), kMeasurement, [&] { return at("measurement"); }) ||
        !v.Str(u->mutable_reason(), kReason, [&] { return at("reason"); })) {
      return false;
    }
  }
  return true;
}

struct Checker {
  Status status;
  template <typename Path>
  bool Str(std::string* s, std::size_t limit, Path path) {
    if (s->size() <= limit) return true;
    status = InvalidArgument(path() + " is " + std::to_string(s->size()) +
                             " bytes, over the limit of " + std::to_string(limit));
    return false;
  }
  template <typename Repeated, typename Path>
  bool List(Repeated* list, std::size_t limit, Path path) {
    if (static_cast<std::size_t>(list->size()) <= limit) return true;
    status = InvalidArgument(path() + " has " + std::to_string(list->size()) +
                             " entries, over the limit of " + std::to_string(limit));
    return false;
  }
};

struct Clamper {
  std::size_t cut = 0;
  template <typename Path>
  bool Str(std::string* s, std::size_t limit, Path /*path*/) {
    if (s->size() <= limit) return true;
    std::size_t end = limit;
    // Never leave half a UTF-8 character: back off over continuation bytes.
    while (end > 0 && (static_cast<unsigned char>((*s)[end]) & 0xC0) == 0x80) --end;
    s->resize(end);
    ++cut;
    return true;
  }
  template <typename Repeated, typename Path>
  bool List(Repeated* list, std::size_t limit, Path /*path*/) {
    if (static_cast<std::size_t>(list->size()) <= limit) return true;
    const int keep = static_cast<int>(limit);
    if constexpr (requires { list->Truncate(keep); }) {
      list->Truncate(keep);
    } else {
      list->DeleteSubrange(keep, list->size() - keep);
    }
    ++cut;
    return true;
  }
};

Status CheckString(const std::string& value, std::size_t limit, const char* name, bool required) {
  if (required && value.empty()) return InvalidArgument(std::string(name) + " is empty");
  if (value.size() <= limit) return Status::Ok();
  return InvalidArgument(std::string(name) + " is " + std::to_string(value.size()) +
                         " bytes, over the limit of " + std::to_string(limit));
}

}  // namespace

Status ValidateHello(const v1::Hello& hello) {
  using namespace limits;
  DP_RETURN_IF_ERROR(CheckString(hello.agent_id(), kAgentId, "agent_id", true));
  DP_RETURN_IF_ERROR(CheckString(hello.credential(), kCredential, "credential", false));
  if (hello.epoch() > kMaxSeq) return InvalidArgument("epoch is over 2^63 - 1");
  if (hello.acked_through_seq() > kMaxSeq) {
    return InvalidArgument("acked_through_seq is over 2^63 - 1");
  }
  const auto& h = hello.host();
  DP_RETURN_IF_ERROR(CheckString(h.hostname(), kHostname, "host.hostname", false));
  DP_RETURN_IF_ERROR(CheckString(h.os(), kOs, "host.os", false));
  DP_RETURN_IF_ERROR(CheckString(h.kernel(), kKernel, "host.kernel", false));
  DP_RETURN_IF_ERROR(CheckString(h.agent_version(), kAgentVersion, "host.agent_version", false));
  DP_RETURN_IF_ERROR(CheckString(h.site(), kSite, "host.site", false));
  DP_RETURN_IF_ERROR(CheckString(h.pool(), kPool, "host.pool", false));
  return Status::Ok();
}

Status ValidateReport(v1::Report& report) {
  if (report.seq() == 0 || report.seq() > kMaxSeq) {
    return InvalidArgument("seq " + std::to_string(report.seq()) + " is outside 1 .. 2^63 - 1");
  }
  Checker c;
  WalkReport(report, c);
  return c.status;
}

std::size_t ClampReport(v1::Report* report) {
  Clamper c;
  WalkReport(*report, c);
  return c.cut;
}

}  // namespace deskpulse
