#include "collector/ingest/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>

#include "collector/ingest/protocol.h"
#include "deskpulse/common/tls_openssl.h"
#include "deskpulse/v1/wire.pb.h"

namespace deskpulse::collector {

namespace v1 = deskpulse::v1;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

namespace {
// Each read takes up to this much into the server's one read buffer; a
// connection keeps only the part of a frame not yet complete.
constexpr std::size_t kReadBytes = std::size_t{64} << 10;
// Reads per readiness before other connections get their turn.
constexpr int kReadsPerWake = 4;
}  // namespace

/// One agent connection. Reads are reactor-style: while nothing arrives a
/// connection holds no read buffer and no coroutine, only its socket's wait
/// (docs/quality.md: memory per connected endpoint); its deadline is checked
/// by the server's sweep.
class Session final : public std::enable_shared_from_this<Session>, private ReadableHandler {
 public:
  Session(IngestServer& server, TcpSocket socket)
      : server_(server),
        decoder_(server.options().max_hello_frame_bytes),
        protocol_(server.protocol_limits()) {
    asio::error_code ec;
    remote_ = socket.remote_endpoint(ec);
    socket.set_option(tcp::no_delay(true), ec);
    conn_ = server.options().tls ? MakeServerTlsStream(std::move(socket), server.options().tls)
                                 : MakePlainStream(std::move(socket));
    decoder_.hold_after_header(true);
  }

  void Start() {
    // The TLS handshake and the Hello must be done within the handshake timeout.
    deadline_ = Clock::now() + opts().handshake_timeout;
    if (conn_->tls()) {
      asio::co_spawn(server_.io(), shared_from_this()->Handshake(), asio::detached);
    } else {
      reading_ = true;
      ArmRead();
    }
  }

  /// Stop reading; finish what is in flight, then say goodbye.
  void BeginDrain() {
    if (closed_) return;
    draining_ = true;
    conn_->ShutdownReceive();
    if (reading_ && !read_armed()) StopReading();  // paused: no read to end by itself
  }

  /// Closed to make room for newer connections (see IngestServer).
  void Evict() {
    if (closed_ || closing_) return;
    Close();
  }

  void ForceClose() { Close(); }
  /// Woken by the server when memory was released or a batch committed.
  void Wake() { Resume(); }

  /// Called by the server's sweep once `deadline()` has passed.
  void OnDeadline(Clock::time_point now) {
    if (closed_ || closing_ || draining_ || now < deadline_) return;
    server_.mutable_stats().timeouts += 1;
    if (conn_->tls() && !reading_) {
      if (server_.ShouldLog("TLS handshakes not completed in time", peer_key())) {
        spdlog::warn("peer {}: TLS handshake not completed within {}; closing", peer(),
                     SecondsText(opts().handshake_timeout));
      }
      Close();
      return;
    }
    std::string why;
    if (decoder_.mid_frame()) {
      why = "frame not completed within " + SecondsText(opts().frame_timeout);
    } else if (!protocol_.welcomed()) {
      why = "no Hello accepted within " + SecondsText(opts().handshake_timeout) +
            " of connecting (handshake timeout)";
    } else {
      why = "no frame within " + SecondsText(opts().idle_timeout) + " (idle timeout)";
    }
    CloseWithError(v1::ERROR_CODE_TIMEOUT, why);
  }

  Clock::time_point deadline() const { return deadline_; }
  /// The key the per-peer limits count this connection under (made when
  /// needed: at a few events in its life, not kept in every connection).
  std::string peer_key() const { return PeerKey(remote_.address()); }
  bool welcomed() const { return protocol_.welcomed(); }
  bool closed() const { return closed_; }
  /// Where the server's registry keeps it.
  std::uint32_t slot() const { return slot_; }
  void set_slot(std::uint32_t slot) { slot_ = slot; }

 private:
  const IngestOptions& opts() const { return server_.options(); }
  std::string peer() const {
    return fmt::format("{}:{}", remote_.address().to_string(), remote_.port());
  }
  bool done() const { return closing_ || closed_; }

