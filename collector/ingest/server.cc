#include "collector/ingest/server.h"

#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>
#include <deque>

#include "deskpulse/common/tls_openssl.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

namespace {
std::string Seconds(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1000.0);
}
}  // namespace

/// One agent connection.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(IngestServer& server, tcp::socket socket)
      : server_(server),
        executor_(socket.get_executor()),
        watchdog_(executor_),
        slot_(executor_),
        decoder_(server.options().max_frame_bytes) {
    asio::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
    socket.set_option(tcp::no_delay(true), ec);
    conn_ = server.options().tls
                  ? MakeServerTlsStream(std::move(socket), server.options().tls)
                  : MakePlainStream(std::move(socket));
  }

  void Start() {
    // The TLS handshake, like a frame, must finish within the frame timeout.
    deadline_ = Clock::now() + (conn_->tls() ? opts().frame_timeout : opts().idle_timeout);
    auto self = shared_from_this();
    asio::co_spawn(executor_, self->Run(), asio::detached);
    asio::co_spawn(executor_, self->Watchdog(), asio::detached);
  }

  /// Stop reading; finish what is in flight, then say goodbye.
  void BeginDrain() {
    if (closed_) return;
    draining_ = true;
    conn_->ShutdownReceive();
    slot_.cancel();
  }

  void ForceClose() { Close(); }

 private:
  const IngestOptions& opts() const { return server_.options(); }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    if (conn_->tls()) {
      const asio::error_code ec = co_await conn_->Handshake();
      if (ec) {
        // No frame can be sent to a peer that does not speak TLS: log and close.
        server_.mutable_stats().tls_failures += 1;
        if (!closed_) spdlog::warn("peer {}: TLS handshake failed: {}; closing", peer_, ec.message());
        read_done_ = true;
        Close();
        co_return;
      }
      deadline_ = Clock::now() + opts().idle_timeout;
      watchdog_.cancel();
    }
    reading_ = true;
    co_await ReadLoop();
  }

  asio::awaitable<void> ReadLoop() {
    auto self = shared_from_this();
    std::array<std::uint8_t, 64 * 1024> buf;
    while (!closing_) {
      auto [ec, n] = co_await conn_->ReadSome(asio::buffer(buf));
      if (ec) {
        if (ec != asio::error::eof && ec != asio::error::operation_aborted && !closing_) {
          spdlog::debug("peer {}: read: {}", peer_, ec.message());
        }
        break;
      }
      std::span<const std::uint8_t> data(buf.data(), n);
      while (!data.empty() && !closing_) {
        const bool was_mid = decoder_.mid_frame();
        data = data.subspan(decoder_.Feed(data));
        if (!decoder_.status().ok()) {
          const auto& st = decoder_.status();
          CloseWithError(st.code() == Code::kResourceExhausted ? v1::ERROR_CODE_FRAME_TOO_LARGE
                                                               : v1::ERROR_CODE_MALFORMED_FRAME,
                         st.message());
          break;
        }
        if (auto frame = decoder_.TakeFrame()) {
          deadline_ = Clock::now() + opts().idle_timeout;
          HandleFrame(*frame);
        } else if (!was_mid && decoder_.mid_frame()) {
          // A frame has started: it must finish within frame_timeout.
          const auto limit = Clock::now() + opts().frame_timeout;
          if (limit < deadline_) {
            deadline_ = limit;
            watchdog_.cancel();
          }
        }
      }
      // Backpressure: read no further while too many batches await their commit.
      while (inflight_ >= opts().max_inflight_batches && !closing_ && !draining_) {
        slot_.expires_at(Clock::time_point::max());
        co_await slot_.async_wait(kTuple);
      }
    }
    read_done_ = true;
    MaybeFinish();
  }

  asio::awaitable<void> Watchdog() {
    auto self = shared_from_this();
    while (!closed_) {
      watchdog_.expires_at(deadline_);
      co_await watchdog_.async_wait(kTuple);
      if (closed_ || closing_ || draining_) co_return;
      if (Clock::now() < deadline_) continue;  // moved, or woken to re-arm
      server_.mutable_stats().timeouts += 1;
      if (conn_->tls() && state_ == State::kAwaitHello && !decoder_.mid_frame() &&
          !handshake_done()) {
        spdlog::warn("peer {}: TLS handshake not completed within {}; closing", peer_,
                     Seconds(opts().frame_timeout));
        Close();
        co_return;
      }
      const std::string why =
          decoder_.mid_frame()
              ? "frame not completed within " + Seconds(opts().frame_timeout)
              : "no frame within " + Seconds(opts().idle_timeout) + " (idle timeout)";
      CloseWithError(v1::ERROR_CODE_TIMEOUT, why);
      co_return;
    }
  }

  void HandleFrame(const std::string& payload) {
    v1::Envelope env;
    if (!env.ParseFromString(payload)) {
      CloseWithError(v1::ERROR_CODE_MALFORMED_FRAME,
                     fmt::format("frame of {} bytes is not a deskpulse.v1.Envelope",
                                 payload.size()));
      return;
    }
    switch (env.msg_case()) {
      case v1::Envelope::kHello: return HandleHello(std::move(*env.mutable_hello()));
      case v1::Envelope::kBatch: return HandleBatch(*env.mutable_batch());
      case v1::Envelope::MSG_NOT_SET:
        return CloseWithError(v1::ERROR_CODE_MALFORMED_FRAME, "envelope carries no message");
      default:
        return CloseWithError(v1::ERROR_CODE_PROTOCOL_VIOLATION,
                              fmt::format("an agent may send only Hello and Batch, got field {}",
                                          static_cast<int>(env.msg_case())));
    }
  }

  void HandleHello(v1::Hello hello) {
    if (state_ != State::kAwaitHello) {
      return CloseWithError(v1::ERROR_CODE_PROTOCOL_VIOLATION, "Hello sent twice");
    }
    if (hello.protocol_version() != v1::PROTOCOL_VERSION_1) {
      return CloseWithError(v1::ERROR_CODE_PROTOCOL_VERSION,
                            fmt::format("protocol_version {} is not supported; this collector "
                                        "speaks 1",
                                        hello.protocol_version()));
    }
    if (hello.agent_id().empty() || hello.agent_id().size() > 128) {
      return CloseWithError(v1::ERROR_CODE_PROTOCOL_VIOLATION,
                            "agent_id must be 1..128 bytes");
    }
    if (hello.epoch() > static_cast<std::uint64_t>(INT64_MAX)) {
      return CloseWithError(v1::ERROR_CODE_PROTOCOL_VIOLATION, "epoch must be below 2^63");
    }
    if (hello.credential().empty()) {
      server_.mutable_stats().auth_failures += 1;
      return CloseWithError(v1::ERROR_CODE_UNAUTHENTICATED, "Hello carries no credential");
    }
    state_ = State::kHelloPending;
    agent_ = hello.agent_id();
    auto self = shared_from_this();
    server_.writer().SubmitHello(std::move(hello), [self](Result<StreamInfo> r) {
      asio::post(self->executor_,
                 [self, r = std::move(r)]() mutable { self->OnWelcome(std::move(r)); });
    });
  }

  void OnWelcome(Result<StreamInfo> r) {
    if (closed_ || closing_) return;
    if (!r.ok()) {
      if (r.status().code() == Code::kUnauthenticated) {
        server_.mutable_stats().auth_failures += 1;
        return CloseWithError(v1::ERROR_CODE_UNAUTHENTICATED, r.status().message());
      }
      return CloseWithError(v1::ERROR_CODE_STORE_UNAVAILABLE,
                            "store unavailable: " + r.status().message());
    }
    stream_ = *r;
    state_ = State::kReady;
    v1::Envelope env;
    auto* w = env.mutable_welcome();
    w->set_collector_node(opts().node_name);
    w->set_last_acked_seq(stream_.last_acked_seq);
    w->mutable_limits()->set_max_frame_bytes(opts().max_frame_bytes);
    w->mutable_limits()->set_max_batch_reports(opts().max_batch_reports);
    Send(env);
    spdlog::debug("peer {}: agent {} of customer {} resumes after seq {}", peer_, agent_,
                  stream_.customer_id, stream_.last_acked_seq);
  }

  void HandleBatch(v1::Batch& batch) {
    if (state_ != State::kReady) {
      return CloseWithError(v1::ERROR_CODE_PROTOCOL_VIOLATION,
                            "Batch sent before the Welcome (send Hello and wait for it)");
    }
    if (batch.reports_size() == 0) {
      return CloseWithError(v1::ERROR_CODE_BAD_REPORT, "empty Batch");
    }
    if (static_cast<std::uint32_t>(batch.reports_size()) > opts().max_batch_reports) {
      return CloseWithError(v1::ERROR_CODE_BATCH_TOO_LARGE,
                            fmt::format("Batch of {} reports is over the limit of {}",
                                        batch.reports_size(), opts().max_batch_reports));
    }
    std::vector<IncomingReport> reports(static_cast<std::size_t>(batch.reports_size()));
    std::uint64_t prev = 0;
    for (int i = 0; i < batch.reports_size(); ++i) {
      auto& in = reports[static_cast<std::size_t>(i)];
      in.bytes.swap(*batch.mutable_reports(i));
      if (!in.report.ParseFromString(in.bytes)) {
        return CloseWithError(v1::ERROR_CODE_BAD_REPORT,
                              fmt::format("report #{} of the batch does not decode as "
                                          "deskpulse.v1.Report; nothing of this batch was stored",
                                          i));
      }
      const std::uint64_t seq = in.report.seq();
      if (seq == 0 || seq <= prev) {
        return CloseWithError(v1::ERROR_CODE_BAD_REPORT,
                              fmt::format("report #{} has seq {} after {}: seq must start at 1 "
                                          "and increase; nothing of this batch was stored",
                                          i, seq, prev));
      }
      prev = seq;
    }
    ++inflight_;
    auto self = shared_from_this();
    const auto received = Clock::now();
    server_.writer().SubmitBatch(
        stream_.stream_id, std::move(reports), [self, received](Result<BatchOutcome> r) {
          asio::post(self->executor_, [self, received, r = std::move(r)]() mutable {
            self->OnCommitted(std::move(r), received);
          });
        });
  }

  void OnCommitted(Result<BatchOutcome> r, Clock::time_point received) {
    --inflight_;
    slot_.cancel();
    if (!closed_) {
      if (r.ok()) {
        v1::Envelope env;
        env.mutable_ack()->set_acked_through_seq(r->acked_through);
        Send(env);
        server_.mutable_stats().ack_us.AddValue(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - received)
                .count()));
      } else if (!closing_) {
        CloseWithError(v1::ERROR_CODE_STORE_UNAVAILABLE,
                       "the batch could not be committed and is not acknowledged; resend it "
                       "later: " + r.status().message());
      }
    }
    MaybeFinish();
  }

  void Send(const v1::Envelope& env) {
    if (closed_) return;
    (void)AppendFrame(env, &out_);
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(executor_, shared_from_this()->WriteLoop(), asio::detached);
    }
  }

  asio::awaitable<void> WriteLoop() {
    auto self = shared_from_this();
    while (!out_.empty() && !closed_) {
      std::string chunk;
      chunk.swap(out_);
      auto [ec, n] = co_await conn_->WriteAll(asio::buffer(chunk));
      if (ec) {
        out_.clear();
        writing_ = false;
        Close();
        co_return;
      }
    }
    writing_ = false;
    MaybeFinish();
  }

  void CloseWithError(v1::ErrorCode code, const std::string& message) {
    if (closing_ || closed_) return;
    if (code != v1::ERROR_CODE_UNAUTHENTICATED && code != v1::ERROR_CODE_TIMEOUT &&
        code != v1::ERROR_CODE_SHUTTING_DOWN) {
      server_.mutable_stats().protocol_errors += 1;
    }
    spdlog::warn("peer {}{}: {}: {}; closing", peer_, agent_.empty() ? "" : " (agent " + agent_ + ")",
                 v1::ErrorCode_Name(code), message);
    v1::Envelope env;
    env.mutable_error()->set_code(code);
    env.mutable_error()->set_message(message);
    Send(env);
    closing_ = true;
    conn_->ShutdownReceive();
    watchdog_.cancel();
    slot_.cancel();
    MaybeFinish();
  }

  void MaybeFinish() {
    if (closed_) return;
    if (closing_) {  // an error close: done once the error frame is out
      if (!writing_) Close();
      return;
    }
    if (!read_done_ || inflight_ > 0 || writing_) return;
    if (draining_ && !said_goodbye_) {
      said_goodbye_ = true;
      v1::Envelope env;
      env.mutable_error()->set_code(v1::ERROR_CODE_SHUTTING_DOWN);
      env.mutable_error()->set_message("collector is shutting down; reconnect and resend "
                                       "what was not acknowledged");
      Send(env);
      return;  // WriteLoop calls back here once it is out
    }
    Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    conn_->Close();
    watchdog_.cancel();
    slot_.cancel();
    server_.Remove(shared_from_this());
  }

  enum class State { kAwaitHello, kHelloPending, kReady };

  // The handshake is done once the deadline was moved to the idle timeout, i.e.
  // once Run() reached the read loop.
  bool handshake_done() const { return reading_; }

  IngestServer& server_;
  asio::any_io_executor executor_;
  std::unique_ptr<ByteStream> conn_;
  asio::steady_timer watchdog_;
  asio::steady_timer slot_;
  FrameDecoder decoder_;
  std::string peer_;
  std::string agent_;
  State state_ = State::kAwaitHello;
  StreamInfo stream_;
  Clock::time_point deadline_;
  std::string out_;
  bool writing_ = false;
  int inflight_ = 0;
  bool read_done_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool said_goodbye_ = false;
  bool closed_ = false;
  bool reading_ = false;
};

