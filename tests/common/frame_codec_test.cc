#include "deskpulse/common/frame_codec.h"

#include <gtest/gtest.h>

#include "deskpulse/v1/wire.pb.h"

namespace deskpulse {
namespace {

std::span<const std::uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

v1::Envelope SampleAck(std::uint64_t seq) {
  v1::Envelope e;
  e.mutable_ack()->set_acked_through_seq(seq);
  return e;
}

TEST(FrameCodec, RoundTripsOneFrame) {
  std::string wire;
  ASSERT_TRUE(AppendFrame(SampleAck(42), &wire).ok());
  FrameDecoder d;
  EXPECT_EQ(d.Feed(Bytes(wire)), wire.size());
  auto frame = d.TakeFrame();
  ASSERT_TRUE(frame.has_value());
  v1::Envelope back;
  ASSERT_TRUE(back.ParseFromString(*frame));
  EXPECT_EQ(back.ack().acked_through_seq(), 42u);
  EXPECT_FALSE(d.TakeFrame().has_value());
}

TEST(FrameCodec, DecodesFedOneByteAtATime) {
  std::string wire;
  for (std::uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(AppendFrame(SampleAck(i), &wire).ok());
  FrameDecoder d;
  std::vector<std::uint64_t> seen;
  for (std::size_t i = 0; i < wire.size(); ++i) {
    const std::string one = wire.substr(i, 1);
    EXPECT_EQ(d.Feed(Bytes(one)), 1u);
    ASSERT_TRUE(d.status().ok());
    if (auto f = d.TakeFrame()) {
      v1::Envelope e;
      ASSERT_TRUE(e.ParseFromString(*f));
      seen.push_back(e.ack().acked_through_seq());
    }
  }
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_FALSE(d.mid_frame());
}

TEST(FrameCodec, StopsAtEachFrameBoundary) {
  std::string wire;
  ASSERT_TRUE(AppendFrame(SampleAck(1), &wire).ok());
  const std::size_t first = wire.size();
  ASSERT_TRUE(AppendFrame(SampleAck(2), &wire).ok());
  FrameDecoder d;
  EXPECT_EQ(d.Feed(Bytes(wire)), first);  // one frame per Feed: the caller takes it first
  EXPECT_TRUE(d.TakeFrame().has_value());
  EXPECT_EQ(d.Feed(Bytes(wire).subspan(first)), wire.size() - first);
  EXPECT_TRUE(d.TakeFrame().has_value());
}

TEST(FrameCodec, RejectsAHugeLengthBeforeAllocating) {
  // 2^31 announced: the decoder fails on the header alone.
  const std::string header("\x80\x00\x00\x00", 4);
  FrameDecoder d(1 << 20);
  EXPECT_EQ(d.Feed(Bytes(header)), 4u);
  EXPECT_EQ(d.status().code(), Code::kResourceExhausted);
  EXPECT_NE(d.status().message().find("2147483648"), std::string::npos);
  EXPECT_NE(d.status().message().find("1048576"), std::string::npos);
  // Failed decoders consume nothing more.
  EXPECT_EQ(d.Feed(Bytes(std::string("abc"))), 0u);
}

TEST(FrameCodec, AcceptsExactlyTheLimit) {
  FrameDecoder d(8);
  const std::string wire = std::string("\x00\x00\x00\x08", 4) + "12345678";
  EXPECT_EQ(d.Feed(Bytes(wire)), wire.size());
  EXPECT_TRUE(d.status().ok());
  EXPECT_EQ(d.TakeFrame().value(), "12345678");
  FrameDecoder over(7);
  over.Feed(Bytes(wire));
  EXPECT_FALSE(over.status().ok());
}

TEST(FrameCodec, RejectsAnEmptyFrame) {
  FrameDecoder d;
  d.Feed(Bytes(std::string(4, '\0')));
  EXPECT_EQ(d.status().code(), Code::kDataLoss);
}

TEST(FrameCodec, ReportsMidFrame) {
  FrameDecoder d;
  EXPECT_FALSE(d.mid_frame());
  d.Feed(Bytes(std::string("\x00\x00", 2)));
  EXPECT_TRUE(d.mid_frame());
}

}  // namespace
}  // namespace deskpulse

namespace deskpulse {
namespace {

TEST(FrameCodec, HoldsAfterTheHeaderUntilTheCallerHasRoom) {
  std::string wire;
  ASSERT_TRUE(AppendFrame(SampleAck(7), &wire).ok());
  FrameDecoder d;
  d.hold_after_header(true);
  EXPECT_EQ(d.Feed(Bytes(wire)), 4u);  // the length prefix only
  ASSERT_TRUE(d.held_header().has_value());
  EXPECT_EQ(*d.held_header(), wire.size() - 4);
  EXPECT_EQ(d.Feed(Bytes(wire).subspan(4)), 0u) << "nothing more until ContinuePayload";
  d.ContinuePayload();
  EXPECT_EQ(d.Feed(Bytes(wire).subspan(4)), wire.size() - 4);
  EXPECT_TRUE(d.TakeFrame().has_value());
}

TEST(FrameCodec, AHeldHeaderReservesNoPayloadMemory) {
  // A server that waits for room before a frame (its memory cap) must not
  // already hold part of that frame's memory for every waiting connection.
  FrameDecoder d(1u << 20);
  d.hold_after_header(true);
  const std::string header("\x00\x10\x00\x00", 4);  // 1 MiB announced
  EXPECT_EQ(d.Feed(Bytes(header)), 4u);
  ASSERT_TRUE(d.held_header().has_value());
  EXPECT_LT(d.buffered_bytes(), 64u) << "only the empty string's own storage";
  d.ContinuePayload();
  const std::string some(1000, 'x');
  EXPECT_EQ(d.Feed(Bytes(some)), some.size());
  EXPECT_GE(d.buffered_bytes(), some.size());
  EXPECT_LE(d.buffered_bytes(), 64u * 1024);
}

TEST(FrameCodec, AStalledLargeFrameHoldsOnlyWhatArrived) {
  FrameDecoder d(1u << 20);
  const std::string header("\x00\x10\x00\x00", 4);  // 1 MiB announced
  EXPECT_EQ(d.Feed(Bytes(header)), 4u);
  EXPECT_LE(d.buffered_bytes(), 64u * 1024);
  const std::string some(1000, 'x');
  d.Feed(Bytes(some));
  EXPECT_LE(d.buffered_bytes(), 64u * 1024) << "not the whole megabyte for 1,000 bytes";
  d.set_max_frame_bytes(16);
  EXPECT_EQ(d.max_frame_bytes(), 16u);
}

}  // namespace
}  // namespace deskpulse
