// One database's spool directory, SPOOL/DB. This class is the only code
// that knows its layout (internal to the core; the command line asks through
// spooled_bytes(), check_spool_origin() and record_spool_origin() in
// replicator.h):
//   state.json        head seq and chain checksum, last uploaded seq, snapshot
//                     counters; written durably by the uploader after each
//                     upload (and at add), so it may lag the spool
//   pages.idx         the shipped page index (page_index.h)
//   clean.json        proof that the file is the head, from a clean close
//                     (clean_close.h); consumed by the next add()
//   origin.json       the store this spool ships to (record_spool_origin)
//   lock              one writer process at a time (spool_lock.h)
//   0000/<seq>.hadbp  incrementals waiting for upload
//   0000/<seq>.digest the whole-file digest after seq, published by the
//                     uploader after the segment (digest_spool.h)
//   0001/<seq>.hadbp  snapshots waiting for upload
// A segment file appears only whole and durable (temp file, fsync, rename,
// directory fsync) and is removed only after state.json records its upload.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "duckblock/env.h"
#include "duckblock/error.h"
#include "spool_lock.h"

namespace duckblock {

// What state.json holds: the spool's head as of its last write.
struct SpoolState {
  uint64_t seq = 0;           // the head: last segment written to the spool
  uint64_t checksum = 0;      // the chain checksum at `seq`
  uint64_t uploaded_seq = 0;  // last incremental the store has
  bool uploaded_any = false;  // false until the first object reaches the store
  // The seq of the newest snapshot made or scheduled; the counters below
  // count the incrementals after it (SnapshotPolicy).
  uint64_t snapshot_base_seq = 0;
  uint64_t segments_since_snapshot = 0;
  uint64_t bytes_since_snapshot = 0;
  // The chain's identity (chain.h): "" and convention 1 for a chain (or a
  // spool) from before chain.json.
  std::string lineage;
  int convention = 1;
  uint64_t base_checksum = 0;  // the chain checksum at seq 0
};

// Calls its argument with (page id, bytes, length) for each page of a
// segment, in ascending id order.
using PageVisitor = std::function<void(uint64_t, const uint8_t*, size_t)>;
using PageSource = std::function<void(const PageVisitor&)>;

// The pages of one segment to write: its header fields, and where its pages
// come from.
struct SegmentPlan {
  bool snapshot = false;
  uint64_t seq = 0;
  uint64_t prev_checksum = 0;
  int64_t created_ms = 0;
  size_t page_count = 0;  // pages `source` yields (the length record aside)
  PageSource source;
  uint64_t file_length = 0;
  bool with_length = false;  // append the file-length record
};

struct WrittenSegment {
  uint64_t checksum = 0;
  uint64_t size = 0;
};

class Spool {
 public:
  // `dir` is SPOOL/DB; it and its two segment folders are created if missing. `name` is the database's,
  // for messages.
  // Segment files, state.json, digests and pages.idx are written through
  // `env` (null: the real file system).
  Spool(std::string dir, std::string name, uint32_t page_size, Env* env = nullptr);

  const std::string& dir() const { return dir_; }
  std::string index_path() const { return dir_ + "/pages.idx"; }
  // Scratch paths: a segment fetched to replay the index, a restored base.
  std::string replay_path() const { return dir_ + "/replay.hadbp"; }
  std::string base_restore_path() const { return dir_ + "/base.restore"; }

  // Takes the directory's lock (Error(kLocked) naming the holder) and sets
  // the mode of what it writes from the source file's (`source_mode`, 0600
  // when unknown): spool files hold the database's pages. The directory
  // takes the matching directory mode (0600 -> 0700, 0640 -> 0750).
  void open(std::optional<uint32_t> source_mode);
  void close() { lock_.reset(); }
  uint32_t file_mode() const { return file_mode_; }
  Env* env() const { return env_; }

  std::optional<SpoolState> load_state() const;
  void save_state(const SpoolState& st) const;

  // The folder of incrementals, which also holds their digests
  // (digest_spool.h).
  std::string incremental_dir() const { return incr_dir(); }

  // Segment files by seq, of one generation.
  std::map<uint64_t, std::string> incrementals() const { return files(incr_dir()); }
  std::map<uint64_t, std::string> snapshots() const { return files(snap_dir()); }
  std::string incremental_path(uint64_t seq) const;
  std::string snapshot_path(uint64_t seq) const;
  std::string snapshot_dir() const { return snap_dir(); }  // the compactor's work directory
  static constexpr const char* kCompactTempPrefix = ".tmp-compact-";

  // Writes a segment durably (data fsync, rename, directory fsync) and
  // returns its checksum and size. Throws Error(kIO) if the source yields
  // another number of pages than planned (the file shrank while read).
  WrittenSegment write(const SegmentPlan& plan, int compression) const;

  // Removes one uploaded segment, or every segment (a promoted follower
  // starts a new term).
  void remove_segment(const std::string& path) const;
  void remove_all_segments() const;

  // Brings `st` (from state.json) up to the spool: deletes temp files a
  // crash left and segments already uploaded, adopts the incrementals
  // spooled after `st` (each verified and chained) and snapshots. Throws
  // Error(kCorruption) for a gap or a segment that does not chain. Call only
  // before the database is registered: afterwards a push may be writing.
  void adopt(SpoolState& st) const;

  // Throws Error(kCorruption) if the segment spooled at st.seq (if still
  // there) has another checksum than state.json records.
  void check_state(const SpoolState& st) const;

  // The chain checksum at `seq` (<= st.seq) as this spool knows it.
  std::optional<uint64_t> checksum_at(const SpoolState& st, uint64_t seq) const;

  // Segment files and their bytes waiting for upload.
  struct Pending {
    uint64_t segments = 0;
    uint64_t bytes = 0;
  };
  Pending pending() const { return pending_in(dir_); }
  static Pending pending_in(const std::string& dir);

 private:
  std::string incr_dir() const { return dir_ + "/0000"; }
  std::string snap_dir() const { return dir_ + "/0001"; }
  static std::map<uint64_t, std::string> files(const std::string& dir, bool remove_temp_files = false);

  std::string dir_, name_;
  uint32_t page_size_;
  Env* env_;
  uint32_t file_mode_ = 0600;
  std::unique_ptr<SpoolLock> lock_;
};

}  // namespace duckblock
