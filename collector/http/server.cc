#include "collector/http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>

#include "deskpulse/common/tls_openssl.h"

namespace deskpulse::collector::http {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

namespace {

// Each read takes up to this much into the server's one read buffer.
constexpr std::size_t kReadBytes = std::size_t{64} << 10;
// Reads per readiness before other connections get their turn.
constexpr int kReadsPerWake = 4;
// After a reply that closes the connection, what the peer still sends is
// read and dropped for this long, so that the reply is not lost to a reset.
constexpr std::chrono::milliseconds kLinger{2000};
constexpr std::uint64_t kMaxLingerBytes = 1u << 20;

constexpr std::string_view kMethods[] = {"GET",    "HEAD",  "POST",   "PUT",
                                         "DELETE", "PATCH", "OPTIONS"};

}  // namespace

/// One HTTP connection: one request at a time, read reactor-style (no
/// buffer of its own while nothing arrives), answered in order.
class Connection final : public std::enable_shared_from_this<Connection>, private ReadableHandler {
 public:
  enum class Phase { kHandshake, kHead, kBody, kHandling, kWriting, kLinger, kClosed };

  Connection(Server& server, TcpSocket socket, std::string peer_key)
      : server_(server), peer_key_(std::move(peer_key)) {
    asio::error_code ec;
    remote_ = socket.remote_endpoint(ec);
    // A reply leaves in more than one write (and, over TLS, more than one
    // record): with Nagle's algorithm the second waits for the client's
    // delayed ACK, about 40 ms on a fresh connection.
    socket.set_option(tcp::no_delay(true), ec);
    conn_ = server.options().tls ? MakeServerTlsStream(std::move(socket), server.options().tls)
                                 : MakePlainStream(std::move(socket));
  }

  void Start() {
    NewParser();
    if (conn_->tls()) {
      phase_ = Phase::kHandshake;
      deadline_ = Clock::now() + opts().handshake_timeout;
      asio::co_spawn(server_.io(), shared_from_this()->Handshake(), asio::detached);
    } else {
      phase_ = Phase::kHead;
      deadline_ = Clock::now() + opts().head_timeout;
      ArmRead();
    }
  }

  /// Nothing accepted yet that the peer waits for: it may be closed to make room.
  bool idle() const {
    return phase_ == Phase::kHandshake || phase_ == Phase::kHead || phase_ == Phase::kLinger;
  }
  const std::string& peer_key() const { return peer_key_; }
  Clock::time_point deadline() const { return deadline_; }
  std::uint32_t slot() const { return slot_; }
  void set_slot(std::uint32_t s) { slot_ = s; }

  void Evict() { Close(); }
  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    conn_->Close();
    armed_self_.reset();
    ChargeBody(0);
    parser_.reset();
    in_.clear();
    in_.shrink_to_fit();
    server_.Remove(this);
  }

  void OnDeadline(Clock::time_point now) {
    if (now < deadline_) return;
    ServerStats& st = server_.mutable_stats();
    switch (phase_) {
      case Phase::kHandshake:
        st.handshake_timeouts += 1;
        if (server_.ShouldLog("TLS handshakes not completed in time", peer_key_)) {
          spdlog::info("http: peer {}: TLS handshake not completed within {}; closing", peer(),
                       SecondsText(opts().handshake_timeout));
        }
        return Close();
      case Phase::kHead:
        if (!parser_->started()) {
          // Nothing of a request: a kept-alive connection idle too long, or
          // one that never asked anything.
          if (requests_ > 0) {
            st.idle_closes += 1;
          } else {
            st.head_timeouts += 1;
            if (server_.ShouldLog("connections that sent no request in time", peer_key_)) {
              spdlog::info("http: peer {}: no request within {} of connecting; closing", peer(),
                           SecondsText(opts().head_timeout));
            }
          }
          return Close();
        }
        st.head_timeouts += 1;
        return Refuse(408, fmt::format("the request's head did not arrive within {}",
                                       SecondsText(opts().head_timeout)));
      case Phase::kBody:
        st.body_timeouts += 1;
        return Refuse(408, fmt::format("the body did not arrive within {}",
                                       SecondsText(opts().body_timeout)));
      case Phase::kWriting:
        st.write_timeouts += 1;
        if (server_.ShouldLog("replies not taken in time", peer_key_)) {
          spdlog::info("http: peer {}: reply not taken within {}; closing", peer(),
                       SecondsText(opts().write_timeout));
        }
        return Close();
      case Phase::kLinger:
        return Close();
      case Phase::kHandling:
      case Phase::kClosed:
        return;
    }
  }

