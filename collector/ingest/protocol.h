#pragma once

// The collector's side of the protocol for one connection, without sockets:
// frames in, actions out. The I/O session (server.cc) reads frames, hands
// them here and carries out what comes back (submit to the writer, send,
// close), so every protocol rule can be tested with plain values.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/ingest/writer.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::collector {

struct ProtocolLimits {
  std::string node_name = "collector";
  std::uint32_t max_frame_bytes = 1 << 20;
  std::uint32_t max_batch_reports = 1000;
};

/// What the I/O session is to do after an event.
struct ProtocolActions {
  /// Authenticate and register this Hello (the writer's SubmitHello).
  std::optional<deskpulse::v1::Hello> submit_hello;
  /// Commit these reports for stream() (the writer's SubmitBatch).
  std::optional<std::vector<IncomingReport>> submit_batch;
  /// Frames to send, in order.
  std::vector<deskpulse::v1::Envelope> send;
  /// Close with this error (after sending `send`).
  std::optional<deskpulse::v1::ErrorCode> close_code;
  std::string close_message;
  /// The credential was refused: the I/O session decides how late to answer.
  bool credential_refused = false;
  /// Welcomed: the session now has the full frame limit and the idle timeout.
  bool welcomed = false;
  /// The agent was acknowledged through more than the store holds now.
  std::uint64_t reports_forgotten = 0;

  bool closes() const { return close_code.has_value(); }
};

class ProtocolSession {
 public:
  explicit ProtocolSession(ProtocolLimits limits)
      : limits_(std::make_shared<const ProtocolLimits>(std::move(limits))) {}
  /// Limits shared by every session of a server.
  explicit ProtocolSession(std::shared_ptr<const ProtocolLimits> limits)
      : limits_(std::move(limits)) {}

  /// One frame's payload from the agent.
  ProtocolActions OnFrame(std::string_view payload);
  /// The store's answer to the submitted Hello.
  ProtocolActions OnRegistered(Result<StreamInfo> stream);
  /// The writer's answer to a submitted batch.
  ProtocolActions OnCommitted(const Result<BatchOutcome>& outcome);

  bool welcomed() const { return state_ == State::kReady; }
  const StreamInfo& stream() const { return stream_; }
  /// The agent id, escaped for the log ("" before a Hello).
  const std::string& agent() const { return agent_; }
  std::uint64_t agent_acked() const { return agent_acked_; }
  std::uint64_t epoch() const { return epoch_; }
  /// Batches submitted and not yet answered.
  int inflight() const { return inflight_; }

 private:
  enum class State : std::uint8_t { kAwaitHello, kHelloPending, kReady };
  ProtocolActions OnHello(deskpulse::v1::Hello hello);
  ProtocolActions OnBatch(deskpulse::v1::Batch& batch);
  static ProtocolActions Close(deskpulse::v1::ErrorCode code, std::string message);

  // Held by every connection: ordered to pack (docs/quality.md).
  std::shared_ptr<const ProtocolLimits> limits_;
  StreamInfo stream_;
  std::string agent_;
  std::uint64_t agent_acked_ = 0;
  std::uint64_t epoch_ = 0;
  int inflight_ = 0;
  State state_ = State::kAwaitHello;
};

}  // namespace deskpulse::collector