  asio::awaitable<void> Handshake() {
    auto self = shared_from_this();
    const asio::error_code ec = co_await conn_->Handshake();
    if (closed_) co_return;
    if (ec) {
      // No frame can be sent to a peer that does not speak TLS: log and close.
      server_.mutable_stats().tls_failures += 1;
      if (server_.ShouldLog("failed TLS handshakes", peer_key())) {
        spdlog::warn("peer {}: TLS handshake failed: {}; closing", peer(), ec.message());
      }
      read_done_ = true;
      Close();
      co_return;
    }
    reading_ = true;
    if (draining_) {
      StopReading();
    } else {
      ArmRead();
    }
  }

  void ArmRead() {
    if (read_armed() || read_done_ || done()) return;
    armed_self_ = shared_from_this();  // the wait does not own the session
    conn_->WaitReadable(*this);
  }
  bool read_armed() const { return armed_self_ != nullptr; }

  void OnReadable(const asio::error_code& readable) override {
    const std::shared_ptr<Session> self = std::move(armed_self_);
    asio::error_code ec = readable;
    if (done() || read_done_) return;
    std::vector<std::uint8_t>& buf = server_.read_buffer();
    for (int i = 0; i < kReadsPerWake && !ec && !draining_; ++i) {
      std::size_t n = 0;
      std::tie(ec, n) = conn_->ReadAvailable(asio::buffer(buf));
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        break;
      }
      if (ec) break;
      if (!Consume(std::span<const std::uint8_t>(buf.data(), n))) return;  // paused or closing
      if (done()) return;
    }
    if (ec || draining_) {
      if (ec && ec != asio::error::eof && ec != asio::error::operation_aborted && !closing_) {
        spdlog::debug("peer {}: read: {}", peer(), ec.message());
      }
      StopReading();
      return;
    }
    // Backpressure: read no further while too many batches await their commit.
    if (protocol_.inflight() >= opts().max_inflight_batches) return;  // OnCommitted resumes
    ArmRead();
  }

  /// Feeds `data` to the decoder and acts on each frame. False when it stopped
  /// early: the connection is closing, or waits for memory under the cap and
  /// keeps the rest of `data` until it is woken.
  bool Consume(std::span<const std::uint8_t> data) {
    for (;;) {
      if (auto size = decoder_.held_header()) {
        // Budget the whole frame before reading its payload, so frames in
        // progress can always finish and memory stays under the cap.
        if (draining_) return false;
        if (!server_.TryReserve(*size)) {
          server_.mutable_stats().read_pauses += 1;
          if (!data.empty()) {
            held_ = std::make_unique<std::vector<std::uint8_t>>(data.begin(), data.end());
          }
          waiting_for_room_ = true;
          server_.WaitForRoom(shared_from_this());
          return false;
        }
        frame_charge_ = *size;
        decoder_.ContinuePayload();
      }
      if (data.empty() || done()) return !done();
      const bool was_mid = decoder_.mid_frame();
      data = data.subspan(decoder_.Feed(data));
      if (!decoder_.status().ok()) {
        const auto& st = decoder_.status();
        CloseWithError(
            st.code() == Code::kResourceExhausted ? v1::ERROR_CODE_FRAME_TOO_LARGE
                                                  : v1::ERROR_CODE_MALFORMED_FRAME,
            protocol_.welcomed() ? st.message() : st.message() + " until a Hello is accepted");
        return false;
      }
      // A frame has started: it must finish within frame_timeout.
      if (!was_mid && decoder_.mid_frame()) {
        deadline_ = std::min(deadline_, Clock::now() + opts().frame_timeout);
      }
      if (auto frame = decoder_.TakeFrame()) {
        deadline_ = protocol_.welcomed() ? Clock::now() + opts().idle_timeout
                                         : accepted_ + opts().handshake_timeout;
        const std::uint64_t charge = std::exchange(frame_charge_, 0);
        if (!HandleFrame(*frame, charge)) server_.Release(charge);
      }
    }
  }

