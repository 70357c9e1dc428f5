#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

struct SmartCardReader {
  std::string name;               // "Gemalto PC Twin Reader 00 00"
  std::uint32_t event_state = 0;  // SCARD_STATE_* bits
  bool card_present = false;
};

/// Smart-card readers through PC/SC. libpcsclite is loaded at run time only
/// (`libpcsclite.so.1`): thin-client images without smart-card support lack it.
class PcscClient {
 public:
  /// The library, or Unavailable naming what is missing.
  static Result<std::unique_ptr<PcscClient>> Load();
  ~PcscClient();
  /// The readers pcscd knows and their state now (no waiting). No pcscd gives
  /// Unavailable with SCARD_E_NO_SERVICE spelled out.
  Result<std::vector<SmartCardReader>> Readers();

 private:
  struct Api;
  explicit PcscClient(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

}  // namespace deskpulse::agent
