// The HTTP request parser and target decoding (collector/http/message.h):
// the head is read and nothing more until the handler lets a body follow,
// each limit refuses with its status, and targets decode as browsers send them.
#include <gtest/gtest.h>

#include <string>

#include "collector/http/message.h"

namespace deskpulse::collector::http {
namespace {

using namespace std::string_literals;

/// Feeds `bytes` to `p` in pieces of `step`, as a socket might deliver them;
/// returns how many it consumed.
std::size_t Feed(RequestParser& p, std::string_view bytes, std::size_t step) {
  std::string held;
  std::size_t used = 0;
  for (std::size_t at = 0; at < bytes.size(); at += step) {
    held.append(bytes.substr(at, step));
    const std::size_t n = p.Put(held);
    held.erase(0, n);
    used += n;
    if (p.refusal()) break;
  }
  return used;
}

TEST(HttpParserTest, StopsAfterTheHeadUntilTheBodyIsAllowed) {
  for (std::size_t step : {1u, 7u, 4096u}) {
    SCOPED_TRACE(step);
    const std::string head =
        "POST /api/v1/imports/surveys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
        "Content-Type: text/csv\r\nContent-Length: 10\r\n\r\n";
    RequestParser p{Limits{}};
    const std::size_t used = Feed(p, head + "0123456789", step);
    ASSERT_FALSE(p.refusal()) << p.refusal()->message;
    ASSERT_TRUE(p.head_done());
    EXPECT_FALSE(p.done());
    EXPECT_EQ(used, head.size()) << "no byte of the body is taken before Continue()";
    EXPECT_EQ(p.head().method, "POST");
    EXPECT_EQ(p.head().target, "/api/v1/imports/surveys");
    ASSERT_NE(p.head().Find("authorization"), nullptr);
    EXPECT_EQ(*p.head().Find("authorization"), "Bearer t");
    EXPECT_EQ(p.head().content_length, 10u);
    EXPECT_TRUE(p.head().has_body());
    p.Continue(100);
    EXPECT_EQ(p.Put("0123456789"), 10u);
    EXPECT_TRUE(p.done());
    EXPECT_EQ(p.body(), "0123456789");
  }
}

TEST(HttpParserTest, PipelinedRequestsAreParsedOneAtATime) {
  const std::string two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  RequestParser first{Limits{}};
  const std::size_t n = first.Put(two);
  ASSERT_TRUE(first.done());
  EXPECT_EQ(first.head().target, "/a");
  RequestParser second{Limits{}};
  EXPECT_EQ(second.Put(std::string_view(two).substr(n)), two.size() - n);
  EXPECT_TRUE(second.done());
  EXPECT_EQ(second.head().target, "/b");
}

TEST(HttpParserTest, ChunkedBodiesAreBoundedInBytesAndChunks) {
  const std::string head = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    RequestParser p{Limits{}};
    p.Put(head);
    ASSERT_TRUE(p.head_done());
    EXPECT_TRUE(p.head().chunked);
    p.Continue(100);
    p.Put("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    EXPECT_TRUE(p.done());
    EXPECT_EQ(p.body(), "hello world");
  }
  {
    RequestParser p{Limits{}};
    p.Put(head);
    p.Continue(8);
    p.Put("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    ASSERT_TRUE(p.refusal());
    EXPECT_EQ(p.refusal()->status, 413);
  }
  {
    Limits l;
    l.max_chunks = 100;
    RequestParser p{l};
    p.Put(head);
    p.Continue(1 << 20);
    std::string chunks;
    for (int i = 0; i < 200; ++i) chunks += "1\r\nx\r\n";
    p.Put(chunks);
    ASSERT_TRUE(p.refusal());
    EXPECT_EQ(p.refusal()->status, 413);
    EXPECT_LE(p.body().size(), 100u);
  }
}

TEST(HttpParserTest, ABodyOverTheLimitIsRefusedBeforeItIsRead) {
  RequestParser p{Limits{}};
  p.Put("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n");
  ASSERT_TRUE(p.head_done());
  p.Continue(65536);
  ASSERT_TRUE(p.refusal());
  EXPECT_EQ(p.refusal()->status, 413);
  EXPECT_TRUE(p.body().capacity() < 65536) << "nothing reserved for a refused body";
}

struct Case {
  const char* what;
  std::string request;
  int status;
};

TEST(HttpParserTest, EachMalformedHeadGetsItsStatus) {
  const std::vector<Case> cases = {
      {"an over-long target", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
       414},
      {"a request line past the head limit", "GET /" + std::string(40000, 'a'), 414},
      {"an over-long value",
       "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'v') + "\r\n\r\n", 431},
      {"an over-long name", "GET / HTTP/1.1\r\nHost: x\r\n" + std::string(300, 'n') + ": v\r\n\r\n",
       431},
      {"a head past its limit",
       [] {
         std::string r = "GET / HTTP/1.1\r\nHost: x\r\n";
         for (int i = 0; i < 90; ++i)
           r += "X-F" + std::to_string(i) + ": " + std::string(400, 'v') + "\r\n";
         return r + "\r\n";
       }(),
       431},
      {"too many fields",
       [] {
         std::string r = "GET / HTTP/1.1\r\nHost: x\r\n";
         for (int i = 0; i < 101; ++i) r += "X-F" + std::to_string(i) + ": 1\r\n";
         return r + "\r\n";
       }(),
       431},
      {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"HTTP/9.9", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505},
      {"a malformed version", "GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400},
      {"a NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"s, 400},
      {"an expectation", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417},
      {"a coding not ending in chunked",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"both a length and a coding",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"two lengths that differ",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
      {"a space before a colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    RequestParser p{Limits{}};
    Feed(p, c.request, 4096);
    ASSERT_TRUE(p.refusal()) << "accepted";
    EXPECT_EQ(p.refusal()->status, c.status) << p.refusal()->message;
    EXPECT_FALSE(p.refusal()->message.empty());
  }
}

TEST(HttpParserTest, MethodsAreKeptAsSent) {
  RequestParser p{Limits{}};
  p.Put("get / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(p.head_done());
  EXPECT_EQ(p.head().method, "get") << "the server answers 501: methods are case-sensitive";
}

TEST(HttpParserTest, ExpectContinueAndKeepAlive) {
  RequestParser p{Limits{}};
  p.Put("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
  ASSERT_TRUE(p.head_done());
  EXPECT_TRUE(p.head().expect_continue);
  EXPECT_TRUE(p.head().keep_alive);
  RequestParser old{Limits{}};
  old.Put("GET / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(old.done()) << "HTTP/1.0 needs no Host";
  EXPECT_FALSE(old.head().keep_alive);
}

TEST(HttpTargetTest, DecodesAsBrowsersSendIt) {
  auto t = ParseTarget("/api/v1/customers?risk=high,low&q=Contoso+Legal&flag&empty=");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->path, "/api/v1/customers");
  EXPECT_EQ(t->segments, (std::vector<std::string>{"api", "v1", "customers"}));
  ASSERT_EQ(t->query.size(), 4u);
  EXPECT_EQ(t->query[0], (std::pair<std::string, std::string>{"risk", "high,low"}));
  EXPECT_EQ(t->query[1], (std::pair<std::string, std::string>{"q", "Contoso Legal"}));
  EXPECT_EQ(t->query[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(t->query[3], (std::pair<std::string, std::string>{"empty", ""}));

  t = ParseTarget("/a/1+1/%C3%A9t%C3%A9/x%2Fy");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->segments, (std::vector<std::string>{"a", "1+1", "\xC3\xA9t\xC3\xA9", "x/y"}));

  t = ParseTarget("/");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->segments, (std::vector<std::string>{""}));

  t = ParseTarget("http://collector:7742/api/v1?x=1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/api/v1");
  EXPECT_EQ(t->query.size(), 1u);
}

TEST(HttpTargetTest, RefusesWhatIsNotUtf8Text) {
  for (const char* bad :
       {"/api/v1/customers/%FF", "/%C3", "/assets/%80", "/%G1", "/%4", "/%", "/%00", "/%C0%AF",
        "/%ED%A0%80", "/%F4%90%80%80", "/x?q=%FF", "/x?%E2%82=1", "*", "ftp://x/y", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseTarget(bad).ok());
  }
}

TEST(HttpReplyTest, SerialisesWithLengthAndLeavesTheBodyOutForHead) {
  Reply r;
  r.status = 405;
  r.headers.emplace_back("Allow", "GET, HEAD");
  r.body = "{}\n";
  r.close = true;
  const std::string wire = Serialize(r, false, HttpDate(784111777));
  EXPECT_EQ(wire.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u);
  EXPECT_NE(wire.find("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), std::string::npos);
  EXPECT_NE(wire.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_NE(wire.find("Content-Length: 3\r\n"), std::string::npos);
  EXPECT_NE(wire.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(wire.substr(wire.size() - 7), "\r\n\r\n{}\n");
  const std::string head = Serialize(r, true, "x");
  EXPECT_NE(head.find("Content-Length: 3\r\n"), std::string::npos);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
}

}  // namespace
}  // namespace deskpulse::collector::http
