#include "agent/spool/spool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <tuple>

#include "deskpulse/common/crc32c.h"

namespace deskpulse::agent {
namespace {

constexpr std::uint32_t kMagic = 0x31535044;  // "DPS1" little-endian
constexpr std::size_t kHeaderBytes = 20;      // magic, length, seq, crc
// The collector refuses frames above 1 MiB; a report never comes close.
constexpr std::uint32_t kMaxRecordBytes = 1u << 20;
constexpr std::uint64_t kMinSegmentBytes = 64u << 10;
constexpr std::uint64_t kMaxSegmentBytes = 4u << 20;

std::uint32_t Load32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t Load64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::uint32_t RecordCrc(std::uint64_t seq, std::string_view payload) {
  char s[8];
  std::memcpy(s, &seq, 8);
  return Crc32c(Crc32c(0, std::string_view(s, 8)), payload);
}

// A whole, checksummed record at `pos`, or nullopt.
std::optional<SpoolRecord> RecordAt(std::string_view bytes, std::size_t pos) {
  if (bytes.size() - pos < kHeaderBytes) return std::nullopt;
  const char* h = bytes.data() + pos;
  if (Load32(h) != kMagic) return std::nullopt;
  const std::uint32_t len = Load32(h + 4);
  if (len > kMaxRecordBytes || bytes.size() - pos - kHeaderBytes < len) return std::nullopt;
  const std::uint64_t seq = Load64(h + 8);
  if (RecordCrc(seq, bytes.substr(pos + kHeaderBytes, len)) != Load32(h + 16)) {
    return std::nullopt;
  }
  return SpoolRecord{seq, pos + kHeaderBytes, len};
}

// The payload length of a record at `pos` whose header is sound (magic, a
// length that fits), whatever its checksum says; nullopt otherwise.
std::optional<std::uint32_t> SoundHeaderAt(std::string_view bytes, std::size_t pos) {
  if (bytes.size() - pos < kHeaderBytes) return std::nullopt;
  const char* h = bytes.data() + pos;
  if (Load32(h) != kMagic) return std::nullopt;
  const std::uint32_t len = Load32(h + 4);
  if (len > kMaxRecordBytes || bytes.size() - pos - kHeaderBytes < len) return std::nullopt;
  return len;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(Errno("write " + path));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status::Ok();
}

// A renumbered copy of the spool's tail, before the state file commits it.
constexpr const char* kRenumberFile = "renumber.tmp";

std::string SegmentName(std::uint64_t first_seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.seg", static_cast<unsigned long long>(first_seq));
  return name;
}

// Reads a file through a read-only mapping (file pages, not heap).
class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError(Errno("open " + path));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return IoError(Errno("stat " + path));
    }
    MappedFile m;
    m.size_ = static_cast<std::size_t>(st.st_size);
    if (m.size_ > 0) {
      void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return IoError(Errno("mmap " + path));
      }
      m.data_ = static_cast<char*>(p);
    }
    ::close(fd);
    return m;
  }
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  std::string_view bytes() const { return {data_, size_}; }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

std::uint64_t RandomEpoch() {
  std::uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof v, 0) != sizeof v) v = static_cast<std::uint64_t>(::time(nullptr));
    v &= (1ull << 62) - 1;  // positive in every signed store
  }
  return v;
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError(Errno("open " + dir));
  ::fsync(fd);
  ::close(fd);
  return Status::Ok();
}

}  // namespace

std::string EncodeRecord(std::uint64_t seq, std::string_view payload) {
  std::string out(kHeaderBytes, '\0');
  const std::uint32_t len = static_cast<std::uint32_t>(payload.size());
  const std::uint32_t crc = RecordCrc(seq, payload);
  std::memcpy(out.data(), &kMagic, 4);
  std::memcpy(out.data() + 4, &len, 4);
  std::memcpy(out.data() + 8, &seq, 8);
  std::memcpy(out.data() + 16, &crc, 4);
  out.append(payload);
  return out;
}

