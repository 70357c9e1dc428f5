// Runs the spool fuzz target over a seeded corpus: valid segments, with bytes
// flipped, truncated, spliced or duplicated. A crash or trap fails it.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "agent/spool/spool.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace deskpulse::agent {
namespace {

std::string ValidSegment(std::mt19937_64& rng, std::uint64_t first) {
  std::string out;
  const int n = 1 + static_cast<int>(rng() % 12);
  for (int i = 0; i < n; ++i) {
    std::string payload(rng() % 200, '\0');
    for (auto& c : payload) c = static_cast<char>(rng());
    out += EncodeRecord(first + static_cast<std::uint64_t>(i), payload);
  }
  return out;
}

TEST(SpoolFuzzCorpus, ScannerSurvivesHostileSegments) {
  std::mt19937_64 rng(20261201);
  for (int i = 0; i < 20000; ++i) {
    const auto first = static_cast<std::uint8_t>(1 + rng() % 50);
    std::string input(1, static_cast<char>(first));
    std::string seg = ValidSegment(rng, first);
    switch (i % 5) {
      case 0:  // as written
        break;
      case 1:  // bytes flipped
        for (int k = 0; k < 1 + static_cast<int>(rng() % 6); ++k) {
          seg[rng() % seg.size()] = static_cast<char>(rng());
        }
        break;
      case 2:  // torn
        seg.resize(rng() % seg.size());
        break;
      case 3:  // spliced with another segment, records duplicated
        seg += seg.substr(rng() % seg.size()) + ValidSegment(rng, first + 3);
        break;
      default:  // random bytes
        seg.assign(rng() % 400, '\0');
        for (auto& c : seg) c = static_cast<char>(rng());
        break;
    }
    input += seg;
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  }
  SUCCEED();
}

}  // namespace
}  // namespace deskpulse::agent