 private:
  const ServerOptions& opts() const { return server_.options(); }
  std::string peer() const {
    return fmt::format("{}:{}", remote_.address().to_string(), remote_.port());
  }

  void NewParser() { parser_ = std::make_unique<RequestParser>(opts().limits); }

  asio::awaitable<void> Handshake() {
    auto self = shared_from_this();
    const asio::error_code ec = co_await conn_->Handshake();
    if (phase_ != Phase::kHandshake) co_return;
    if (ec) {
      server_.mutable_stats().tls_failures += 1;
      if (server_.ShouldLog("failed TLS handshakes", peer_key_)) {
        spdlog::warn("http: peer {}: TLS handshake failed: {}; closing", peer(), ec.message());
      }
      Close();
      co_return;
    }
    phase_ = Phase::kHead;
    deadline_ = Clock::now() + opts().head_timeout;
    ArmRead();
  }

  bool reading() const {
    return phase_ == Phase::kHead || phase_ == Phase::kBody || phase_ == Phase::kLinger;
  }

  void ArmRead() {
    if (armed_self_ || read_done_ || !reading()) return;
    armed_self_ = shared_from_this();
    conn_->WaitReadable(*this);
  }

  void OnReadable(const asio::error_code& readable) override {
    const std::shared_ptr<Connection> self = std::move(armed_self_);
    if (phase_ == Phase::kClosed) return;
    asio::error_code ec = readable;
    std::vector<char>& buf = server_.read_buffer();
    for (int i = 0; i < kReadsPerWake && !ec && reading(); ++i) {
      std::size_t n = 0;
      std::tie(ec, n) = conn_->ReadAvailable(asio::buffer(buf));
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        break;
      }
      if (ec) break;
      if (phase_ == Phase::kLinger) {
        lingered_ += n;
        if (lingered_ > kMaxLingerBytes) return Close();
        continue;
      }
      in_.append(buf.data(), n);
      Process();
    }
    if (phase_ == Phase::kClosed) return;
    if (ec) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
        spdlog::debug("http: peer {}: read: {}", peer(), ec.message());
      }
      read_done_ = true;
      return OnEnd();
    }
    ArmRead();
  }

  /// The peer sent all it will send.
  void OnEnd() {
    switch (phase_) {
      case Phase::kHead:
      case Phase::kBody:
      case Phase::kLinger:
        // A request cut short has no one to answer; a whole one is answered
        // (a client may close its side once it has asked).
        return Close();
      default:
        return;  // the reply in progress closes it
    }
  }

  /// Parses what has arrived: the head, then (if it proceeds) the body.
  void Process() {
    std::size_t at = 0;
    while ((phase_ == Phase::kHead || phase_ == Phase::kBody) && at < in_.size()) {
      if (phase_ == Phase::kHead && !parser_->started() && requests_ > 0) {
        // A later request on a kept-alive connection: its head has its own deadline.
        deadline_ = Clock::now() + opts().head_timeout;
      }
      const std::size_t before = parser_->body().size();
      const std::size_t n = parser_->Put(std::string_view(in_).substr(at));
      at += n;
      if (parser_->refusal()) {
        in_.clear();
        const Refusal r = *parser_->refusal();
        return Refuse(r.status, r.message);
      }
      if (phase_ == Phase::kHead) {
        if (!parser_->head_done()) break;
        in_.erase(0, at);
        at = 0;
        OnHead();
        continue;
      }
      // The body: a chunked one is charged as it grows.
      const std::size_t grown = parser_->body().size() - before;
      if (grown > 0 && !parser_->head().content_length && !ChargeBody(body_charge_ + grown)) {
        in_.clear();
        return Busy();
      }
      if (parser_->done()) {
        in_.erase(0, at);
        return Dispatch();
      }
      if (n == 0) break;
    }
    in_.erase(0, at);
    if (phase_ == Phase::kHead && in_.size() > opts().limits.max_head_bytes + kReadBytes) {
      Refuse(431, "the request's head is too large");
    }
  }

  void OnHead() {
    const Head& head = parser_->head();
    requests_ += 1;
    server_.mutable_stats().requests += 1;
    head_only_ = head.method == "HEAD";
    keep_alive_ = head.keep_alive;
    if (std::find(std::begin(kMethods), std::end(kMethods), head.method) == std::end(kMethods)) {
      return Refuse(501, fmt::format("method '{}' is not implemented (methods are case-sensitive)",
                                     head.method.substr(0, 32)));
    }
    auto target = ParseTarget(head.target);
    if (!target.ok()) return Refuse(400, target.status().message());
    Decision d = server_.handler().OnHead(head, std::move(*target), remote_.address());
    if (auto* reply = std::get_if<Reply>(&d)) {
      // A body announced and not read ends the connection.
      if (head.has_body()) reply->close = true;
      return Send(std::move(*reply));
    }
    Proceed& go = std::get<Proceed>(d);
    then_ = std::move(go.then);
    if (!head.has_body()) return Dispatch();
    if (go.body_limit == 0) return Refuse(400, "this route takes no body");
    parser_->Continue(go.body_limit);
    if (parser_->refusal()) return Refuse(parser_->refusal()->status, parser_->refusal()->message);
    if (head.content_length && !ChargeBody(*head.content_length)) return Busy();
    phase_ = Phase::kBody;
    deadline_ = Clock::now() + opts().body_timeout;
    if (head.expect_continue && head.version == 11) {
      out_ += "HTTP/1.1 100 Continue\r\n\r\n";
      server_.mutable_stats().responses[1] += 1;
      StartWrite();
    }
  }

  void Dispatch() {
    phase_ = Phase::kHandling;
    deadline_ = Clock::time_point::max();
    std::weak_ptr<Connection> weak = weak_from_this();
    asio::io_context& io = server_.io();
    Respond respond = [weak, &io](Reply r) {
      asio::post(io, [weak, r = std::move(r)]() mutable {
        if (auto c = weak.lock()) c->Answer(std::move(r));
      });
    };
    auto then = std::move(then_);
    then_ = nullptr;
    then(std::move(parser_->body()), std::move(respond));
  }

  void Answer(Reply r) {
    if (phase_ != Phase::kHandling) return;
    Send(std::move(r));
  }

  /// The server's own refusal: counted, logged in summary, answered, closed.
  void Refuse(int status, const std::string& message) {
    ServerStats& st = server_.mutable_stats();
    if (status != 408) st.bad_requests += 1;
    const std::string kind = fmt::format("requests refused with {}", status);
    if (server_.ShouldLog(kind, peer_key_)) {
      spdlog::warn("http: peer {}: {} {}: {}", peer(), status, ReasonPhrase(status),
                   EscapeForLog(message));
    }
    Reply r = server_.handler().ErrorReply(status, message);
    r.close = true;
    Send(std::move(r));
  }

  void Busy() {
    Reply r = server_.handler().ErrorReply(
        503, "the server holds as many request bodies as it may; retry shortly");
    r.headers.emplace_back("Retry-After", "5");
    r.close = true;
    if (server_.ShouldLog("bodies refused for memory", peer_key_)) {
      spdlog::warn("http: peer {}: a request body refused: {} bytes of bodies held, the cap",
                   peer(), server_.stats().body_bytes_held);
    }
    Send(std::move(r));
  }

  /// Changes this connection's charge against the bodies' memory cap.
  bool ChargeBody(std::uint64_t bytes) {
    if (bytes > body_charge_) {
      if (!server_.TryReserveBody(bytes - body_charge_)) return false;
    } else {
      server_.ReleaseBody(body_charge_ - bytes);
    }
    body_charge_ = bytes;
    return true;
  }

  void Send(Reply r) {
    if (phase_ == Phase::kClosed) return;
    ChargeBody(0);
    ServerStats& st = server_.mutable_stats();
    st.responses[std::clamp(r.status / 100, 1, 5)] += 1;
    if (!keep_alive_ || read_done_) r.close = true;
    if (conn_->tls() && !opts().hsts.empty()) {
      r.headers.emplace_back("Strict-Transport-Security", opts().hsts);
    }
    close_after_write_ = r.close;
    out_ += Serialize(r, head_only_, server_.Date());
    phase_ = Phase::kWriting;
    deadline_ = Clock::now() + opts().write_timeout;
    StartWrite();
  }

  void StartWrite() {
    if (writing_) return;
    writing_ = true;
    asio::co_spawn(server_.io(), shared_from_this()->WriteLoop(), asio::detached);
  }

  asio::awaitable<void> WriteLoop() {
    auto self = shared_from_this();
    while (!out_.empty() && phase_ != Phase::kClosed) {
      const std::string chunk = std::move(out_);
      out_.clear();
      auto [ec, n] = co_await conn_->WriteAll(asio::buffer(chunk));
      if (ec) {
        writing_ = false;
        Close();
        co_return;
      }
    }
    writing_ = false;
    if (phase_ == Phase::kWriting) AfterReply();
  }

  void AfterReply() {
    if (close_after_write_) {
      // Stop sending, and drop what the peer still sends for a moment.
      asio::error_code ignored;
      conn_->tcp().shutdown(tcp::socket::shutdown_send, ignored);
      if (read_done_) return Close();
      phase_ = Phase::kLinger;
      deadline_ = Clock::now() + kLinger;
      in_.clear();
      parser_.reset();
      ArmRead();
      return;
    }
    NewParser();
    phase_ = Phase::kHead;
    head_only_ = false;
    deadline_ = Clock::now() + opts().idle_timeout;
    // Pipelined requests are already here: answer the next.
    if (!in_.empty()) Process();
    if (in_.empty()) in_.shrink_to_fit();
    ArmRead();
  }

  Server& server_;
  std::unique_ptr<ByteStream> conn_;
  std::shared_ptr<Connection> armed_self_;  // while waiting for the socket to be readable
  tcp::endpoint remote_;
  std::string peer_key_;
  std::unique_ptr<RequestParser> parser_;
  std::function<void(std::string, Respond)> then_;
  std::string in_;   // received and not yet parsed
  std::string out_;  // not yet handed to the socket
  Clock::time_point deadline_;
  std::uint64_t body_charge_ = 0;
  std::uint64_t requests_ = 0;
  std::uint64_t lingered_ = 0;
  std::uint32_t slot_ = 0;
  Phase phase_ = Phase::kHandshake;
  bool writing_ = false;
  bool close_after_write_ = false;
  bool read_done_ = false;
  bool head_only_ = false;
  bool keep_alive_ = true;
};