SegmentScan ScanSegment(std::string_view bytes, std::uint64_t first_seq) {
  SegmentScan scan;
  std::size_t pos = 0;
  std::uint64_t prev_seq = 0;
  std::uint64_t expected = first_seq;  // the seq the next record should carry
  while (pos < bytes.size()) {
    auto rec = RecordAt(bytes, pos);
    if (rec && rec->seq > prev_seq) {
      prev_seq = rec->seq;
      expected = rec->seq + 1;
      scan.records.push_back(*rec);
      pos = rec->offset + rec->length;
      scan.valid_end = pos;
      continue;
    }
    // A sound header over damaged bytes (a flipped bit in the payload): one
    // record lost, and the next one starts right after it.
    if (auto len = SoundHeaderAt(bytes, pos)) {
      ++scan.corrupt;
      ++expected;
      pos += kHeaderBytes + *len;
      continue;
    }
    // A damaged header, or a record torn at the tail: resynchronise on the
    // next record whose checksum holds and count the seqs in between.
    std::size_t next = pos + 1;
    std::optional<SpoolRecord> found;
    for (; next + kHeaderBytes <= bytes.size(); ++next) {
      if (Load32(bytes.data() + next) != kMagic) continue;
      found = RecordAt(bytes, next);
      if (found && found->seq > prev_seq) break;
      found.reset();
    }
    if (!found) {
      ++scan.corrupt;
      break;
    }
    scan.corrupt += std::max<std::uint64_t>(1, found->seq > expected ? found->seq - expected : 0);
    pos = next;
  }
  return scan;
}

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {}

Spool::~Spool() {
  (void)Sync();
  if (active_fd_ >= 0) ::close(active_fd_);
}

Result<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return InvalidArgument("spool: no directory given");
  if (options.max_bytes < 2 * kMinSegmentBytes) {
    return InvalidArgument("spool: max_bytes must be at least " +
                           std::to_string(2 * kMinSegmentBytes));
  }
  std::unique_ptr<Spool> spool(new Spool(std::move(options)));
  DP_RETURN_IF_ERROR(spool->Load());
  return spool;
}

std::uint64_t Spool::SegmentTarget() const {
  return std::clamp<std::uint64_t>(options_.max_bytes / 16, kMinSegmentBytes, kMaxSegmentBytes);
}

Status Spool::Load() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec) return IoError("spool: cannot create " + options_.dir + ": " + ec.message());
  ::chmod(options_.dir.c_str(), 0700);

  // The state: epoch, acknowledged seq and the counters.
  bool state_ok = false;
  bool has_collector_acked = false;
  const std::string state_path = options_.dir + "/state";
  if (std::ifstream in(state_path); in) {
    std::string key;
    std::uint64_t value = 0;
    int seen = 0;
    while (in >> key >> value) {
      if (key == "epoch")
        epoch_ = value, seen |= 1;
      else if (key == "acked")
        acked_ = value, seen |= 2;
      else if (key == "last_seq")
        last_seq_ = value, seen |= 4;
      else if (key == "dropped")
        dropped_ = value, seen |= 8;
      else if (key == "corrupt")
        corrupt_ = value, seen |= 16;
      else if (key == "collector_acked")
        collector_acked_ = value, has_collector_acked = true;
      else if (key == "rejected")
        rejected_ = value;
      else if (key == "lost_state")
        lost_state_ = value;
      else if (key == "regressions")
        regressions_ = value;
      else if (key == "unverified_after")
        unverified_after_ = value;
      else if (key == "rejected_seq")
        rejected_seqs_.push_back(value);
    }
    state_ok = seen == 31 && epoch_ != 0 && acked_ <= last_seq_;
    if (!state_ok) recovery_note_ = "spool state file " + state_path + " is damaged";
  }
  if (!has_collector_acked) collector_acked_ = acked_;  // a state from before that key

  std::vector<std::pair<std::uint64_t, std::string>> files;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 24 || !name.ends_with(".seg")) continue;
    std::uint64_t first = 0;
    if (std::from_chars(name.data(), name.data() + 20, first).ec != std::errc{}) continue;
    files.emplace_back(first, entry.path().string());
  }
  std::sort(files.begin(), files.end());

  if (!state_ok) {
    // Without a trustworthy state the old sequence numbers cannot be resumed:
    // start a new epoch (docs/protocol.md) and count what is discarded.
    std::uint64_t discarded = 0;
    for (const auto& [first, path] : files) {
      if (auto m = MappedFile::Open(path); m.ok()) {
        discarded += ScanSegment(m->bytes(), first).records.size();
      }
      fs::remove(path, ec);
    }
    fs::remove(options_.dir + "/" + kRenumberFile, ec);
    if (!files.empty() && recovery_note_.empty()) {
      recovery_note_ = "spool state file " + state_path + " is missing";
    }
    const bool had_state = !recovery_note_.empty();
    epoch_ = RandomEpoch();
    acked_ = last_seq_ = collector_acked_ = 0;
    dropped_ = discarded;
    corrupt_ = had_state ? 1 : 0;
    rejected_ = lost_state_ = regressions_ = 0;
    rejected_seqs_.clear();
    unverified_after_.reset();  // a new epoch: nothing of it can be at the collector yet
    return WriteState();
  }
  DP_RETURN_IF_ERROR(RecoverRenumber(&files));

  for (const auto& [first, path] : files) {
    auto mapped = MappedFile::Open(path);
    if (!mapped.ok()) return mapped.status();
    const SegmentScan scan = ScanSegment(mapped->bytes(), first);
    Segment seg{first, 0, 0, 0, path};
    if (scan.corrupt > 0) {
      // Keep the good records and remove the damage once, so it is counted
      // once and never read again.
      corrupt_ += scan.corrupt;
      std::string clean;
      for (const auto& r : scan.records) {
        clean += EncodeRecord(r.seq, mapped->bytes().substr(r.offset, r.length));
      }
      const std::string tmp = path + ".tmp";
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return IoError(Errno("open " + tmp));
      Status w = WriteAll(fd, clean, tmp);
      if (w.ok() && options_.fsync) ::fdatasync(fd);
      ::close(fd);
      DP_RETURN_IF_ERROR(w);
      if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError(Errno("rename " + tmp));
      seg.bytes = clean.size();
    } else {
      seg.bytes = mapped->bytes().size();
    }
    seg.records = scan.records.size();
    if (!scan.records.empty()) seg.last_seq = scan.records.back().seq;
    if (seg.records == 0 || seg.last_seq <= acked_) {
      fs::remove(path, ec);
      continue;
    }
    last_seq_ = std::max(last_seq_, seg.last_seq);
    bytes_ += seg.bytes;
    segments_.push_back(std::move(seg));
  }
  // Whatever this run numbers from here on may collide with what a collector
  // acknowledged before a power cut; the first Welcome tells. A previous run
  // that never reached a collector left its own, lower, mark: keep that.
  if (!unverified_after_) unverified_after_ = last_seq_;
  return WriteState();
}

