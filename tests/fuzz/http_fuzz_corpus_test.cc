// Runs the HTTP fuzz target over a seeded corpus: well-formed requests (with
// and without bodies, chunked, pipelined), with bytes flipped, cut short,
// spliced or replaced. A crash or trap fails it.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

const std::vector<std::string>& Seeds() {
  static const std::vector<std::string> seeds = [] {
    std::vector<std::string> s;
    s.emplace_back(
        "GET /api/v1/customers?risk=high,low&q=a+b HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer dpa_x\r\n\r\n");
    s.emplace_back(
        "POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        "Content-Length: 12\r\n\r\ncustomer,a\n1");
    s.emplace_back(
        "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n");
    s.emplace_back(
        "PUT /a/%C3%A9/b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Length: 2\r\n\r\n{}");
    s.emplace_back("GET / HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n");
    s.emplace_back("HEAD http://h:1/m?x=%FF HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    return s;
  }();
  return seeds;
}

TEST(HttpFuzzCorpus, ParserSurvivesHostileRequests) {
  std::mt19937_64 rng(20261207);
  for (int i = 0; i < 30000; ++i) {
    std::string req = Seeds()[rng() % Seeds().size()];
    switch (i % 5) {
      case 0:  // as written
        break;
      case 1:  // bytes flipped
        for (int k = 0; k < 1 + static_cast<int>(rng() % 6); ++k) {
          req[rng() % req.size()] = static_cast<char>(rng());
        }
        break;
      case 2:  // cut short
        req.resize(rng() % req.size());
        break;
      case 3:  // spliced with another
        req = req.substr(0, rng() % req.size()) + Seeds()[rng() % Seeds().size()];
        break;
      default:  // random bytes
        req.assign(rng() % 400, '\0');
        for (auto& c : req) c = static_cast<char>(rng());
        break;
    }
    std::string input(2, '\0');
    input[0] = static_cast<char>(rng());
    input[1] = static_cast<char>(rng());
    input += req;
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  }
}

}  // namespace