Server::Server(asio::io_context& io, ServerOptions options, Handler& handler)
    : io_(io),
      options_(std::move(options)),
      handler_(handler),
      acceptor_(io),
      summary_(options_.log_summary_interval),
      read_buf_(kReadBytes) {}

Server::~Server() = default;

Status Server::Listen() {
  DP_RETURN_IF_ERROR(deskpulse::Listen(acceptor_, options_.host, options_.port));
  bound_port_ = acceptor_.local_endpoint().port();
  options_.max_connections_per_peer =
      std::min(options_.max_connections_per_peer, options_.max_connections);
  stats_.max_connections = options_.max_connections;
  return Status::Ok();
}

void Server::Start() {
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  sweep_timer_ = std::make_unique<asio::steady_timer>(io_);
  asio::co_spawn(io_, Sweep(), asio::detached);
}

void Server::Close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
  if (sweep_timer_) sweep_timer_->cancel();
  auto all = connections_;
  for (const auto& c : all) c->Close();
  FlushSummaries(true);
}

asio::awaitable<void> Server::AcceptLoop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      if (ShouldLog("failed accepts", ec.message())) {
        spdlog::warn("http: accept: {}", ec.message());
      }
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (closed_) break;
    Admit(std::move(socket));
  }
}

asio::awaitable<void> Server::Sweep() {
  // Deadlines fire at most an eighth of the shortest one late.
  const auto shortest =
      std::min({options_.handshake_timeout, options_.head_timeout, options_.idle_timeout,
                options_.body_timeout, options_.write_timeout});
  const auto period =
      std::clamp(shortest / 8, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  std::vector<std::shared_ptr<Connection>> due;
  while (!closed_) {
    sweep_timer_->expires_after(period);
    auto [ec] = co_await sweep_timer_->async_wait(kTuple);
    if (ec || closed_) break;
    const auto now = Clock::now();
    for (const auto& c : connections_) {
      if (c->deadline() <= now) due.push_back(c);
    }
    for (const auto& c : due) c->OnDeadline(now);  // may remove itself
    due.clear();
    if (now - summary_flushed_ >= options_.log_summary_interval) {
      summary_flushed_ = now;
      FlushSummaries(false);
    }
  }
}

void Server::Refuse(TcpSocket& socket, const std::string& peer, std::string_view why) {
  stats_.connections_refused += 1;
  if (ShouldLog(fmt::format("connections refused ({})", why), peer)) {
    spdlog::warn("http: peer {}: connection refused: {}; {} open", peer, why, connections_.size());
  }
  ResetAndClose(socket);
}

void Server::Admit(TcpSocket socket) {
  asio::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  std::string key = PeerKey(remote.address());
  const auto found = peers_.find(key);
  if (found != peers_.end() && found->second.size() >= options_.max_connections_per_peer &&
      !EvictIdle(key)) {
    return Refuse(socket, key,
                  fmt::format("{} busy connections from this peer, the cap",
                              options_.max_connections_per_peer));
  }
  if (connections_.size() >= options_.max_connections && !EvictIdle({})) {
    return Refuse(socket, key,
                  fmt::format("{} busy connections, the cap", options_.max_connections));
  }
  auto c = std::make_shared<Connection>(*this, std::move(socket), key);
  c->set_slot(static_cast<std::uint32_t>(connections_.size()));
  connections_.push_back(c);
  peers_[std::move(key)].push_back(c.get());
  stats_.connections_accepted += 1;
  stats_.connections_open = connections_.size();
  c->Start();
}

bool Server::EvictIdle(const std::string& peer) {
  std::vector<Connection*>* list = nullptr;
  std::string key = peer;
  if (peer.empty()) {
    // The peer holding the most connections pays: a flood from few
    // addresses makes room, a lone new client gets in.
    for (auto& [k, v] : peers_) {
      const bool has_idle =
          std::any_of(v.begin(), v.end(), [](Connection* c) { return c->idle(); });
      if (has_idle && (list == nullptr || v.size() > list->size())) {
        list = &v;
        key = k;
      }
    }
  } else if (auto it = peers_.find(peer); it != peers_.end()) {
    list = &it->second;
  }
  if (list == nullptr) return false;
  const auto victim =
      std::find_if(list->begin(), list->end(), [](Connection* c) { return c->idle(); });
  if (victim == list->end()) return false;
  stats_.connections_evicted += 1;
  if (ShouldLog("idle connections closed to make room", key)) {
    spdlog::warn("http: peer {}: closing its oldest idle connection to make room ({} open)", key,
                 connections_.size());
  }
  (*victim)->Evict();  // removes itself
  return true;
}

void Server::Remove(Connection* c) {
  if (auto it = peers_.find(c->peer_key()); it != peers_.end()) {
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), c), list.end());
    if (list.empty()) peers_.erase(it);
  }
  const std::size_t at = c->slot();
  if (at < connections_.size() && connections_[at].get() == c) {
    // Keep the removed connection alive until this returns.
    const std::shared_ptr<Connection> keep = std::move(connections_[at]);
    if (at + 1 != connections_.size()) {
      connections_[at] = std::move(connections_.back());
      connections_[at]->set_slot(static_cast<std::uint32_t>(at));
    }
    connections_.pop_back();
    stats_.connections_open = connections_.size();
    // `keep` may be the last owner: destroy it after the registry is consistent.
    asio::post(io_, [keep] {});
  }
}

bool Server::TryReserveBody(std::uint64_t bytes) {
  if (stats_.body_bytes_held + bytes > options_.max_body_memory) return false;
  stats_.body_bytes_held += bytes;
  return true;
}

void Server::ReleaseBody(std::uint64_t bytes) {
  stats_.body_bytes_held -= std::min(bytes, stats_.body_bytes_held);
}

bool Server::ShouldLog(std::string_view kind, const std::string& peer) {
  return summary_.Note(kind, peer, Clock::now());
}

void Server::FlushSummaries(bool all) {
  for (const auto& line : summary_.Due(Clock::now(), all)) spdlog::warn("http: {}", line.Text());
}

const std::string& Server::Date() {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  if (now != date_second_) {
    date_second_ = now;
    date_ = HttpDate(now);
  }
  return date_;
}

}  // namespace deskpulse::collector::http
