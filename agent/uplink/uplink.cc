#include "agent/uplink/uplink.h"

#include <google/protobuf/io/coded_stream.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>
#include <tuple>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/frame_codec.h"
#include "deskpulse/common/logging.h"

namespace deskpulse::agent {

namespace v1 = deskpulse::v1;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

namespace {

struct ErrorPolicy {
  v1::ErrorCode code;
  ErrorOutcome outcome;
};

// Every code the collector can send, and what the agent does about it.
constexpr ErrorPolicy kErrorPolicies[] = {
    // A frame the collector could not decode: only a batch of ours can be at
    // fault, so it is split like a bad report.
    {v1::ERROR_CODE_MALFORMED_FRAME, ErrorOutcome::kSplit},
    {v1::ERROR_CODE_FRAME_TOO_LARGE, ErrorOutcome::kSplit},
    {v1::ERROR_CODE_UNAUTHENTICATED, ErrorOutcome::kRetrySlowly},
    {v1::ERROR_CODE_PROTOCOL_VERSION, ErrorOutcome::kRetrySlowly},
    // Our Hello broke a rule (an id or epoch the collector will not take):
    // resending at once would only repeat it; an upgraded collector may not.
    {v1::ERROR_CODE_PROTOCOL_VIOLATION, ErrorOutcome::kRetrySlowly},
    {v1::ERROR_CODE_BAD_REPORT, ErrorOutcome::kSplit},
    {v1::ERROR_CODE_TIMEOUT, ErrorOutcome::kRetry},
    {v1::ERROR_CODE_SHUTTING_DOWN, ErrorOutcome::kRetry},
    {v1::ERROR_CODE_STORE_UNAVAILABLE, ErrorOutcome::kRetry},
    {v1::ERROR_CODE_BATCH_TOO_LARGE, ErrorOutcome::kSplit},
};

// The bytes one report adds to a Batch, and a Batch envelope of `batch` bytes.
std::size_t ReportFieldBytes(std::size_t len) {
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(len) + len;
}
std::size_t EnvelopeBytes(std::size_t batch) {
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(batch) + batch;
}

}  // namespace

ErrorOutcome OutcomeOf(v1::ErrorCode code) {
  for (const auto& p : kErrorPolicies) {
    if (p.code == code) return p.outcome;
  }
  return ErrorOutcome::kRetrySlowly;  // a code from a newer collector
}

struct Uplink::Conn {
  std::unique_ptr<ByteStream> stream;
  bool failed = false;
  bool reader_done = false;
  bool welcomed = false;
  std::string error;
  std::optional<v1::ErrorCode> code;  // the collector's Error, if it sent one
};

Uplink::Uplink(asio::io_context::executor_type executor, UplinkOptions options, ReportQueue& queue,
               std::uint64_t seed)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      queue_(queue),
      rng_(seed),
      wake_(executor_),
      backoff_(executor_) {
  if (options_.collectors.empty()) options_.collectors.push_back({"127.0.0.1", 7741});
  current_ = static_cast<std::size_t>(rng_() % options_.collectors.size());
}

void Uplink::Notify() { wake_.cancel(); }

void Uplink::Stop() {
  stopping_ = true;
  wake_.cancel();
  backoff_.cancel();
}

std::chrono::milliseconds Uplink::NextBackoff() {
  // Full jitter (AWS architecture blog): uniform in [base/2, min(cap, base·2^n)].
  const bool slow = refused_;
  const auto base = slow ? options_.refused_backoff_min : options_.backoff_min;
  const auto cap = slow ? options_.refused_backoff_max : options_.backoff_max;
  const int n = std::min(slow ? refusals_in_row_ - 1 : failures_in_row_, 20);
  const auto ceiling = std::min<std::int64_t>(cap.count(), base.count() << std::max(n, 0));
  std::uniform_int_distribution<std::int64_t> d(std::min(base.count() / 2, ceiling), ceiling);
  return std::chrono::milliseconds(d(rng_));
}

asio::awaitable<void> Uplink::Run() {
  while (!stopping_) {
    retry_at_once_ = false;
    Status s = co_await Session();
    connected_ = false;
    if (!s.ok()) {
      // Once per kind of failure, not once per retry: a collector that is
      // down for a day is one line, a certificate problem after it another.
      if (options_.log_connection_changes && s.message() != logged_error_ && !retry_at_once_) {
        spdlog::warn("collector {}:{}: {}; reports stay in the spool, {}", collector().host,
                     collector().port, s.message(),
                     refused_                         ? "retrying every few minutes"
                     : options_.collectors.size() > 1 ? "trying the next collector"
                                                      : "retrying");
        logged_error_ = s.message();
      }
      stats_.last_error = s.message();
      if (!retry_at_once_) {
        ++failures_in_row_;
        // The next collector: they share one store, so it resumes from the
        // same watermark.
        if (options_.collectors.size() > 1) {
          current_ = (current_ + 1) % options_.collectors.size();
          ++failovers_;
        }
      }
    }
    if (stopping_) break;
    if (retry_at_once_) continue;  // a refused batch: send its halves now
    backoff_.expires_after(NextBackoff());
    co_await backoff_.async_wait(kTuple);
  }
}

void Uplink::RejectLocally(std::uint64_t seq, const std::string& why) {
  queue_.Reject(seq);
  ++stats_.reports_rejected;
  acked_through_ = std::max(acked_through_, seq);
  sent_through_ = std::max(sent_through_, seq);
  spdlog::warn("agent {}: report seq {} dropped and counted: {}", options_.agent_id, seq, why);
}

void Uplink::OnBatchRefused(const std::string& why) {
  if (inflight_.empty()) return;
  // The oldest batch not acknowledged is the one refused: the collector reads
  // batches in order and stops at the first bad one.
  const InFlight first = inflight_.front();
  if (probe_limit_ > 0 && inflight_.size() == 1 && first.reports == 1) {
    RejectLocally(first.last, why);  // alone and still refused: it is the bad one
  } else {
    probe_limit_ = std::max<std::size_t>(1, first.reports / 2);
    ++stats_.batches_split;
  }
  retry_at_once_ = true;
}

asio::awaitable<Status> Uplink::Session() {
  auto conn = std::make_shared<Conn>();
  const HostPort target = collector();
  const std::string where = target.host + ":" + std::to_string(target.port);
  tcp::resolver resolver(executor_);
  auto [rec, results] =
      co_await resolver.async_resolve(target.host, std::to_string(target.port), kTuple);
  if (rec) {
    ++stats_.connect_failures;
    co_return Unavailable("resolve " + target.host + ": " + rec.message());
  }
  // Connect and handshake under one deadline: the guard closes the socket.
  auto socket = std::make_shared<TcpSocket>(executor_);
  asio::steady_timer guard(executor_, options_.connect_timeout);
  guard.async_wait([socket, conn](const asio::error_code& e) {
    if (e) return;
    asio::error_code ignored;
    socket->close(ignored);
    if (conn->stream) conn->stream->Close();
  });
  asio::error_code cec;
  if (options_.local_address) {
    // Bound before connecting, so each endpoint is tried by hand: the range
    // form of async_connect reopens the socket and would lose the bind.
    cec = asio::error::host_not_found;
    for (const auto& r : results) {
      asio::error_code ignored;
      socket->close(ignored);
      socket->open(r.endpoint().protocol(), cec);
      if (!cec) socket->bind(tcp::endpoint(*options_.local_address, 0), cec);
      if (!cec) std::tie(cec) = co_await socket->async_connect(r.endpoint(), kTuple);
      if (!cec || cec == asio::error::operation_aborted) break;  // connected, or timed out
    }
  } else {
    std::tie(cec, std::ignore) = co_await asio::async_connect(*socket, results, kTuple);
  }
  if (cec) {
    guard.cancel();
    ++stats_.connect_failures;
    co_return Unavailable("connect " + where + ": " + cec.message());
  }
  asio::error_code ignored;
  socket->set_option(tcp::no_delay(true), ignored);
  conn->stream = options_.tls ? options_.tls->Wrap(std::move(*socket), target.host)
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
  hello->set_acked_through_seq(queue_.CollectorAcked());
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
      // While a refused batch is being narrowed down: one small batch at a time.
      const std::size_t limit = probe_limit_ > 0
                                    ? std::min(probe_limit_, options_.max_batch_reports)
                                    : options_.max_batch_reports;
      const std::size_t window =
          probe_limit_ > 0 ? 1 : static_cast<std::size_t>(options_.max_inflight_batches);
      while (inflight_.size() < window) {
        reports.clear();
        queue_.Peek(sent_through_, limit, &reports);
        if (reports.empty()) break;
        // As many as fit the collector's frame limit.
        std::size_t fit = 0;
        std::size_t batch_bytes = 0;
        for (const auto& [seq, bytes] : reports) {
          const std::size_t more = ReportFieldBytes(bytes.size());
          if (EnvelopeBytes(batch_bytes + more) > max_frame_bytes_) break;
          batch_bytes += more;
          ++fit;
        }
        if (fit == 0) {
          // One report the collector could never take: drop it once every
          // report before it is acknowledged.
          if (!inflight_.empty() || sent_through_ != acked_through_) break;
          RejectLocally(reports.front().first, "it is " +
                                                   std::to_string(reports.front().second.size()) +
                                                   " bytes, over the collector's frame limit of " +
                                                   std::to_string(max_frame_bytes_));
          continue;
        }
        reports.resize(fit);
        if (reports.size() < limit && probe_limit_ == 0 && options_.linger.count() > 0 &&
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
        inflight_.push_back({last, reports.size(), Clock::now()});
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
  if (conn->code) {
    switch (OutcomeOf(*conn->code)) {
      case ErrorOutcome::kRetry:
        break;
      case ErrorOutcome::kSplit:
        if (!inflight_.empty()) {
          OnBatchRefused(conn->error);
          break;
        }
        [[fallthrough]];  // nothing of ours in flight: our Hello was refused
      case ErrorOutcome::kRetrySlowly:
        refused_ = true;
        ++refusals_in_row_;
        ++stats_.refused;
        break;
    }
  }
  if (stopping_) co_return Status::Ok();
  co_return Unavailable(conn->error.empty() ? "connection closed" : conn->error);
}

asio::awaitable<void> Uplink::ReadLoop(std::shared_ptr<Conn> conn) {
  // The collector sends only small frames (Welcome, Ack, Error).
  FrameDecoder decoder(64u << 10);
  std::array<std::uint8_t, std::size_t{16} << 10> buf;
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
        const auto& w = env.welcome();
        auto resume = queue_.Resume(w.last_acked_seq());
        if (!resume.ok()) {
          // Sending now could have the collector take new reports for resends.
          fail("cannot resume after seq " + std::to_string(w.last_acked_seq()) + ": " +
               resume.status().message());
          break;
        }
        if (resume->event != ResumePoint::Event::kNone) {
          spdlog::warn("agent {} (collector {}): {}", options_.agent_id,
                       EscapeForLog(w.collector_node()), resume->detail);
        }
        acked_through_ = resume->send_after;
        sent_through_ = resume->send_after;  // resume right after what the collector holds
        conn->welcomed = true;
        connected_ = true;
        if (options_.log_connection_changes && (failures_in_row_ > 0 || refused_)) {
          spdlog::info("collector {}:{}: connected after {} failed attempts; sending from seq {}",
                       collector().host, collector().port, failures_in_row_ + refusals_in_row_,
                       resume->send_after + 1);
          logged_error_.clear();
        }
        failures_in_row_ = 0;
        refusals_in_row_ = 0;
        refused_ = false;
        if (w.limits().max_batch_reports() > 0) {
          options_.max_batch_reports =
              std::min<std::size_t>(options_.max_batch_reports, w.limits().max_batch_reports());
        }
        max_frame_bytes_ =
            w.limits().max_frame_bytes() > 0 ? w.limits().max_frame_bytes() : kDefaultMaxFrameBytes;
        wake_.cancel();
      } else if (env.has_ack()) {
        const std::uint64_t through = env.ack().acked_through_seq();
        ++stats_.acks;
        queue_.Acknowledge(through);
        acked_through_ = std::max(acked_through_, through);
        const auto now = Clock::now();
        auto it = inflight_.begin();
        while (it != inflight_.end() && it->last <= through) {
          stats_.ack_latency_us.AddValue(static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(now - it->sent).count()));
          ++it;
          // Past a refused batch: grow back to full batches, doubling.
          if (probe_limit_ > 0) {
            probe_limit_ *= 2;
            if (probe_limit_ >= options_.max_batch_reports) probe_limit_ = 0;
          }
        }
        inflight_.erase(inflight_.begin(), it);
        wake_.cancel();
      } else if (env.has_error()) {
        ++stats_.errors_received;
        const auto code = env.error().code();
        conn->code = code;
        fail("collector: " + v1::ErrorCode_Name(code) + ": " +
             EscapeForLog(env.error().message(), 512));
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