Status Spool::RecoverRenumber(std::vector<std::pair<std::uint64_t, std::string>>* files) {
  namespace fs = std::filesystem;
  const std::string tmp = options_.dir + "/" + kRenumberFile;
  std::error_code ec;
  if (!fs::exists(tmp, ec)) return Status::Ok();
  auto mapped = MappedFile::Open(tmp);
  if (!mapped.ok()) return mapped.status();
  const SegmentScan scan = ScanSegment(mapped->bytes(), 0);
  // The state file is the commit point: it names the new numbering only once
  // the renumbered copy was durable.
  if (scan.records.empty() || last_seq_ < scan.records.back().seq) {
    fs::remove(tmp, ec);
    return Status::Ok();
  }
  for (const auto& [first, path] : *files) fs::remove(path, ec);
  const std::uint64_t first = scan.records.front().seq;
  const std::string path = options_.dir + "/" + SegmentName(first);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError(Errno("rename " + tmp));
  if (options_.fsync) DP_RETURN_IF_ERROR(SyncDir(options_.dir));
  files->assign(1, {first, path});
  return Status::Ok();
}

Status Spool::WriteState(bool sync_dir) {
  const std::string path = options_.dir + "/state";
  const std::string tmp = path + ".tmp";
  std::ostringstream s;
  s << "epoch " << epoch_ << "\nacked " << acked_ << "\nlast_seq " << last_seq_ << "\ndropped "
    << dropped_ << "\ncorrupt " << corrupt_ << "\ncollector_acked " << collector_acked_
    << "\nrejected " << rejected_ << "\nlost_state " << lost_state_ << "\nregressions "
    << regressions_ << "\n";
  if (unverified_after_) s << "unverified_after " << *unverified_after_ << "\n";
  for (std::uint64_t seq : rejected_seqs_) s << "rejected_seq " << seq << "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("open " + tmp));
  Status w = WriteAll(fd, s.str(), tmp);
  if (w.ok() && options_.fsync && ::fdatasync(fd) != 0) w = IoError(Errno("fdatasync " + tmp));
  ::close(fd);
  DP_RETURN_IF_ERROR(w);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError(Errno("rename " + tmp));
  if (options_.fsync && sync_dir) return SyncDir(options_.dir);
  return Status::Ok();
}

