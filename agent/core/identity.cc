#include "agent/core/identity.h"

#include <sys/random.h>

#include <cstdio>
#include <sstream>

#include "agent/platform/proc.h"

namespace deskpulse::agent {
namespace {

Result<std::string> NewUuid() {
  unsigned char b[16];
  if (::getrandom(b, sizeof b, 0) != sizeof b) return Internal("getrandom failed");
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char text[37];
  std::snprintf(text, sizeof text,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return std::string(text);
}

}  // namespace

Result<Identity> LoadOrCreateIdentity(const std::string& state_dir,
                                      const std::string& machine_id_file) {
  const std::string path = state_dir + "/identity";
  const std::string machine = ReadLine(machine_id_file).value_or("");
  Identity id;
  if (auto line = ReadLine(path)) {
    std::istringstream in(*line);
    std::string agent_id, stored_machine;
    in >> agent_id >> stored_machine;
    if (agent_id.size() == 36 && stored_machine == machine) {
      id.agent_id = agent_id;
      return id;
    }
    id.created_because = agent_id.size() != 36
                             ? "the stored identity in " + path + " was unreadable"
                             : "the machine id changed (a clone of an image the agent ran on)";
  } else {
    id.created_because = "first start on this machine";
  }
  DP_ASSIGN_OR_RETURN(id.agent_id, NewUuid());
  DP_RETURN_IF_ERROR(WriteFileAtomically(path, id.agent_id + " " + machine + "\n"));
  return id;
}

}  // namespace deskpulse::agent
