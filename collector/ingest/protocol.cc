#include "collector/ingest/protocol.h"

#include <fmt/format.h>

#include "deskpulse/common/logging.h"
#include "deskpulse/common/report_limits.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;

ProtocolActions ProtocolSession::Close(v1::ErrorCode code, std::string message) {
  ProtocolActions a;
  a.close_code = code;
  a.close_message = std::move(message);
  return a;
}

ProtocolActions ProtocolSession::OnFrame(std::string_view payload) {
  v1::Envelope env;
  if (!env.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Close(v1::ERROR_CODE_MALFORMED_FRAME,
                 fmt::format("frame of {} bytes is not a deskpulse.v1.Envelope", payload.size()));
  }
  switch (env.msg_case()) {
    case v1::Envelope::kHello:
      return OnHello(std::move(*env.mutable_hello()));
    case v1::Envelope::kBatch:
      return OnBatch(*env.mutable_batch());
    case v1::Envelope::MSG_NOT_SET:
      return Close(v1::ERROR_CODE_MALFORMED_FRAME, "envelope carries no message");
    default:
      return Close(v1::ERROR_CODE_PROTOCOL_VIOLATION,
                   fmt::format("an agent may send only Hello and Batch, got field {}",
                               static_cast<int>(env.msg_case())));
  }
}

ProtocolActions ProtocolSession::OnHello(v1::Hello hello) {
  if (state_ != State::kAwaitHello) {
    return Close(v1::ERROR_CODE_PROTOCOL_VIOLATION, "Hello sent twice");
  }
  if (hello.protocol_version() != v1::PROTOCOL_VERSION_1) {
    return Close(v1::ERROR_CODE_PROTOCOL_VERSION,
                 fmt::format("protocol_version {} is not supported; this collector speaks 1",
                             hello.protocol_version()));
  }
  if (Status s = ValidateHello(hello); !s.ok()) {
    return Close(v1::ERROR_CODE_PROTOCOL_VIOLATION, "Hello: " + s.message());
  }
  agent_ = EscapeForLog(hello.agent_id(), limits::kAgentId);
  if (hello.credential().empty()) {
    ProtocolActions a = Close(v1::ERROR_CODE_UNAUTHENTICATED, "Hello carries no credential");
    a.credential_refused = true;
    return a;
  }
  state_ = State::kHelloPending;
  agent_acked_ = hello.acked_through_seq();
  epoch_ = hello.epoch();
  ProtocolActions a;
  a.submit_hello = std::move(hello);
  return a;
}

ProtocolActions ProtocolSession::OnRegistered(Result<StreamInfo> r) {
  if (!r.ok()) {
    if (r.status().code() == Code::kUnauthenticated) {
      ProtocolActions a = Close(v1::ERROR_CODE_UNAUTHENTICATED, r.status().message());
      a.credential_refused = true;
      return a;
    }
    return Close(v1::ERROR_CODE_STORE_UNAVAILABLE, "store unavailable: " + r.status().message());
  }
  stream_ = *r;
  state_ = State::kReady;
  ProtocolActions a;
  a.welcomed = true;
  if (agent_acked_ > stream_.last_acked_seq) {
    // The agent was told more was durable than the store holds now.
    a.reports_forgotten = agent_acked_ - stream_.last_acked_seq;
  }
  v1::Envelope env;
  auto* w = env.mutable_welcome();
  w->set_collector_node(limits_->node_name);
  w->set_last_acked_seq(stream_.last_acked_seq);
  w->mutable_limits()->set_max_frame_bytes(limits_->max_frame_bytes);
  w->mutable_limits()->set_max_batch_reports(limits_->max_batch_reports);
  a.send.push_back(std::move(env));
  return a;
}

ProtocolActions ProtocolSession::OnBatch(v1::Batch& batch) {
  if (state_ != State::kReady) {
    return Close(v1::ERROR_CODE_PROTOCOL_VIOLATION,
                 "Batch sent before the Welcome (send Hello and wait for it)");
  }
  if (batch.reports_size() == 0) return Close(v1::ERROR_CODE_BAD_REPORT, "empty Batch");
  if (static_cast<std::uint32_t>(batch.reports_size()) > limits_->max_batch_reports) {
    return Close(v1::ERROR_CODE_BATCH_TOO_LARGE,
                 fmt::format("Batch of {} reports is over the limit of {}", batch.reports_size(),
                             limits_->max_batch_reports));
  }
  std::vector<IncomingReport> reports(static_cast<std::size_t>(batch.reports_size()));
  std::uint64_t prev = 0;
  for (int i = 0; i < batch.reports_size(); ++i) {
    auto& in = reports[static_cast<std::size_t>(i)];
    in.bytes.swap(*batch.mutable_reports(i));
    if (!in.report.ParseFromString(in.bytes)) {
      return Close(v1::ERROR_CODE_BAD_REPORT,
                   fmt::format("report #{} of the batch does not decode as deskpulse.v1.Report; "
                               "nothing of this batch was stored",
                               i));
    }
    if (Status s = ValidateReport(in.report); !s.ok()) {
      return Close(v1::ERROR_CODE_BAD_REPORT,
                   fmt::format("report #{} (seq {}): {}; nothing of this batch was stored", i,
                               in.report.seq(), s.message()));
    }
    const std::uint64_t seq = in.report.seq();
    if (seq <= prev) {
      return Close(v1::ERROR_CODE_BAD_REPORT,
                   fmt::format("report #{} has seq {} after {}: seq must start at 1 and "
                               "increase; nothing of this batch was stored",
                               i, seq, prev));
    }
    prev = seq;
  }
  ++inflight_;
  ProtocolActions a;
  a.submit_batch = std::move(reports);
  return a;
}

ProtocolActions ProtocolSession::OnCommitted(const Result<BatchOutcome>& r) {
  --inflight_;
  if (!r.ok()) {
    return Close(v1::ERROR_CODE_STORE_UNAVAILABLE,
                 "the batch could not be committed and is not acknowledged; resend it later: " +
                     r.status().message());
  }
  ProtocolActions a;
  v1::Envelope env;
  env.mutable_ack()->set_acked_through_seq(r->acked_through);
  a.send.push_back(std::move(env));
  return a;
}

}  // namespace deskpulse::collector
