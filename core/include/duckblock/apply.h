// Applying segments to a local file, verified first and crash-safe.
//
// Rules (docs/FORMAT.md, "Applying"):
//  1. The whole segment is read and its checksum verified, and its header is
//     checked against the chain position (prev_checksum, seq, page size),
//     before the first byte of the target is written.
//  2. Pages are written at page_id * page_size. Pages in the file's commit
//     region (its first `commit_region` bytes, kCommitRegionBytes) are
//     written after every other page is durable, so the file's commit point
//     moves last.
//  3. Then the file-length record, if any, truncates or extends the file, and
//     everything is fsynced.
// A Replica adds a journal so that a crash at any point is repaired on the
// next open: the pending segment is kept durably until it is fully applied
// and redone if the process died in the middle (redo is idempotent).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "duckblock/format.h"

namespace duckblock {

class Env;

struct ChainPosition {
  uint64_t seq = 0;       // last applied sequence number (0: nothing yet)
  uint64_t checksum = 0;  // chain checksum after it
  bool operator==(const ChainPosition&) const = default;
};

// The leading bytes of a file that say which state it is in: a database
// keeps its headers there, and a new state becomes the file's when they are
// written. An apply writes them last, after every other page is durable,
// and a Replica's proof that its file is unchanged hashes them. 12 KiB
// holds DuckDB's three 4 KiB headers; the DuckDB layer checks that they
// fit (duckdb_capture.h), so the core needs no DuckDB layout.
constexpr uint64_t kCommitRegionBytes = 12288;

struct ApplyOptions {
  // Page size the target expects; nullopt accepts the segment's.
  std::optional<uint32_t> page_size;
  // Check header.seq == at.seq + 1 (off for loose `duckblock apply`).
  bool check_seq = true;
  // See rule 2 above.
  uint64_t commit_region = kCommitRegionBytes;
  // The file system the target and the pending copy are written through
  // (null: Env::posix(); tests pass a FaultyEnv, see env.h).
  Env* env = nullptr;
};

struct ApplyResult {
  ChainPosition position;
  SegmentSummary summary;
  uint64_t pages_written = 0;
  uint64_t bytes_written = 0;
};

// Checks that a verified segment continues `at`; throws Error(kChainBroken).
void check_continues(const SegmentSummary& s, const ChainPosition& at, const ApplyOptions& opt);

// Verifies the segment file, then applies it to `target` (created if
// missing) and makes the result durable. Throws before writing anything if
// the segment is corrupt or does not chain.
ApplyResult apply_segment(const std::string& target, const std::string& segment_path,
                          const ChainPosition& at, const ApplyOptions& opt = {});

// The position a snapshot segment gives a follower: a snapshot stored at S
// carries the chain checksum at S in its prev_checksum field.
ChainPosition snapshot_position(const SegmentHeader& snapshot_header);

// A segment file verified for applying (checksum, and every page at a
// possible offset, a file-length record of 8 bytes), and which file it was:
// device, inode, size and modification time, taken before the read.
struct VerifiedSegment {
  std::string path;
  SegmentSummary summary;
  std::string identity;
};
// Throws Error(kCorruption) on any defect.
VerifiedSegment verify_segment_file(const std::string& path);

// A local file kept in step with a chain. Its position and any apply in
// flight live in a sidecar journal, `<path>.duckblock` (JSON), and the
// pending segment in `<path>.duckblock-pending`.
class Replica {
 public:
  // Opens (and, if a crash left an apply half done, finishes) the replica.
  // A file without a journal is at position {0, 0}.
  explicit Replica(std::string path, ApplyOptions options = {});

  const std::string& path() const { return path_; }
  ChainPosition position() const { return position_; }
  std::optional<uint32_t> page_size() const { return page_size_; }

  // Applies the incremental segment in `segment_path` (verified first). If
  // `consume`, the segment file is moved into the journal instead of copied.
  ApplyResult apply(const std::string& segment_path, bool consume = false);
  // Applies a segment file verified by verify_segment_file (for example on
  // a download thread), moving it into the journal. It is not hashed again
  // before its pages are written: the file must still be the one verified
  // (same identity), else Error(kCorruption). The write pass hashes what it
  // writes, as every apply does.
  ApplyResult apply(const VerifiedSegment& segment);