  /// Reading goes on where it paused (memory released, a batch committed).
  void Resume() {
    if (!reading_ || read_armed() || read_done_ || done()) return;
    if (waiting_for_room_) {
      waiting_for_room_ = false;
      // Consume even with nothing held: the held frame header still needs its budget.
      const std::unique_ptr<std::vector<std::uint8_t>> rest = std::move(held_);
      if (!Consume(rest ? std::span<const std::uint8_t>(*rest) : std::span<const std::uint8_t>())) {
        return;
      }
    }
    if (draining_) return StopReading();
    if (protocol_.inflight() >= opts().max_inflight_batches) return;
    ArmRead();
  }

  void StopReading() {
    if (read_done_) return;
    read_done_ = true;
    held_.reset();
    MaybeFinish();
  }

  /// Returns true when it kept the frame's memory charge (a batch awaiting
  /// its commit); the caller releases it otherwise.
  bool HandleFrame(const std::string& payload, std::uint64_t charge) {
    return Apply(protocol_.OnFrame(payload), charge);
  }

  /// Carries out what the protocol decided. True when a batch was submitted
  /// (it keeps `charge` until its commit).
  bool Apply(ProtocolActions a, std::uint64_t charge = 0) {
    if (a.welcomed) OnWelcomed(a.reports_forgotten);
    for (const auto& env : a.send) Send(env);
    if (a.closes()) {
      if (a.credential_refused) {
        RefuseCredential(a.close_message);
      } else {
        CloseWithError(*a.close_code, a.close_message);
      }
      return false;
    }
    auto self = shared_from_this();
    if (a.submit_hello) {
      server_.writer().SubmitHello(std::move(*a.submit_hello), [self](Result<StreamInfo> r) {
        asio::post(self->server_.io(),
                   [self, r = std::move(r)]() mutable { self->OnRegistered(std::move(r)); });
      });
    }
    if (a.submit_batch) {
      const auto received = Clock::now();
      server_.writer().SubmitBatch(
          protocol_.stream(), std::move(*a.submit_batch),
          [self, received, charge](Result<BatchOutcome> r) {
            asio::post(self->server_.io(), [self, received, charge, r = std::move(r)]() mutable {
              self->server_.Release(charge);
              self->OnCommitted(r, received);
            });
          });
      return true;
    }
    return false;
  }

  void RefuseCredential(const std::string& why) {
    server_.mutable_stats().auth_failures += 1;
    const auto delay = server_.NoteAuthFailure(peer_key());
    if (delay.count() == 0) return CloseWithError(v1::ERROR_CODE_UNAUTHENTICATED, why);
    // A peer that keeps failing is answered late: guessing gets slow.
    server_.mutable_stats().auth_delayed += 1;
    auto self = shared_from_this();
    auto timer = std::make_shared<asio::steady_timer>(server_.io(), delay);
    timer->async_wait([self, timer, why](const asio::error_code&) {
      self->CloseWithError(v1::ERROR_CODE_UNAUTHENTICATED, why);
    });
  }

  void OnRegistered(Result<StreamInfo> r) {
    if (closed_ || closing_) return;
    Apply(protocol_.OnRegistered(std::move(r)));
  }

  void OnWelcomed(std::uint64_t reports_forgotten) {
    server_.Welcomed(this);
    decoder_.set_max_frame_bytes(opts().max_frame_bytes);
    deadline_ = Clock::now() + opts().idle_timeout;
    const StreamInfo& stream = protocol_.stream();
    if (reports_forgotten > 0) {
      auto& st = server_.mutable_stats();
      st.streams_behind_agents += 1;
      st.reports_forgotten += reports_forgotten;
      if (server_.ShouldLog("agents acknowledged more than the store holds", "this store")) {
        spdlog::error(
            "agent {} (epoch {}): it was acknowledged through seq {} but the store "
            "holds its stream only through seq {}: the store lost acknowledged "
            "reports (a lost or truncated WAL, a restore from backup?); the agent "
            "resends what it still holds",
            protocol_.agent(), protocol_.epoch(), protocol_.agent_acked(), stream.last_acked_seq);
      }
    }
    spdlog::debug("peer {}: agent {} of customer {} resumes after seq {}", peer(),
                  protocol_.agent(), stream.customer_id, stream.last_acked_seq);
  }