Status Spool::OpenActive(std::uint64_t first_seq) {
  if (active_fd_ >= 0) {
    ::close(active_fd_);
    active_fd_ = -1;
  }
  const std::string path = options_.dir + "/" + SegmentName(first_seq);
  active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (active_fd_ < 0) return IoError(Errno("open " + path));
  segments_.push_back(Segment{first_seq, 0, 0, 0, path});
  if (options_.fsync) return SyncDir(options_.dir);
  return Status::Ok();
}

Status Spool::Sync() {
  if (state_dirty_) {
    state_dirty_ = false;
    last_state_write_ = std::chrono::steady_clock::now();
    (void)WriteState(/*sync_dir=*/false);
  }
  if (!unsynced_ || active_fd_ < 0) return Status::Ok();
  if (options_.fsync && ::fdatasync(active_fd_) != 0) {
    return IoError(Errno("fdatasync " + segments_.back().path));
  }
  unsynced_ = false;
  return Status::Ok();
}

Result<std::uint64_t> Spool::Append(deskpulse::v1::Report& report, bool sync) {
  const std::uint64_t seq = last_seq_ + 1;
  report.set_seq(seq);
  std::string payload;
  if (!report.SerializeToString(&payload)) return Internal("spool: report does not serialize");
  if (payload.size() > kMaxRecordBytes) {
    return InvalidArgument("spool: report of " + std::to_string(payload.size()) +
                           " bytes is over the limit of " + std::to_string(kMaxRecordBytes));
  }
  const std::string record = EncodeRecord(seq, payload);
  if (active_fd_ < 0 || segments_.empty() ||
      (segments_.back().records > 0 && segments_.back().bytes + record.size() > SegmentTarget())) {
    DP_RETURN_IF_ERROR(Sync());  // the segment being closed first
    DP_RETURN_IF_ERROR(OpenActive(seq));
  }
  Segment& seg = segments_.back();
  if (Status w = WriteAll(active_fd_, record, seg.path); !w.ok()) {
    // A partial record would be skipped as damage on replay; cut it off now
    // so the next append starts clean.
    if (::ftruncate(active_fd_, static_cast<off_t>(seg.bytes)) != 0) {
      ::close(active_fd_);
      active_fd_ = -1;
    }
    return w;
  }
  unsynced_ = true;
  if (sync) DP_RETURN_IF_ERROR(Sync());
  seg.bytes += record.size();
  seg.records += 1;
  seg.last_seq = seq;
  bytes_ += record.size();
  last_seq_ = seq;
  if (bytes_ > options_.max_bytes) {
    DropOldest();
    DP_RETURN_IF_ERROR(WriteState());
  }
  return seq;
}

void Spool::DropOldest() {
  while (bytes_ > options_.max_bytes && segments_.size() > 1) {
    const Segment& s = segments_.front();
    if (s.last_seq > acked_) {
      const std::uint64_t unacked_from = std::max(acked_ + 1, s.first_seq);
      dropped_ += std::min<std::uint64_t>(s.records, s.last_seq - unacked_from + 1);
    }
    RemoveSegment(0);
  }
}

void Spool::RemoveSegment(std::size_t index) {
  std::error_code ec;
  std::filesystem::remove(segments_[index].path, ec);
  bytes_ -= segments_[index].bytes;
  if (index + 1 == segments_.size() && active_fd_ >= 0) {
    ::close(active_fd_);
    active_fd_ = -1;
  }
  segments_.erase(segments_.begin() + static_cast<std::ptrdiff_t>(index));
}

void Spool::Peek(std::uint64_t after_seq, std::size_t max,
                 std::vector<std::pair<std::uint64_t, std::string>>* out) {
  std::size_t taken = 0;
  for (const Segment& seg : segments_) {
    if (taken >= max) break;
    if (seg.last_seq <= after_seq || seg.records == 0) continue;
    const int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::uint64_t offset = 0;
    if (cursor_.segment_first == seg.first_seq && cursor_.next_seq == after_seq + 1) {
      offset = cursor_.offset;
    }
    char header[kHeaderBytes];
    while (taken < max && offset + kHeaderBytes <= seg.bytes) {
      if (::pread(fd, header, kHeaderBytes, static_cast<off_t>(offset)) !=
          static_cast<ssize_t>(kHeaderBytes)) {
        break;
      }
      const std::uint32_t len = Load32(header + 4);
      const std::uint64_t seq = Load64(header + 8);
      if (Load32(header) != kMagic || len > kMaxRecordBytes ||
          offset + kHeaderBytes + len > seg.bytes) {
        ++corrupt_;  // damaged since it was written: nothing further here is trustworthy
        break;
      }
      const std::uint64_t next = offset + kHeaderBytes + len;
      if (seq > after_seq && !rejected_seqs_.empty() && IsRejected(seq)) {
        after_seq = seq;  // the collector refused it alone: never again
      } else if (seq > after_seq) {
        std::string payload(len, '\0');
        if (::pread(fd, payload.data(), len, static_cast<off_t>(offset + kHeaderBytes)) !=
            static_cast<ssize_t>(len)) {
          break;
        }
        if (RecordCrc(seq, payload) == Load32(header + 16)) {
          out->emplace_back(seq, std::move(payload));
          ++taken;
          after_seq = seq;
          cursor_ = Cursor{seg.first_seq, seq + 1, next};
        } else {
          ++corrupt_;
        }
      }
      offset = next;
    }
    ::close(fd);
  }
}

