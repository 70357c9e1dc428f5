// Runs the fuzz target over a seeded corpus: random bytes, and valid frames
// with random bytes flipped, truncated or spliced. A crash or trap fails it.
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "deskpulse/common/frame_codec.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace deskpulse {
namespace {

std::string ValidFrames(std::mt19937_64& rng) {
  v1::Envelope env;
  auto* b = env.mutable_batch();
  const int n = 1 + static_cast<int>(rng() % 5);
  for (int i = 0; i < n; ++i) {
    v1::Report r;
    r.set_seq(rng() % 100 + 1);
    r.set_observed_at_unix_ms(static_cast<std::int64_t>(rng() >> 20));
    r.mutable_boot()->set_login_ready_ms(rng() >> (rng() % 64));
    auto* w = r.add_sessions();
    w->set_window_s(static_cast<std::uint32_t>(rng()));
    w->set_rtt_p95_us(static_cast<std::uint32_t>(rng()));
    w->set_retransmit_ppm(static_cast<std::uint32_t>(rng()));
    auto* p = r.add_peripherals();
    p->set_vendor_id(static_cast<std::uint32_t>(rng()));
    p->set_state(static_cast<v1::DeviceState>(rng() % 6));
    auto* s = r.mutable_stability();
    s->set_session_s(static_cast<std::uint32_t>(rng()));
    s->add_session_events()->set_downtime_ms(rng());
    b->add_reports(r.SerializeAsString());
  }
  std::string out;
  (void)AppendFrame(env, &out);
  return out;
}

TEST(FuzzCorpus, DecodersSurviveHostileBytes) {
  // protobuf's parse diagnostics for hostile strings: not wanted here (the
  // binaries route them to the debug log).
  google::protobuf::SetLogHandler(nullptr);
  std::mt19937_64 rng(20261123);
  for (int i = 0; i < 20000; ++i) {
    std::string input(1, static_cast<char>(rng()));
    switch (i % 4) {
      case 0: {  // random bytes
        const std::size_t n = rng() % 512;
        for (std::size_t k = 0; k < n; ++k) input.push_back(static_cast<char>(rng()));
        break;
      }
      case 1:  // valid frames
        input += ValidFrames(rng) + ValidFrames(rng);
        break;
      case 2: {  // valid frames with bytes flipped
        std::string f = ValidFrames(rng);
        for (int k = 0; k < 4; ++k) f[rng() % f.size()] = static_cast<char>(rng());
        input += f;
        break;
      }
      default: {  // truncated and spliced
        std::string f = ValidFrames(rng);
        input += f.substr(0, rng() % f.size()) + ValidFrames(rng);
        break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  }
  SUCCEED();
}

}  // namespace
}  // namespace deskpulse