  void OnCommitted(const Result<BatchOutcome>& r, Clock::time_point received) {
    ProtocolActions a = protocol_.OnCommitted(r);
    if (!closed_ && (r.ok() || !closing_)) {
      Apply(std::move(a));
      if (r.ok()) {
        server_.ObserveAck(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - received));
      }
    }
    Resume();  // reading paused while too many batches were in flight
    MaybeFinish();
  }

  void Send(const v1::Envelope& env) {
    if (closed_) return;
    if (!out_) out_ = std::make_unique<std::string>();
    (void)AppendFrame(env, out_.get());
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(server_.io(), shared_from_this()->WriteLoop(), asio::detached);
    }
  }

  asio::awaitable<void> WriteLoop() {
    auto self = shared_from_this();
    while (out_ && !closed_) {
      const std::unique_ptr<std::string> chunk = std::move(out_);
      auto [ec, n] = co_await conn_->WriteAll(asio::buffer(*chunk));
      if (ec) {
        out_.reset();
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
    if (code == v1::ERROR_CODE_STORE_UNAVAILABLE) {
      // The collector's own failure (a full disk), not the agent's.
      server_.mutable_stats().store_unavailable += 1;
    } else if (code != v1::ERROR_CODE_UNAUTHENTICATED && code != v1::ERROR_CODE_TIMEOUT &&
               code != v1::ERROR_CODE_SHUTTING_DOWN) {
      server_.mutable_stats().protocol_errors += 1;
    }
    // One line per kind and peer per interval; the rest go into its summary.
    const std::string kind = code == v1::ERROR_CODE_UNAUTHENTICATED
                                 ? std::string("refused credentials")
                                 : "connections closed with " + v1::ErrorCode_Name(code);
    if (server_.ShouldLog(kind, peer_key())) {
      spdlog::warn("peer {}{}: {}: {}; closing", peer(),
                   protocol_.agent().empty() ? "" : " (agent " + protocol_.agent() + ")",
                   v1::ErrorCode_Name(code), message);
    }
    v1::Envelope env;
    env.mutable_error()->set_code(code);
    env.mutable_error()->set_message(message);
    Send(env);
    closing_ = true;
    conn_->ShutdownReceive();
    MaybeFinish();
  }

  void MaybeFinish() {
    if (closed_) return;
    if (closing_) {  // an error close: done once the error frame is out
      if (!writing_) Close();
      return;
    }
    if (!read_done_ || protocol_.inflight() > 0 || writing_) return;
    if (draining_ && !said_goodbye_) {
      said_goodbye_ = true;
      v1::Envelope env;
      env.mutable_error()->set_code(v1::ERROR_CODE_SHUTTING_DOWN);
      env.mutable_error()->set_message(
          "collector is shutting down; reconnect and resend "
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
    held_.reset();
    server_.Release(std::exchange(frame_charge_, 0));
    server_.Remove(shared_from_this());
  }

  // One per connected endpoint: what is kept here is paid per connection
  // (docs/quality.md), so the rarely used parts are held out of line and the
  // fields are ordered to pack.
  IngestServer& server_;
  std::unique_ptr<ByteStream> conn_;
  std::shared_ptr<Session> armed_self_;  // while waiting for the socket to be readable
  FrameDecoder decoder_;
  tcp::endpoint remote_;  // formatted only for the log
  std::uint32_t slot_ = 0;
  ProtocolSession protocol_;
  std::unique_ptr<std::vector<std::uint8_t>> held_;  // read past a frame that waits for memory
  std::unique_ptr<std::string> out_;                 // frames not yet handed to the socket
  Clock::time_point accepted_ = Clock::now();
  Clock::time_point deadline_;
  std::uint32_t frame_charge_ = 0;  // memory budgeted for the frame being received
  bool writing_ = false;
  bool read_done_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool said_goodbye_ = false;
  bool closed_ = false;
  bool reading_ = false;  // the TLS handshake (if any) is done
  bool waiting_for_room_ = false;
};

IngestServer::IngestServer(asio::io_context& io, IngestOptions options, Writer& writer)
    : io_(io),
      options_(std::move(options)),
      writer_(writer),
      acceptor_(io),
      summary_(options_.log_summary_interval),
      limits_(std::make_shared<const ProtocolLimits>(ProtocolLimits{
          options_.node_name, options_.max_frame_bytes, options_.max_batch_reports})),
      read_buf_(kReadBytes) {}

IngestServer::~IngestServer() {
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

Status IngestServer::Listen() {
  if (Status s = deskpulse::Listen(acceptor_, options_.host, options_.port); !s.ok()) {
    if (s.code() != Code::kUnavailable) return s;
    return Status(Code::kUnavailable, fmt::format("cannot listen on {}:{}: {}", options_.host,
                                                  options_.port, s.message()));
  }
  bound_port_ = acceptor_.local_endpoint().port();
  // Never run out of descriptors: connections stop short of the limit, with
  // room left for the store, the log and refusing connections cheaply.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const auto limit = static_cast<std::size_t>(rl.rlim_cur);
    const std::size_t room = limit > options_.reserved_fds ? limit - options_.reserved_fds : 1;
    if (room < options_.max_connections) {
      // The default cap meeting the machine's limit is only a fact; a
      // configured cap cut short is worth a warning.
      if (options_.max_connections_configured) {
        spdlog::warn(
            "connections capped at {} (ingest.max_connections is {}): the descriptor "
            "limit is {} and {} are kept for the store and the log; raise the limit "
            "(LimitNOFILE=) to allow more",
            room, options_.max_connections, limit, options_.reserved_fds);
      } else {
        spdlog::info(
            "connections capped at {}: the descriptor limit is {} and {} are kept for the "
            "store and the log",
            room, limit, options_.reserved_fds);
      }
      options_.max_connections = room;
    }
  }
  options_.max_pending_connections =
      std::min(options_.max_pending_connections, options_.max_connections);
  stats_.max_connections = options_.max_connections;
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return Status::Ok();
}

void IngestServer::Start() {
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  housekeeping_timer_ = std::make_unique<asio::steady_timer>(io_);
  asio::co_spawn(io_, Housekeeping(), asio::detached);
  sweep_timer_ = std::make_unique<asio::steady_timer>(io_);
  asio::co_spawn(io_, SweepDeadlines(), asio::detached);
}

asio::awaitable<void> IngestServer::SweepDeadlines() {
  // Timeouts fire at most an eighth of the shortest one late.
  const auto shortest =
      std::min({options_.handshake_timeout, options_.idle_timeout, options_.frame_timeout});
  const auto period =
      std::clamp(shortest / 8, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  std::vector<std::shared_ptr<Session>> due;
  while (!draining_) {
    sweep_timer_->expires_after(period);
    auto [ec] = co_await sweep_timer_->async_wait(kTuple);
    if (ec || draining_) break;
    const auto now = Clock::now();
    for (const auto& s : sessions_) {
      if (s->deadline() <= now) due.push_back(s);
    }
    for (const auto& s : due) s->OnDeadline(now);  // may remove itself from sessions_
    due.clear();
  }
}

asio::awaitable<void> IngestServer::AcceptLoop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      stats_.accept_failures += 1;
      if (ShouldLog("failed accepts", ec.message())) {
        spdlog::warn("accept: {}; refusing connections until descriptors free up", ec.message());
      }
      if ((ec.value() == EMFILE || ec.value() == ENFILE) && spare_fd_ >= 0) {
        // Out of descriptors: use the spare one to take the connection off
        // the backlog and close it, so the peer hears "no" at once instead of
        // the listener spinning on it.
        ::close(spare_fd_);
        const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          stats_.connections_refused += 1;
          ::close(fd);
        }
        spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        continue;
      }
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (draining_) continue;
    Admit(std::move(socket));
  }
}

void IngestServer::Refuse(TcpSocket& socket, const std::string& peer, std::string_view why) {
  stats_.connections_refused += 1;
  const std::string kind = "connections refused (" + std::string(why) + ")";
  if (ShouldLog(kind, peer)) {
    spdlog::warn("peer {}: connection refused: {}; {} open, {} not yet welcomed", peer, why,
                 sessions_.size(), pending_);
  }
  ResetAndClose(socket);
}

void IngestServer::Admit(TcpSocket socket) {
  asio::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  const std::string key = PeerKey(remote.address());
  const auto now = Clock::now();
  auto found = peers_.find(key);
  if (found != peers_.end() && found->second.locked_until > now) {
    return Refuse(socket, key, "locked out after repeated failed logins");
  }
  if (found != peers_.end() && found->second.pending.size() >= options_.max_pending_per_peer) {
    return Refuse(socket, key,
                  fmt::format("{} connections not yet welcomed from this peer, the cap",
                              options_.max_pending_per_peer));
  }
  if (sessions_.size() >= options_.max_connections && !EvictPending()) {
    return Refuse(socket, key, fmt::format("{} connections, the cap", options_.max_connections));
  }
  if (pending_ >= options_.max_pending_connections) EvictPending();
  auto s = std::make_shared<Session>(*this, std::move(socket));
  s->set_slot(static_cast<std::uint32_t>(sessions_.size()));
  sessions_.push_back(s);
  peers_[key].pending.push_back(s.get());
  ++pending_;
  stats_.connections_accepted += 1;
  stats_.connections_open = sessions_.size();
  stats_.connections_pending = pending_;
  s->Start();
}

bool IngestServer::EvictPending() {
  // The oldest connection of the peer holding the most not-yet-welcomed ones:
  // a flood from few addresses pays, a lone new agent gets through.
  Peer* heaviest = nullptr;
  std::string heaviest_key;
  for (auto& [key, peer] : peers_) {
    if (!peer.pending.empty() &&
        (heaviest == nullptr || peer.pending.size() > heaviest->pending.size())) {
      heaviest = &peer;
      heaviest_key = key;
    }
  }
  if (heaviest == nullptr) return false;
  Session* victim = heaviest->pending.front();
  stats_.pending_evicted += 1;
  if (ShouldLog("not-yet-welcomed connections closed to make room", heaviest_key)) {
    spdlog::warn(
        "peer {}: closing its oldest connection not yet welcomed to make room ({} "
        "not yet welcomed, the cap is {})",
        heaviest_key, pending_, options_.max_pending_connections);
  }
  victim->Evict();  // removes itself (Remove → RemovePending)
  return true;
}

void IngestServer::RemovePending(Session* s) {
  auto it = peers_.find(s->peer_key());
  if (it == peers_.end()) return;
  auto& list = it->second.pending;
  const auto at = std::find(list.begin(), list.end(), s);
  if (at == list.end()) return;
  list.erase(at);
  --pending_;
  stats_.connections_pending = pending_;
}

void IngestServer::Welcomed(Session* s) { RemovePending(s); }

void IngestServer::Remove(const std::shared_ptr<Session>& s) {
  RemovePending(s.get());
  // Swap with the last: the registry stays dense (8 bytes of slot per session).
  const std::size_t at = s->slot();
  if (at < sessions_.size() && sessions_[at] == s) {
    if (at + 1 != sessions_.size()) {
      sessions_[at] = std::move(sessions_.back());
      sessions_[at]->set_slot(static_cast<std::uint32_t>(at));
    }
    sessions_.pop_back();
  }
  stats_.connections_open = sessions_.size();
  MaybeFinishDrain();
}

std::chrono::milliseconds IngestServer::NoteAuthFailure(const std::string& key) {
  const AuthThrottleOptions& a = options_.auth;
  const auto now = Clock::now();
  // Bounded memory: past this many peers, a new one's failures go untracked
  // until the housekeeping forgets idle ones.
  constexpr std::size_t kMaxTrackedPeers = 100'000;
  if (peers_.size() >= kMaxTrackedPeers && !peers_.contains(key)) {
    return std::chrono::milliseconds(0);
  }
  Peer& peer = peers_[key];
  if (now - peer.failures_since > a.window) {
    peer.failures_since = now;
    peer.failures = 0;
  }
  ++peer.failures;
  if (a.failures_before_lockout > 0 && peer.failures >= a.failures_before_lockout &&
      peer.locked_until <= now) {
    peer.locked_until = now + a.lockout;
    stats_.auth_lockouts += 1;
    spdlog::warn("peer {}: {} failed logins within {}: its connections are refused for {}", key,
                 peer.failures, SecondsText(a.window), SecondsText(a.lockout));
  }
  if (a.failures_before_delay > 0 && peer.failures > a.failures_before_delay) return a.delay;
  return std::chrono::milliseconds(0);
}

void IngestServer::ObserveAck(std::chrono::microseconds us) {
  stats_.ack_us.AddValue(static_cast<std::uint64_t>(us.count()));
  ack_seconds_.Observe(static_cast<double>(us.count()) / 1e6);
}

bool IngestServer::TryReserve(std::uint64_t bytes) {
  // A frame larger than the whole cap still goes through when nothing else is held.
  if (stats_.buffered_bytes > 0 && stats_.buffered_bytes + bytes > options_.max_buffered_bytes) {
    return false;
  }
  stats_.buffered_bytes += bytes;
  return true;
}

void IngestServer::Release(std::uint64_t bytes) {
  if (bytes == 0) return;
  stats_.buffered_bytes -= std::min(bytes, stats_.buffered_bytes);
  if (room_waiters_.empty()) return;
  auto waiters = std::move(room_waiters_);
  room_waiters_.clear();
  for (auto& w : waiters) {
    if (auto s = w.lock()) s->Wake();
  }
}

void IngestServer::WaitForRoom(const std::shared_ptr<Session>& s) { room_waiters_.push_back(s); }

bool IngestServer::ShouldLog(std::string_view kind, const std::string& peer) {
  return summary_.Note(kind, peer, Clock::now());
}

void IngestServer::FlushSummaries(bool all) {
  for (const auto& line : summary_.Due(Clock::now(), all)) spdlog::warn("{}", line.Text());
}

asio::awaitable<void> IngestServer::Housekeeping() {
  while (!draining_) {
    housekeeping_timer_->expires_after(options_.log_summary_interval);
    auto [ec] = co_await housekeeping_timer_->async_wait(kTuple);
    if (ec) break;
    FlushSummaries(false);
    // Forget peers with nothing pending, no recent failure and no lockout.
    const auto now = Clock::now();
    for (auto it = peers_.begin(); it != peers_.end();) {
      const Peer& p = it->second;
      const bool idle = p.pending.empty() && p.locked_until <= now &&
                        now - p.failures_since > options_.auth.window;
      it = idle ? peers_.erase(it) : std::next(it);
    }
  }
}

void IngestServer::Drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  asio::error_code ec;
  acceptor_.close(ec);
  if (housekeeping_timer_) housekeeping_timer_->cancel();
  if (sweep_timer_) sweep_timer_->cancel();
  // Copy: sessions remove themselves as they finish.
  auto sessions = sessions_;
  for (const auto& s : sessions) s->BeginDrain();
  drain_timer_ = std::make_unique<asio::steady_timer>(io_, options_.drain_timeout);
  drain_timer_->async_wait([this](const asio::error_code& e) {
    if (e) return;
    if (!sessions_.empty()) {
      spdlog::warn("drain: closing {} connections that did not finish in time", sessions_.size());
    }
    auto left = sessions_;
    for (const auto& s : left) s->ForceClose();
  });
  MaybeFinishDrain();
}

void IngestServer::MaybeFinishDrain() {
  if (!draining_ || !sessions_.empty() || !drain_done_) return;
  if (drain_timer_) drain_timer_->cancel();
  FlushSummaries(true);
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  asio::post(io_, std::move(done));
}

}  // namespace deskpulse::collector