void Spool::Acknowledge(std::uint64_t seq) {
  seq = std::min(seq, last_seq_);
  collector_acked_ = std::max(collector_acked_, seq);
  AdvanceAcked(seq);
}

void Spool::AdvanceAcked(std::uint64_t seq) {
  if (seq <= acked_) return;
  acked_ = seq;
  // The segment being appended to stays (its acknowledged records are skipped):
  // re-creating a file per report would cost a directory sync every cycle.
  while (segments_.size() > 1 && segments_.front().last_seq <= acked_ &&
         segments_.front().records > 0) {
    RemoveSegment(0);
  }
  // The watermark is written at most every 30 s (and at Sync and close): a
  // stale one only resends acknowledged reports, and the store drops them.
  state_dirty_ = true;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_state_write_ >= std::chrono::seconds(30)) {
    last_state_write_ = now;
    state_dirty_ = false;
    (void)WriteState(/*sync_dir=*/false);
  }
}

void Spool::Reject(std::uint64_t seq) {
  if (seq <= acked_ || seq > last_seq_) return;
  ++rejected_;
  rejected_seqs_.push_back(seq);
  constexpr std::size_t kKeepRejected = 64;
  if (rejected_seqs_.size() > kKeepRejected) rejected_seqs_.erase(rejected_seqs_.begin());
  AdvanceAcked(seq);
}

bool Spool::IsRejected(std::uint64_t seq) const {
  return std::find(rejected_seqs_.begin(), rejected_seqs_.end(), seq) != rejected_seqs_.end();
}

Result<ResumePoint> Spool::Resume(std::uint64_t collector_acked) {
  const std::uint64_t a = collector_acked;
  ResumePoint out;
  out.send_after = a;
  const bool past_restart = unverified_after_ && a > *unverified_after_;
  if (past_restart || a > last_seq_) {
    // The collector holds seqs this spool no longer has: they were taken
    // before a power cut or a snapshot revert. Every report made since then
    // carries a number the collector would drop as a resend, so all of them
    // move past the collector's.
    const std::uint64_t after = unverified_after_ ? *unverified_after_ : acked_;
    const std::uint64_t held_before = last_seq_;
    auto moved = Renumber(after, a - after);
    if (!moved.ok()) return moved.status();
    out.event = ResumePoint::Event::kLostLocalState;
    out.detail = "the collector holds this stream through seq " + std::to_string(a) +
                 " but the spool kept only through " + std::to_string(after) +
                 " (its tail was lost: a power cut or a reverted snapshot); " +
                 std::to_string(*moved) + " reports made since (seq " + std::to_string(after + 1) +
                 ".." + std::to_string(held_before) + ") were renumbered from " +
                 std::to_string(a + 1);
    return out;
  }
  if (a < collector_acked_) {
    // The collector forgot what it acknowledged (a lost WAL, a restore):
    // resend everything still here after its watermark.
    ++regressions_;
    std::uint64_t held = 0;
    for (const Segment& seg : segments_) {
      if (seg.records == 0 || seg.last_seq <= a) continue;
      held +=
          std::min<std::uint64_t>(seg.records, seg.last_seq - std::max(a + 1, seg.first_seq) + 1);
    }
    out.event = ResumePoint::Event::kCollectorForgot;
    out.detail = "the collector acknowledged this stream through seq " +
                 std::to_string(collector_acked_) + " before but now holds only through " +
                 std::to_string(a) + " (it lost acknowledged reports); resending the " +
                 std::to_string(held) + " the spool still holds after it";
    collector_acked_ = a;
    unverified_after_.reset();
    DP_RETURN_IF_ERROR(WriteState());
    return out;
  }
  // Everything up to the local watermark is acknowledged or was rejected.
  out.send_after = std::max(a, acked_);
  Acknowledge(a);
  if (unverified_after_) {
    // Durably, before any report of this run is sent: a later restart must
    // not renumber reports a collector already stored.
    unverified_after_.reset();
    DP_RETURN_IF_ERROR(WriteState());
  }
  return out;
}