  // Replaces the whole file with a snapshot segment: written to a temp file,
  // then renamed over `path` (a reader sees the old file or the new one).
  // `position` is where the snapshot puts the chain, as bind_snapshot()
  // established it (chain.h); without it, snapshot_position(header).
  ApplyResult reset_from_snapshot(const std::string& snapshot_path,
                                  std::optional<ChainPosition> position = std::nullopt);
  // The same from a stream, in one pass: pages go to a temp file (created
  // with `mode`) as they are decoded, on a writer thread, and the rename
  // happens only once the trailer has verified and `bind`, given the
  // verified summary, has returned the position (it throws to refuse the
  // snapshot; empty: snapshot_position(header)). A failure leaves the
  // replica as it was and no temp file.
  ApplyResult reset_from_snapshot(ByteSource& in, unsigned mode,
                                  const std::function<ChainPosition(const SegmentSummary&)>& bind = {});

  // The chain's identity (chain.h) this replica follows; "" if unknown
  // (a chain written before chain.json, or a journal older than it).
  const std::string& lineage() const { return lineage_; }
  void set_lineage(const std::string& lineage);

  // Throws Error(kChainBroken) if the file is not as the last apply left it
  // (size, modification time, or a hash of its commit region differ):
  // something else, such as a DuckDB that opened it read-write, changed it,
  // and applying the next segment would corrupt it. A journal written before
  // this check existed records nothing to compare, and passes. (A log beside
  // the file is judged by the log's rule, stale_log_beside in wal.h.)
  void check_unchanged() const;

  // Whether the file's inode or change time (st_ctime, which no user call
  // can set) differs from what the last apply recorded while check_unchanged
  // passes: renamed, chmod-ed, or rewritten with its size, modification time
  // and header pages put back. Only its bytes can then tell (the chain's
  // whole-file digest, check_replica_on_chain); accept_stamp() records the
  // file's stamp once they did.
  bool stamp_changed() const;
  void accept_stamp();
  // Records that the file's bytes are not the chain's at its position (a
  // whole-file digest mismatch after an apply): check_unchanged refuses it
  // from then on, until a restore replaces it.
  void mark_diverged(const std::string& why);

  // The whole-file check after applying (the chain's digest, catch_up)
  // reads the whole file. Checking after every batch would make a follower
  // of a large file read all of it at each poll, so the check is amortised:
  // due when the segment bytes applied since the last one reach the file's
  // size, for files up to kAlwaysCheckBytes always, and at the first apply
  // of this object (a restarted follower). The cost is then at most one
  // read of the file per file-size of applied bytes.
  static constexpr uint64_t kAlwaysCheckBytes = 64ull << 20;
  bool whole_file_check_due(uint64_t applied_segment_bytes, uint64_t file_size);
  void whole_file_checked() { applied_since_check_ = 0; checked_once_ = true; }

  // Sets the position without touching the file (for a file known to match).
  void set_position(const ChainPosition& position, std::optional<uint32_t> page_size);

  std::string journal_path() const { return path_ + ".duckblock"; }
  std::string pending_path() const { return path_ + ".duckblock-pending"; }

 private:
  void save_journal(bool pending, uint64_t pending_seq, bool replacing = false);
  void recover();
  ApplyResult write_pending(ApplyResult& result, const std::string& identity);
  void finish_replace();
  bool journal_replacing() const;  // the journal on disk names a replacement in flight
  std::string restore_path() const { return path_ + ".duckblock-restore"; }

  std::string path_;
  ApplyOptions options_;
  ChainPosition position_;
  std::optional<uint32_t> page_size_;
  std::string lineage_;
  std::string file_proof_;  // "size mtime_ns sha256(commit region)" after the last apply; "" unknown
  std::string file_stamp_;  // "ino ctime_ns" after the last apply; "" unknown
  std::string diverged_;    // why the file is known not to be the chain's; "" not known
  uint64_t applied_since_check_ = 0;  // segment bytes applied since the last whole-file check
  bool checked_once_ = false;
};

}  // namespace duckblock
