#include "agent/uplink/uplink.h"

#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>
#include <algorithm>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/frame_codec.h"

namespace deskpulse::agent {

namespace v1 = deskpulse::v1;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

struct Uplink::Conn {
  std::unique_ptr<ByteStream> stream;
  bool failed = false;
  bool reader_done = false;
  bool welcomed = false;
  std::string error;
};

Uplink::Uplink(asio::any_io_executor executor, UplinkOptions options, ReportQueue& queue,
               std::uint64_t seed)
    : executor_(executor), options_(std::move(options)), queue_(queue), rng_(seed),
      wake_(executor), backoff_(executor) {}

void Uplink::Notify() { wake_.cancel(); }

void Uplink::Stop() {
  stopping_ = true;
  wake_.cancel();
  backoff_.cancel();
}

std::chrono::milliseconds Uplink::NextBackoff() {
  // Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)].
  const int n = std::min(failures_in_row_, 20);
  const auto ceiling = std::min<std::int64_t>(options_.backoff_max.count(),
                                              options_.backoff_min.count() << n);
  std::uniform_int_distribution<std::int64_t> d(options_.backoff_min.count() / 2, ceiling);
  return std::chrono::milliseconds(d(rng_));
}

asio::awaitable<void> Uplink::Run() {
  while (!stopping_ && !refused_) {
    Status s = co_await Session();
    connected_ = false;
    if (!s.ok()) {
      // Once per kind of failure, not once per retry: a collector that is
      // down for a day is one line, a certificate problem after it another.
      if (options_.log_connection_changes && s.message() != logged_error_) {
        spdlog::warn("collector {}:{}: {}; reports stay in the spool, retrying",
                     options_.collector.host, options_.collector.port, s.message());
        logged_error_ = s.message();
      }
      stats_.last_error = s.message();
      ++failures_in_row_;
    }
    if (stopping_ || refused_) break;
    backoff_.expires_after(NextBackoff());
    co_await backoff_.async_wait(kTuple);
  }
}

asio::awaitable<Status> Uplink::Session() {
  auto conn = std::make_shared<Conn>();
  const std::string where =
      options_.collector.host + ":" + std::to_string(options_.collector.port);
  tcp::resolver resolver(executor_);
  auto [rec, results] = co_await resolver.async_resolve(
      options_.collector.host, std::to_string(options_.collector.port), kTuple);
  if (rec) {
    ++stats_.connect_failures;
    co_return Unavailable("resolve " + options_.collector.host + ": " + rec.message());
  }
  // Connect and handshake under one deadline: the guard closes the socket.
  auto socket = std::make_shared<tcp::socket>(executor_);
  asio::steady_timer guard(executor_, options_.connect_timeout);
  guard.async_wait([socket, conn](const asio::error_code& e) {
    if (e) return;
    asio::error_code ignored;
    socket->close(ignored);
    if (conn->stream) conn->stream->Close();
  });
  auto [cec, ep] = co_await asio::async_connect(*socket, results, kTuple);
  if (cec) {
    guard.cancel();
    ++stats_.connect_failures;
    co_return Unavailable("connect " + where + ": " + cec.message());
  }
  asio::error_code ignored;
  socket->set_option(tcp::no_delay(true), ignored);
  conn->stream = options_.tls ? options_.tls->Wrap(std::move(*socket), options_.collector.host)
                              : MakePlainStream(std::move(*socket));
  if (const asio::error_code hec = co_await conn->stream->Handshake(); hec) {
    guard.cancel();
    ++stats_.connect_failures;
    conn->stream->Close();
    co_return Unavailable("TLS handshake with " + where + ": " + hec.message());
  }
  guard.cancel();
  ++stats_.connects;

  v1::Envelope hello_env;
  auto* hello = hello_env.mutable_hello();
  hello->set_protocol_version(v1::PROTOCOL_VERSION_1);
  hello->set_agent_id(options_.agent_id);
  hello->set_epoch(options_.epoch);
  hello->set_credential(options_.credential);
  *hello->mutable_host() = options_.host;
  std::string out;
  (void)AppendFrame(hello_env, &out);
  if (auto [wec, n] = co_await conn->stream->WriteAll(asio::buffer(out)); wec) {
    co_return Unavailable("send Hello: " + wec.message());
  }
  inflight_.clear();
  asio::co_spawn(executor_, ReadLoop(conn), asio::detached);

  std::vector<std::pair<std::uint64_t, std::string>> reports;
  auto last_progress = Clock::now();
  std::uint64_t last_acked_seen = acked_through_;
  while (!stopping_ && !conn->failed) {
    if (conn->welcomed) {
      if (acked_through_ != last_acked_seen || inflight_.empty()) {
        last_acked_seen = acked_through_;
        last_progress = Clock::now();
      }
      while (static_cast<int>(inflight_.size()) < options_.max_inflight_batches) {
        reports.clear();
        queue_.Peek(sent_through_, options_.max_batch_reports, &reports);
        if (reports.empty()) break;
        if (reports.size() < options_.max_batch_reports && options_.linger.count() > 0 &&
            Clock::now() - last_send_ < options_.linger) {
          break;  // let the batch fill; the wake-up below comes back for it
        }
        last_send_ = Clock::now();
        v1::Envelope env;
        auto* batch = env.mutable_batch();
        for (auto& [seq, bytes] : reports) batch->add_reports(std::move(bytes));
        out.clear();
        (void)AppendFrame(env, &out);
        const std::uint64_t last = reports.back().first;
        inflight_.emplace_back(last, Clock::now());
        auto [wec, n] = co_await conn->stream->WriteAll(asio::buffer(out));
        if (wec) {
          conn->failed = true;
          conn->error = "send Batch: " + wec.message();
          break;
        }
        sent_through_ = last;
        ++stats_.batches_sent;
        stats_.reports_sent += reports.size();
      }
      if (!inflight_.empty() && Clock::now() - last_progress > options_.ack_timeout) {
        conn->failed = true;
        conn->error = "no Ack within the ack timeout";
        break;
      }
    }
    if (conn->failed) break;
    auto wait = inflight_.empty() ? std::chrono::milliseconds(1000) : options_.ack_timeout / 4;
    if (options_.linger.count() > 0) wait = std::min(wait, options_.linger);
    wake_.expires_after(wait);
    co_await wake_.async_wait(kTuple);
  }
  conn->stream->Close();
  while (!conn->reader_done) {  // the reader holds conn; let it see the close
    wake_.expires_after(std::chrono::milliseconds(1));
    co_await wake_.async_wait(kTuple);
  }
  if (stopping_) co_return Status::Ok();
  co_return Unavailable(conn->error.empty() ? "connection closed" : conn->error);
}

asio::awaitable<void> Uplink::ReadLoop(std::shared_ptr<Conn> conn) {
  FrameDecoder decoder(kDefaultMaxFrameBytes);
  std::array<std::uint8_t, 16 * 1024> buf;
  auto fail = [&](std::string why) {
    if (!conn->failed) {
      conn->failed = true;
      conn->error = std::move(why);
    }
    wake_.cancel();
  };
  while (!conn->failed) {
    auto [ec, n] = co_await conn->stream->ReadSome(asio::buffer(buf));
    if (ec) {
      fail(ec == asio::error::eof ? "collector closed the connection" : "read: " + ec.message());
      break;
    }
    std::span<const std::uint8_t> data(buf.data(), n);
    while (!data.empty() && !conn->failed) {
      data = data.subspan(decoder.Feed(data));
      if (!decoder.status().ok()) {
        fail("bad frame from collector: " + decoder.status().message());
        break;
      }
      auto frame = decoder.TakeFrame();
      if (!frame) continue;
      v1::Envelope env;
      if (!env.ParseFromString(*frame)) {
        fail("collector sent a frame that is not an Envelope");
        break;
      }
      if (env.has_welcome()) {
        const std::uint64_t l = env.welcome().last_acked_seq();
        queue_.Acknowledge(l);
        acked_through_ = std::max(acked_through_, l);
        sent_through_ = l;  // resume right after what the collector holds
        conn->welcomed = true;
        connected_ = true;
        if (options_.log_connection_changes && failures_in_row_ > 0) {
          spdlog::info("collector {}:{}: connected after {} failed attempts; sending from seq {}",
                       options_.collector.host, options_.collector.port, failures_in_row_, l + 1);
          logged_error_.clear();
        }
        failures_in_row_ = 0;
        if (env.welcome().limits().max_batch_reports() > 0) {
          options_.max_batch_reports =
              std::min<std::size_t>(options_.max_batch_reports,
                                    env.welcome().limits().max_batch_reports());
        }
        wake_.cancel();
      } else if (env.has_ack()) {
        const std::uint64_t through = env.ack().acked_through_seq();
        ++stats_.acks;
        queue_.Acknowledge(through);
        acked_through_ = std::max(acked_through_, through);
        const auto now = Clock::now();
        auto it = inflight_.begin();
        while (it != inflight_.end() && it->first <= through) {
          stats_.ack_latency_us.AddValue(static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(now - it->second).count()));
          ++it;
        }
        inflight_.erase(inflight_.begin(), it);
        wake_.cancel();
      } else if (env.has_error()) {
        ++stats_.errors_received;
        const auto code = env.error().code();
        if (code == v1::ERROR_CODE_UNAUTHENTICATED) refused_ = true;
        fail("collector: " + v1::ErrorCode_Name(code) + ": " + env.error().message());
        if (code != v1::ERROR_CODE_SHUTTING_DOWN) {
          spdlog::warn("agent {}: {}", options_.agent_id, conn->error);
        }
        break;
      }
    }
  }
  conn->reader_done = true;
  wake_.cancel();
}

}  // namespace deskpulse::agent
