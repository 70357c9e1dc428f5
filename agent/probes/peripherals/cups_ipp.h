#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// One CUPS queue as CUPS-Get-Printers returns it.
struct CupsPrinter {
  std::string name;                  // printer-name (the queue)
  int state = 0;                     // printer-state: 3 idle, 4 processing, 5 stopped
  std::vector<std::string> reasons;  // printer-state-reasons ("none", "media-empty-error", …)
  bool accepting = true;             // printer-is-accepting-jobs
  std::string device_uri;            // usb://HP/LaserJet%201020?serial=…, ipp://…
  std::string make_and_model;
  std::string device_id;  // printer-device-id, IEEE 1284 ("MFG:HP;MDL:…;")
};

/// Asks cupsd for its queues with one IPP request (CUPS-Get-Printers) over
/// HTTP. `server` is a socket path ("/run/cups/cups.sock") or "host:port".
/// Speaking IPP directly keeps libcups (and the TLS, Kerberos and Avahi
/// libraries it maps, ~5 MB) out of the agent. Every step is bounded by
/// `timeout_ms`: a hung cupsd makes the printers "unavailable", not the agent.
Result<std::vector<CupsPrinter>> CupsGetPrinters(const std::string& server, int timeout_ms);

/// The IPP request bytes (pure; for tests).
std::string EncodeGetPrinters(std::uint32_t request_id);
/// Decodes an IPP CUPS-Get-Printers response body (pure; untrusted bytes).
Result<std::vector<CupsPrinter>> DecodeGetPrinters(const std::string& body);
/// Splits an HTTP/1.x response into its body (Content-Length, chunked or to
/// the end), or an error naming the status line.
Result<std::string> HttpBody(const std::string& response);

}  // namespace deskpulse::agent
