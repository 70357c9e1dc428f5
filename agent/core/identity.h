#pragma once

#include <string>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

struct Identity {
  std::string agent_id;
  /// Why a new identity was made this start ("first start", "the machine id
  /// changed: this is a clone"), empty when the stored one was kept.
  std::string created_because;
};

/// The agent's identity, created on first start on the machine and kept in
/// `<state_dir>/identity`. It is tied to the machine id: a VDI clone of an
/// image on which the agent already ran gets a fresh machine id, so it enrols
/// as a distinct endpoint instead of impersonating its template.
Result<Identity> LoadOrCreateIdentity(const std::string& state_dir,
                                      const std::string& machine_id_file);

}  // namespace deskpulse::agent