Result<std::uint64_t> Spool::Renumber(std::uint64_t after, std::uint64_t by) {
  namespace fs = std::filesystem;
  const std::string tmp = options_.dir + "/" + kRenumberFile;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("open " + tmp));
  std::uint64_t moved = 0, first_new = 0, last_new = 0, size = 0;
  std::string chunk;
  Status w;
  for (const Segment& seg : segments_) {
    if (!w.ok()) break;
    if (seg.records == 0 || seg.last_seq <= after) continue;
    auto mapped = MappedFile::Open(seg.path);
    if (!mapped.ok()) {
      w = mapped.status();
      break;
    }
    for (const SpoolRecord& rec : ScanSegment(mapped->bytes(), seg.first_seq).records) {
      if (rec.seq <= after) continue;
      v1::Report report;
      if (!report.ParseFromArray(mapped->bytes().data() + rec.offset,
                                 static_cast<int>(rec.length))) {
        ++corrupt_;  // its checksum held, yet it is no report: nothing to renumber
        continue;
      }
      const std::uint64_t seq = rec.seq + by;
      report.set_seq(seq);
      chunk += EncodeRecord(seq, report.SerializeAsString());
      if (first_new == 0) first_new = seq;
      last_new = seq;
      ++moved;
      if (chunk.size() >= (64u << 10)) {
        w = WriteAll(fd, chunk, tmp);
        size += chunk.size();
        chunk.clear();
        if (!w.ok()) break;
      }
    }
  }
  if (w.ok() && !chunk.empty()) {
    w = WriteAll(fd, chunk, tmp);
    size += chunk.size();
  }
  if (w.ok() && options_.fsync && ::fdatasync(fd) != 0) w = IoError(Errno("fdatasync " + tmp));
  ::close(fd);
  std::error_code ec;
  if (!w.ok()) {
    fs::remove(tmp, ec);
    return w;
  }
  // The commit point: once the state names the new numbering, a restart
  // finishes the move (RecoverRenumber) instead of undoing it.
  const auto saved =
      std::make_tuple(acked_, collector_acked_, last_seq_, lost_state_, unverified_after_);
  acked_ = collector_acked_ = after + by;
  last_seq_ = moved > 0 ? last_new : after + by;
  ++lost_state_;
  unverified_after_.reset();
  if (Status st = WriteState(); !st.ok()) {
    std::tie(acked_, collector_acked_, last_seq_, lost_state_, unverified_after_) = saved;
    fs::remove(tmp, ec);
    return st;
  }
  if (active_fd_ >= 0) {
    ::close(active_fd_);
    active_fd_ = -1;
  }
  for (const Segment& seg : segments_) fs::remove(seg.path, ec);
  segments_.clear();
  bytes_ = 0;
  cursor_ = Cursor{};
  unsynced_ = false;
  if (moved == 0) {
    fs::remove(tmp, ec);
    return moved;
  }
  const std::string path = options_.dir + "/" + SegmentName(first_new);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError(Errno("rename " + tmp));
  if (options_.fsync) DP_RETURN_IF_ERROR(SyncDir(options_.dir));
  active_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (active_fd_ < 0) return IoError(Errno("open " + path));
  segments_.push_back(Segment{first_new, last_new, size, moved, path});
  bytes_ = size;
  return moved;
}

SpoolStats Spool::stats() const {
  SpoolStats s;
  for (const Segment& seg : segments_) {
    if (seg.last_seq <= acked_ || seg.records == 0) continue;
    const std::uint64_t from = std::max(acked_ + 1, seg.first_seq);
    s.depth_reports += std::min<std::uint64_t>(seg.records, seg.last_seq - from + 1);
  }
  s.bytes = bytes_;
  s.dropped_reports = dropped_;
  s.corrupt_records = corrupt_;
  s.rejected_reports = rejected_;
  s.lost_state_events = lost_state_;
  s.collector_regressions = regressions_;
  return s;
}

}  // namespace deskpulse::agent
