#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/uplink/uplink.h"
#include "deskpulse/common/status.h"
#include "deskpulse/v1/report.pb.h"

namespace deskpulse::agent {

struct SpoolOptions {
  std::string dir;
  /// Total bytes kept on disk; beyond it the oldest segment is dropped.
  std::uint64_t max_bytes = 64ull << 20;
  /// fdatasync after every append and state change (survives power loss, not
  /// only kill -9).
  bool fsync = true;
};

struct SpoolStats {
  std::uint64_t depth_reports = 0;          // not yet acknowledged
  std::uint64_t bytes = 0;                  // on disk, all segments
  std::uint64_t dropped_reports = 0;        // dropped oldest-first because the spool was full
  std::uint64_t corrupt_records = 0;        // damaged records skipped on replay
  std::uint64_t rejected_reports = 0;       // refused by the collector one by one, dropped
  std::uint64_t lost_state_events = 0;      // found behind what the collector acknowledged
  std::uint64_t collector_regressions = 0;  // a collector acknowledged less than before
};

/// One record found in a segment: where it is and which seq it carries.
struct SpoolRecord {
  std::uint64_t seq = 0;
  std::uint64_t offset = 0;  // of the payload
  std::uint32_t length = 0;
};

/// What a segment scan found: the good records in order, how many damaged
/// records were skipped, and where the last good record ends.
struct SegmentScan {
  std::vector<SpoolRecord> records;
  std::uint64_t corrupt = 0;
  std::uint64_t valid_end = 0;
};

/// Parses a segment's bytes (pure; used on replay and by the fuzzer).
/// `first_seq` is the seq the segment's name says it starts at. A record
/// whose header holds but whose checksum fails is skipped and counted as one;
/// past a damaged header the scan resynchronises on the next record whose
/// checksum holds and counts the seqs it skipped, so one bad byte never hides
/// the rest of the segment and `corrupt` counts records, not damaged regions.
SegmentScan ScanSegment(std::string_view bytes, std::uint64_t first_seq = 1);

/// Encodes one record (header + payload) as it is written to a segment.
std::string EncodeRecord(std::uint64_t seq, std::string_view payload);

/// The agent's crash-safe, bounded report queue on disk (docs/quality.md).
///
/// Reports go to append-only segment files; each record carries its seq and a
/// CRC-32C. Acknowledged segments are deleted. When the spool exceeds its
/// size, the oldest segment is dropped and its unacknowledged reports are
/// counted. A state file (written by rename) keeps the epoch, the acknowledged
/// seq and the counters; if it is lost, the spool starts a new epoch rather
/// than reuse sequence numbers.
///
/// A power cut can take the tail of the newest segment (records the
/// collector acknowledged before they were synced), so after a restart the
/// seqs above the last one found on disk may already be taken at the
/// collector. They stay unverified until the first Welcome: if it shows the
/// collector holding more, every report made since the restart is renumbered
/// past it (Resume), so no new report is mistaken for a resend.
class Spool : public ReportQueue {
 public:
  static Result<std::unique_ptr<Spool>> Open(SpoolOptions options);
  ~Spool() override;

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  /// Assigns the next seq to `report`, then appends it. Returns the seq. With
  /// `sync` the record is on disk on return; without, it is once `Sync()` ran
  /// (the agent syncs a second later only if the collector has not already
  /// acknowledged it, so a connected agent rarely pays for an fsync).
  Result<std::uint64_t> Append(deskpulse::v1::Report& report, bool sync = true);
  /// Makes every appended record durable (no-op when nothing is pending).
  Status Sync();

  void Peek(std::uint64_t after_seq, std::size_t max,
            std::vector<std::pair<std::uint64_t, std::string>>* out) override;
  void Acknowledge(std::uint64_t seq) override;
  /// Checks the Welcome against what the spool knows: renumbers the reports
  /// made since a restart past a collector that holds more (lost local
  /// state), or resends from a collector that holds less than it
  /// acknowledged (it forgot). The outcome is durable before it returns.
  Result<ResumePoint> Resume(std::uint64_t collector_acked) override;
  void Reject(std::uint64_t seq) override;
  std::uint64_t CollectorAcked() const override { return collector_acked_; }

  std::uint64_t epoch() const { return epoch_; }
  std::uint64_t acked_through() const { return acked_; }
  std::uint64_t last_seq() const { return last_seq_; }
  SpoolStats stats() const;
  /// Why the previous state could not be used (empty when it could).
  const std::string& recovery_note() const { return recovery_note_; }

 private:
  struct Segment {
    std::uint64_t first_seq = 0;
    std::uint64_t last_seq = 0;  // 0 while empty
    std::uint64_t bytes = 0;
    std::uint64_t records = 0;
    std::string path;
  };

  explicit Spool(SpoolOptions options);
  Status Load();
  /// `sync_dir`: also make the rename durable. An acknowledgement need not be:
  /// if it is lost, the acknowledged reports are sent again and the store
  /// drops them.
  Status WriteState(bool sync_dir = true);
  Status OpenActive(std::uint64_t first_seq);
  /// Moves every record with seq > `after` up by `by`, durably (see Resume).
  /// Returns how many records moved.
  Result<std::uint64_t> Renumber(std::uint64_t after, std::uint64_t by);
  /// Finishes or undoes a renumbering that a crash interrupted; `files` are
  /// the segments found, replaced by the renumbered one when it is finished.
  Status RecoverRenumber(std::vector<std::pair<std::uint64_t, std::string>>* files);
  /// Moves the local watermark (collector acks and rejected reports alike).
  void AdvanceAcked(std::uint64_t seq);
  bool IsRejected(std::uint64_t seq) const;
  void DropOldest();
  void RemoveSegment(std::size_t index);
  std::uint64_t SegmentTarget() const;

  SpoolOptions options_;
  std::vector<Segment> segments_;
  int active_fd_ = -1;
  bool unsynced_ = false;
  bool state_dirty_ = false;  // the acknowledged watermark moved since the state file
  std::chrono::steady_clock::time_point last_state_write_{};
  std::uint64_t epoch_ = 0;
  std::uint64_t acked_ = 0;
  std::uint64_t last_seq_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t corrupt_ = 0;
  std::uint64_t rejected_ = 0;
  std::uint64_t lost_state_ = 0;
  std::uint64_t regressions_ = 0;
  // The highest seq a collector's Welcome or Ack confirmed.
  std::uint64_t collector_acked_ = 0;
  // Seqs above this were assigned since a restart and not yet checked
  // against a Welcome; empty once checked. Kept in the state across
  // restarts until a Welcome checks them.
  std::optional<std::uint64_t> unverified_after_;
  // Recently rejected seqs, skipped when a forgetful collector has the
  // spool resend what it holds (bounded).
  std::vector<std::uint64_t> rejected_seqs_;
  std::uint64_t bytes_ = 0;
  std::string recovery_note_;
  // Where the last Peek stopped, so a steady stream reads each record once.
  struct Cursor {
    std::uint64_t segment_first = 0;
    std::uint64_t next_seq = 0;
    std::uint64_t offset = 0;
  } cursor_;
};

}  // namespace deskpulse::agent
