// Fuzz target for the agent's spool segment scanner, which reads whatever a
// power cut or a failing disk left in a segment file. Built as a libFuzzer
// binary (DESKPULSE_FUZZ=ON, clang) and run over a seeded corpus by
// spool_fuzz_corpus_test in every test run.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/spool/spool.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace deskpulse::agent;
  if (size < 1) return 0;
  // The first byte is the seq the segment's name says it starts at.
  const std::uint64_t first = data[0];
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const SegmentScan scan = ScanSegment(bytes, first);
  std::uint64_t prev = 0;
  std::string clean;
  for (const auto& r : scan.records) {
    // Records lie inside the bytes, in increasing seq order.
    if (r.seq <= prev || r.offset > bytes.size() || r.length > bytes.size() - r.offset) {
      __builtin_trap();
    }
    prev = r.seq;
    clean += EncodeRecord(r.seq, bytes.substr(r.offset, r.length));
  }
  if (scan.valid_end > bytes.size()) __builtin_trap();
  // What replay keeps (the good records, re-encoded) scans back to the same
  // records with no damage.
  const SegmentScan again = ScanSegment(clean, first);
  if (again.corrupt != 0 || again.records.size() != scan.records.size()) __builtin_trap();
  return 0;
}
