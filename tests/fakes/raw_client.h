#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "deskpulse/common/frame_codec.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::testing {

/// A blocking loopback TCP client that speaks raw bytes or frames, for
/// driving the collector with well- and ill-behaved peers.
class RawClient {
 public:
  /// Connects to 127.0.0.1:port, from `source` (a loopback address) if given.
  explicit RawClient(std::uint16_t port, const char* source = nullptr);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool SendBytes(const std::string& bytes);
  bool Send(const deskpulse::v1::Envelope& env);
  /// The next frame, or nullopt on timeout, close or a framing error.
  std::optional<deskpulse::v1::Envelope> Read(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// True when the peer closed the connection (EOF or reset) within the timeout.
  bool WaitClosed(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  int fd_ = -1;
  FrameDecoder decoder_{1u << 24};
  std::string pending_;  // bytes read but not yet fed
};

deskpulse::v1::Envelope HelloEnvelope(const std::string& token, const std::string& agent_id,
                                      std::uint64_t epoch = 1);
/// A Batch of minimal reports with seqs first..last.
deskpulse::v1::Envelope BatchEnvelope(std::uint64_t first, std::uint64_t last,
                                      std::int64_t observed_at_ms);

}  // namespace deskpulse::testing
