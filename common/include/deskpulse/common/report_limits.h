#pragma once

#include <cstddef>
#include <cstdint>

#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse {

/// The largest strings and lists a Hello or a Report may carry (docs/protocol.md
/// lists them all). The collector refuses anything over them with an error
/// naming the field; the agent cuts its own reports down to them before they
/// are spooled, so it never produces one the collector would refuse.
namespace limits {
inline constexpr std::size_t kAgentId = 128;
inline constexpr std::size_t kCredential = 256;
inline constexpr std::size_t kHostname = 255;
inline constexpr std::size_t kOs = 256;
inline constexpr std::size_t kKernel = 128;
inline constexpr std::size_t kAgentVersion = 64;
inline constexpr std::size_t kSite = 128;
inline constexpr std::size_t kPool = 128;

inline constexpr std::size_t kBootId = 64;
inline constexpr std::size_t kVmBoots = 512;
inline constexpr std::size_t kVmName = 256;
inline constexpr std::size_t kVmUuid = 64;
inline constexpr std::size_t kSessions = 1024;
inline constexpr std::size_t kPeer = 300;
inline constexpr std::size_t kPeripherals = 512;
inline constexpr std::size_t kInterfaceClasses = 32;
inline constexpr std::size_t kSerialHash = 128;
inline constexpr std::size_t kDeviceName = 512;
inline constexpr std::size_t kDrivers = 32;
inline constexpr std::size_t kDriverName = 64;
inline constexpr std::size_t kReason = 512;
inline constexpr std::size_t kIeee1284Id = 1024;
inline constexpr std::size_t kCatalogSource = 32;
inline constexpr std::size_t kCatalogVersion = 64;
inline constexpr std::size_t kCatalogModel = 256;
inline constexpr std::size_t kCatalogDriver = 128;
inline constexpr std::size_t kCatalogDetail = 512;
inline constexpr std::size_t kPeripheralEvents = 1024;
inline constexpr std::size_t kSessionEvents = 1024;
inline constexpr std::size_t kCrashes = 256;
inline constexpr std::size_t kStalls = 1024;
inline constexpr std::size_t kUnavailable = 64;
inline constexpr std::size_t kMeasurement = 64;
/// Sequence numbers and epochs are stored as signed 64-bit integers.
inline constexpr std::uint64_t kMaxSeq = (std::uint64_t{1} << 63) - 1;
}  // namespace limits

/// OK, or InvalidArgument naming the first field over its limit
/// ("host.hostname is 900000 bytes, over the limit of 255").
Status ValidateHello(const deskpulse::v1::Hello& hello);
/// OK, or InvalidArgument naming the first field over its limit
/// ("peripherals[2].name is 900 bytes, over the limit of 512"); also checks
/// that seq is 1 .. 2^63 − 1.
Status ValidateReport(deskpulse::v1::Report& report);
/// Cuts every string (at a UTF-8 character boundary) and list over its limit
/// down to it; returns how many fields were cut.
std::size_t ClampReport(deskpulse::v1::Report* report);

}  // namespace deskpulse
