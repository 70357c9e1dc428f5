#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "deskpulse/common/status.h"

namespace google::protobuf {
class MessageLite;
}

namespace deskpulse {

/// Size of the big-endian length prefix in front of every frame.
inline constexpr std::size_t kFrameHeaderBytes = 4;
/// The default limit on one frame's payload (docs/protocol.md).
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 1u << 20;

/// Append one frame (length prefix + serialized message) to `out`.
Status AppendFrame(const google::protobuf::MessageLite& message, std::string* out);

/// A pure, incremental decoder of length-prefixed frames.
///
/// Bytes may arrive in any split, down to one at a time. The length prefix is
/// checked against the limit before any payload memory is reserved, so a peer
/// that announces 2^31 bytes costs nothing; the payload's memory then grows
/// with the bytes that really arrive (64 KiB at first, the whole frame past
/// that), so announcing a large frame and stalling costs little more. With
/// hold_after_header() the decoder stops after each length prefix until the
/// caller has room for that frame (ContinuePayload). After an error the
/// decoder stays failed; the connection is to be closed.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  /// Consume bytes from `input` until one frame is complete or the input is used
  /// up. Returns how many bytes were consumed; check TakeFrame() and status().
  std::size_t Feed(std::span<const std::uint8_t> input);

  /// The completed frame's payload, if Feed() finished one. Clears it.
  std::optional<std::string> TakeFrame();

  /// Not OK once the input broke the framing rules (oversize or empty frame).
  const Status& status() const;

  /// True while part of a frame (header or payload) has been received.
  bool mid_frame() const { return header_filled_ > 0 && !frame_ready_; }

  std::uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  /// A new limit for the frames that follow (e.g. once the peer is known).
  void set_max_frame_bytes(std::uint32_t max) { max_frame_bytes_ = max; }

  /// Stop after every length prefix: Feed() consumes nothing more until
  /// ContinuePayload(), so the caller can budget the frame first.
  void hold_after_header(bool hold) { hold_after_header_ = hold; }
  /// The payload size of a frame whose length prefix is in and held.
  std::optional<std::uint32_t> held_header() const {
    return header_held_ ? std::optional<std::uint32_t>(payload_size_) : std::nullopt;
  }
  void ContinuePayload() { header_held_ = false; }
  /// Heap bytes held for the frame being received.
  std::size_t buffered_bytes() const { return payload_.capacity(); }

 private:
  // A server holds one decoder per connection: ordered to pack, and the
  // error (rare) kept out of line.
  std::string payload_;
  std::unique_ptr<Status> error_;  // once the framing rules were broken
  std::uint32_t max_frame_bytes_;
  std::uint32_t payload_size_ = 0;
  std::uint8_t header_[kFrameHeaderBytes] = {};
  std::uint8_t header_filled_ = 0;
  bool hold_after_header_ = false;
  bool header_held_ = false;
  bool frame_ready_ = false;
};

}  // namespace deskpulse