IngestServer::IngestServer(asio::io_context& io, IngestOptions options, Writer& writer)
    : io_(io), options_(std::move(options)), writer_(writer), acceptor_(io) {}

IngestServer::~IngestServer() = default;

Status IngestServer::Listen() {
  asio::error_code ec;
  const auto addr = asio::ip::make_address(options_.host, ec);
  if (ec) return InvalidArgument("listen address '" + options_.host + "' is not an IP address");
  tcp::endpoint ep(addr, options_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status(Code::kUnavailable, fmt::format("cannot listen on {}:{}: {}", options_.host,
                                                  options_.port, ec.message()));
  }
  bound_port_ = acceptor_.local_endpoint().port();
  return Status::Ok();
}

void IngestServer::Start() { asio::co_spawn(io_, AcceptLoop(), asio::detached); }

asio::awaitable<void> IngestServer::AcceptLoop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      spdlog::warn("accept: {}", ec.message());  // e.g. out of file descriptors: keep serving
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (draining_) continue;
    auto s = std::make_shared<Session>(*this, std::move(socket));
    sessions_.insert(s);
    stats_.connections_accepted += 1;
    stats_.connections_open = sessions_.size();
    s->Start();
  }
}

void IngestServer::Remove(const std::shared_ptr<Session>& s) {
  sessions_.erase(s);
  stats_.connections_open = sessions_.size();
  MaybeFinishDrain();
}

void IngestServer::Drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  asio::error_code ec;
  acceptor_.close(ec);
  // Copy: sessions remove themselves as they finish.
  auto sessions = sessions_;
  for (const auto& s : sessions) s->BeginDrain();
  drain_timer_ = std::make_unique<asio::steady_timer>(io_, options_.drain_timeout);
  drain_timer_->async_wait([this](const asio::error_code& e) {
    if (e) return;
    if (!sessions_.empty()) {
      spdlog::warn("drain: closing {} connections that did not finish in time",
                   sessions_.size());
    }
    auto left = sessions_;
    for (const auto& s : left) s->ForceClose();
  });
  MaybeFinishDrain();
}

void IngestServer::MaybeFinishDrain() {
  if (!draining_ || !sessions_.empty() || !drain_done_) return;
  if (drain_timer_) drain_timer_->cancel();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  asio::post(io_, std::move(done));
}

}  // namespace deskpulse::collector
