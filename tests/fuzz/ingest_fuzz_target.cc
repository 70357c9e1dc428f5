// Fuzz target for everything the collector decodes from the network or disk:
// frames (any byte split, with the collector's hold after each header),
// envelopes, the field limits of Hellos and reports, the rollups built from
// them, and histogram blobs. Built as a libFuzzer binary (DESKPULSE_FUZZ=ON, clang)
// and run over a seeded corpus by fuzz_corpus_test in every test run.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "collector/store/rollup.h"
#include "deskpulse/common/frame_codec.h"
#include "deskpulse/common/histogram.h"
#include "deskpulse/common/report_limits.h"
#include "deskpulse/v1/report.pb.h"
#include "deskpulse/v1/wire.pb.h"

// protobuf's parse diagnostics for hostile strings would be most of the
// output (the binaries route them to the debug log).
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace deskpulse;
  if (size == 0) return 0;
  // The first byte picks how the rest is split into reads.
  const std::size_t chunk = 1 + data[0] % 64;
  std::span<const std::uint8_t> rest(data + 1, size - 1);

  FrameDecoder decoder(64 * 1024);
  decoder.hold_after_header(data[0] & 0x80);  // as the collector reads
  collector::RollupAccumulator acc;
  while (!rest.empty() && decoder.status().ok()) {
    auto piece = rest.first(std::min(chunk, rest.size()));
    std::size_t used = 0;
    while (used < piece.size() && decoder.status().ok()) {
      used += decoder.Feed(piece.subspan(used));
      if (auto held = decoder.held_header()) {
        if (*held > decoder.max_frame_bytes() ||
            decoder.buffered_bytes() > (std::size_t{64} << 10)) {
          __builtin_trap();
        }
        decoder.ContinuePayload();
      }
      if (auto frame = decoder.TakeFrame()) {
        if (frame->size() > decoder.max_frame_bytes()) __builtin_trap();
        v1::Envelope env;
        if (!env.ParseFromString(*frame)) continue;
        if (env.has_hello()) (void)ValidateHello(env.hello());
        if (!env.has_batch()) continue;
        for (const auto& bytes : env.batch().reports()) {
          v1::Report r;
          if (!r.ParseFromString(bytes)) continue;
          if (ValidateReport(r).ok()) {
            acc.AddReport(1, 2, r);
          } else {
            // Clamped, every report passes (but a bad seq, which is not cut).
            ClampReport(&r);
            if (r.seq() != 0 && r.seq() <= limits::kMaxSeq && !ValidateReport(r).ok()) {
              __builtin_trap();
            }
          }
        }
      }
    }
    rest = rest.subspan(piece.size());
  }
  (void)acc.Expand();

  // The same bytes as a stored histogram blob: decode fails cleanly or
  // re-encodes to a blob that decodes to the same histogram.
  auto h = SparseHistogram::Decode(std::string_view(reinterpret_cast<const char*>(data), size));
  if (h.ok()) {
    auto again = SparseHistogram::Decode(h->Encode());
    if (!again.ok() || !(*again == *h)) __builtin_trap();
    (void)h->Quantile(0.99);
  }
  return 0;
}
