// Log segments: the bytes a database appends to its write-ahead log between
// two checkpoints, shipped so that every commit reaches the store, not only
// every checkpoint (docs/FORMAT.md, "Log segments").
//
// A log segment says "the log beside the file at chain position B holds
// these bytes at this offset, and ends there". Segments of one base B are
// numbered 1, 2, 3, ... and chained by checksum: segment 1 names B's chain
// checksum, segment k names segment k-1's checksum. So a log is never
// applied to another checkpoint, another database or out of order; a
// follower that reaches checkpoint B+1 drops the log of B (the checkpoint
// folded it into the file) and starts the next one.
//
// The core knows nothing of DuckDB: which file is the log (DuckDB's
// `<file>.wal`) and when its bytes are committed (an fsync) are the DuckDB
// layer's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/apply.h"
#include "duckblock/store.h"

namespace duckblock {

// ---- format -------------------------------------------------------------

struct LogSegmentHeader {
  uint64_t base_seq = 0;       // the chain position the log applies to
  uint64_t base_checksum = 0;  // ... and its chain checksum
  uint64_t index = 0;          // 1, 2, 3, ... within the base
  uint64_t prev_checksum = 0;  // base_checksum for index 1, else segment index-1's checksum
  uint64_t offset = 0;         // where `data` goes in the log file
  uint64_t length = 0;         // bytes of data; the log ends at offset + length
  int64_t created_ms = 0;      // when the leader made it (ms since the epoch)
};

struct LogSegment {
  LogSegmentHeader header;
  uint64_t checksum = 0;  // its own checksum: what segment index+1 names
  std::vector<uint8_t> data;
};

constexpr size_t kLogHeaderSize = 64;
// A log segment larger than this is refused (a hostile length must not drive
// an allocation); the shipper never writes one this large.
constexpr uint64_t kMaxLogSegmentData = 256ull << 20;

// Encodes a log segment (header, h.length bytes of data, trailer) and
// stores its checksum in `*checksum`.
std::vector<uint8_t> encode_log_segment(const LogSegmentHeader& h, const uint8_t* data, uint64_t* checksum);
// Decodes and verifies (magic, version, lengths, checksum); throws
// Error(kCorruption) naming the defect.
LogSegment decode_log_segment(const std::vector<uint8_t>& bytes);

// ---- keys ---------------------------------------------------------------

// {prefix}{db}/wal/{base_seq:016x}/           the log segments of one base
// {prefix}{db}/wal/{base_seq:016x}/{index:016x}.hadbw
// Readers of the segment generations (0000/, 0001/) never see these keys.
std::string log_base_prefix(const std::string& prefix, const std::string& db, uint64_t base_seq);
std::string log_key(const std::string& prefix, const std::string& db, uint64_t base_seq, uint64_t index);

struct LogEntry {
  uint64_t base_seq = 0;
  uint64_t index = 0;
  std::string key;
  uint64_t size = 0;
  int64_t modified_ms = 0;
};
// Log segments of `db` (of one base, or all), ascending by (base, index).
// Keys that do not parse exactly are ignored.
std::vector<LogEntry> list_log(ObjectStore& store, const std::string& prefix, const std::string& db,
                               std::optional<uint64_t> base_seq = std::nullopt);

// Downloads and verifies one log segment, and checks its key against its
// header (base and index). Throws Error(kCorruption).
LogSegment fetch_log_segment(ObjectStore& store, const LogEntry& entry);

// ---- the replica side ---------------------------------------------------

struct LogPosition {
  uint64_t base_seq = 0;
  uint64_t base_checksum = 0;
  uint64_t index = 0;     // last log segment applied (0: none)
  uint64_t checksum = 0;  // its checksum
  uint64_t length = 0;    // the log file's length after it
  int64_t created_ms = 0;
};

// The log file beside a replica (for DuckDB, `<file>.wal`) and a small
// record of what it holds (`record_path`, JSON). The log is written only
// after a segment verifies and continues the record; the record is
// updated after the log is durable, and on open a log longer than its
// record (a crash mid-write) is cut back to the recorded length. A log never
// exists without a record (that would be a foreign .wal, which a Replica
// refuses): a log of a new base is recorded empty before it is written,
// and clear() removes the log before the record.
class LogReplica {
 public:
  LogReplica(std::string log_path, std::string record_path);
  // What a record says, without opening (or repairing) the log: for a
  // reader while another thread or process may be applying.
  static std::optional<LogPosition> peek(const std::string& record_path);

  const std::string& log_path() const { return log_path_; }
  // What the log holds, or nullopt for no log.
  const std::optional<LogPosition>& position() const { return position_; }

  // Checks that `s` continues this log at replica position `at` (its base
  // is `at`; index 1 names at.checksum, else the next index naming the last
  // one's checksum). Throws Error(kChainBroken) before writing anything.
  void check_continues(const LogSegment& s, const ChainPosition& at) const;
  // Verifies, then writes the segment's bytes at its offset, cuts the log at
  // offset + length, makes it durable and records the new position.
  void apply(const LogSegment& s, const ChainPosition& at);
  // Removes the log and its record: before the replica moves to another
  // chain position (a log never outlives its base).
  void clear();
  // True if the log file is exactly what the record says (length), so a
  // reader may trust it; false if it is missing, longer or shorter.
  bool intact() const;

  // For crash tests only: when set, called at named points inside apply()
  // and clear() ("apply:log-written" after the log is durable and before its
  // record; "clear:log-removed" between the two removals), so a test
  // process can kill itself exactly there. Null in production.
  static void (*crash_point)(const char* where);

 private:
  LogReplica() = default;
  void load();
  void save();
  std::string log_path_, record_path_;
  std::optional<LogPosition> position_;
};

// The one rule for a log found beside a file that duckblock is about to
// write (PATH.wal: DuckDB replays it onto PATH when it opens it), used by
// the command line and the extension alike. For a restore, which replaces
// the file, any log there is stale. For a follow, a log whose record
// (PATH.duckblock-log) vouches for it (LogReplica::intact) is the replica's
// own and stays; any other is stale. A stale log is refused unless the
// caller was told to remove it (--force, force := true); remove_log_beside
// then removes it and its record, the log first (as LogReplica::clear).
enum class LogBesideUse { kRestore, kFollow };
bool stale_log_beside(const std::string& path, LogBesideUse use);
std::string stale_log_refusal(const std::string& path, LogBesideUse use, const std::string& force_flag);
void remove_log_beside(const std::string& path);

struct LogCatchUp {
  uint64_t applied = 0;               // log segments applied
  std::optional<LogPosition> position;  // the log's position afterwards
};

// Applies to `log` the log segments of base `at` that come after its
// position and were created at or before `up_to_ms` (all if nullopt). A log
// of another base is cleared first. Segments of a base newer than `at` are
// ignored (the replica must first reach that checkpoint).
LogCatchUp catch_up_log(ObjectStore& store, const std::string& prefix, const std::string& db,
                        const ChainPosition& at, LogReplica& log, std::optional<int64_t> up_to_ms = std::nullopt);

}  // namespace duckblock
