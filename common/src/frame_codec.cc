#include "deskpulse/common/frame_codec.h"

#include <google/protobuf/message_lite.h>

#include <algorithm>
#include <string>

namespace deskpulse {

namespace {
constexpr std::size_t kInitialReserve = std::size_t{64} << 10;
}  // namespace

Status AppendFrame(const google::protobuf::MessageLite& message, std::string* out) {
  const std::size_t size = message.ByteSizeLong();
  if (size > 0xFFFFFFFFu) return InvalidArgument("message too large to frame");
  const std::size_t at = out->size();
  out->resize(at + kFrameHeaderBytes + size);
  auto* p = reinterpret_cast<std::uint8_t*>(out->data() + at);
  p[0] = static_cast<std::uint8_t>(size >> 24);
  p[1] = static_cast<std::uint8_t>(size >> 16);
  p[2] = static_cast<std::uint8_t>(size >> 8);
  p[3] = static_cast<std::uint8_t>(size);
  if (!message.SerializeWithCachedSizesToArray(p + kFrameHeaderBytes) && size != 0) {
    out->resize(at);
    return Internal("protobuf serialization failed");
  }
  return Status::Ok();
}

std::size_t FrameDecoder::Feed(std::span<const std::uint8_t> input) {
  std::size_t used = 0;
  if (error_ || frame_ready_ || header_held_) return 0;
  while (used < input.size()) {
    if (header_filled_ < kFrameHeaderBytes) {
      header_[header_filled_++] = input[used++];
      if (header_filled_ < kFrameHeaderBytes) continue;
      payload_size_ = (std::uint32_t{header_[0]} << 24) | (std::uint32_t{header_[1]} << 16) |
                      (std::uint32_t{header_[2]} << 8) | std::uint32_t{header_[3]};
      // The limit is checked before anything is reserved for the payload.
      if (payload_size_ > max_frame_bytes_) {
        error_ = std::make_unique<Status>(Code::kResourceExhausted,
                                          "frame of " + std::to_string(payload_size_) +
                                              " bytes is over the limit of " +
                                              std::to_string(max_frame_bytes_) + " bytes");
        return used;
      }
      if (payload_size_ == 0) {
        error_ = std::make_unique<Status>(Code::kDataLoss, "empty frame (length 0)");
        return used;
      }
      payload_.clear();
      if (hold_after_header_) {
        header_held_ = true;
        return used;
      }
      continue;
    }
    // Memory only once payload bytes arrive: a held header costs nothing.
    if (payload_.empty()) payload_.reserve(std::min<std::size_t>(payload_size_, kInitialReserve));
    const std::size_t want = payload_size_ - payload_.size();
    const std::size_t take = std::min(want, input.size() - used);
    // Past the first 64 KiB the frame is really coming: room for all of it
    // at once, rather than doubling (and copying) towards it.
    if (payload_.size() + take > payload_.capacity()) payload_.reserve(payload_size_);
    payload_.append(reinterpret_cast<const char*>(input.data() + used), take);
    used += take;
    if (payload_.size() == payload_size_) {
      frame_ready_ = true;
      return used;
    }
  }
  return used;
}

const Status& FrameDecoder::status() const {
  static const Status kOk;
  return error_ ? *error_ : kOk;
}

std::optional<std::string> FrameDecoder::TakeFrame() {
  if (!frame_ready_) return std::nullopt;
  frame_ready_ = false;
  header_filled_ = 0;
  payload_size_ = 0;
  std::string out;
  out.swap(payload_);
  return out;  // the next frame's payload starts with no memory
}

}  // namespace deskpulse
