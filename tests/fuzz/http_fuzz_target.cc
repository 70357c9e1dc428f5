// Fuzz target for the HTTP request parser and target decoding, which read
// whatever a peer sends before it is authenticated. Built as a libFuzzer
// binary (DESKPULSE_FUZZ=ON, clang) and run over a seeded corpus by
// http_fuzz_corpus_test in every test run.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "collector/http/message.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace deskpulse::collector::http;
  if (size < 2) return 0;
  // The first byte: where the bytes are split, as two reads would deliver
  // them; the second: the body limit the handler allows (in 16-byte steps).
  const std::size_t split = data[0];
  const std::uint64_t limit = std::uint64_t{data[1]} * 16;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  Limits limits;
  limits.max_head_bytes = 2048;
  limits.max_target_bytes = 512;
  limits.max_field_value_bytes = 512;
  limits.max_fields = 16;
  limits.max_chunks = 32;
  RequestParser p(limits);
  std::string held(bytes.substr(0, std::min(split, bytes.size())));
  std::size_t used = p.Put(held);
  if (used > held.size()) __builtin_trap();
  held.erase(0, used);
  held.append(bytes.substr(std::min(split, bytes.size())));
  for (int round = 0; round < 4 && !p.refusal() && !p.done(); ++round) {
    if (p.head_done() && !p.continued()) {
      if (p.head().target.size() > limits.max_target_bytes) __builtin_trap();
      if (p.head().fields.size() > limits.max_fields) __builtin_trap();
      if (p.head().version != 10 && p.head().version != 11) __builtin_trap();
      auto target = ParseTarget(p.head().target);
      if (target.ok() && target->segments.empty()) __builtin_trap();
      p.Continue(limit);
    }
    const std::size_t n = p.Put(held);
    if (n > held.size()) __builtin_trap();
    held.erase(0, n);
    if (n == 0 && !(p.head_done() && !p.continued())) break;
  }
  if (p.refusal()) {
    const int s = p.refusal()->status;
    if (s < 400 || s > 505 || p.refusal()->message.empty()) __builtin_trap();
    // Nothing more is taken after a refusal.
    if (p.Put("GET / HTTP/1.1\r\nHost: x\r\n\r\n") != 0) __builtin_trap();
  }
  if (p.continued() && p.body().size() > limit) __builtin_trap();
  return 0;
}
