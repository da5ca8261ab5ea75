// The leader side: turns checkpoints into segments, spools them durably and
// uploads them in order in the background. The building block an HA
// coordinator drives (add / push_checkpoint / sync / remove /
// add_continuing; pull for the other direction).
//
// Guarantees:
//  - push_checkpoint never waits for the network. It returns once the
//    checkpoint's changed pages are copied (the spooler makes the segment
//    durable moments later) or, with background_spool_bytes = 0 or for a
//    large push, once the segment is durable in the local spool. If the
//    process dies before a copied checkpoint is spooled, nothing is lost:
//    the next add() compares the file with the spool's head and ships the
//    difference as one segment.
//  - Segments reach the store in order, with no gap and no duplicate, each
//    written with put-if-absent. If a sequence number is already taken by
//    different bytes, the database is *fenced*: nothing more is uploaded for
//    it and status()/sync() report Error(kFenced).
//  - A restart after a crash resumes from the spool and the store; a
//    sequence number is never reused with different content.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/apply.h"
#include "duckblock/page_reader.h"
#include "duckblock/store.h"

namespace duckblock {

struct SnapshotPolicy {
  // A new snapshot after this many incrementals (0: never by count)...
  uint64_t every_segments = 100;
  // ...or after this many incremental bytes since the last snapshot (0: never).
  uint64_t every_bytes = 256ull << 20;
  // Each due snapshot is a merge that rewrites the whole database, which
  // at tens of gigabytes can take longer than the checkpoints that make
  // more snapshots due. When the compactor is behind (a later snapshot is
  // due, with its incrementals spooled, before it starts an earlier one),
  // it builds only the newest: the skipped points stay restorable from the
  // snapshot before them and the incrementals, and the backlog never grows.
  // false: every due snapshot is made, in order, each from the one before.
  bool coalesce = true;
};

// When a commit's log bytes must be in the store (see push_log).
enum class LogSyncMode {
  // Within `log_interval` of the commit: commits of one interval share one
  // object, so the PUT rate is bounded. A lost machine loses at most the
  // last interval (plus the upload time) of acknowledged commits.
  kInterval,
  // Before the commit returns (wait_log): nothing acknowledged is lost.
  // Commits that arrive while an upload is in flight share the next one.
  kCommit,
};

struct ReplicatorOptions {
  std::string prefix;     // key prefix inside the store, "" or ending in '/'
  std::string spool_dir;  // local directory for pending segments and state
  uint32_t page_size = 4096;
  SnapshotPolicy snapshots;
  // A push copies the checkpoint's changed pages into memory and returns;
  // a spooler thread writes and fsyncs the segment moments later, so a
  // DuckDB checkpoint waits only for the diff. Up to this many page bytes
  // wait in memory (a push waits for room); a larger push, and one that
  // takes a snapshot, writes its segment itself. 0: every push is durable
  // in the spool when it returns.
  uint64_t background_spool_bytes = 64ull << 20;
  // Log shipping (every commit between checkpoints): see push_log.
  LogSyncMode log_sync_mode = LogSyncMode::kInterval;
  std::chrono::milliseconds log_interval{1000};
  // Segments are zstd-compressed at this level (1..19, docs/FORMAT.md
  // "Compressed segments"); 0 writes plain hadbp v1, for a store the
  // reference implementation must read. parse_compression() (format.h)
  // reads the "none" / "zstd" / "zstd:N" spelling of settings.
  int compression = kDefaultCompressionLevel;
  // With a spool to continue from, add() does not ask the store at all, so
  // a database opens while the store is down without waiting for its
  // retries (the DuckDB extension's ATTACH). The checks of the spool against
  // the store's chain (another leader went further: kFenced; segments the
  // store lost: kCorruption; its chain rebuilt: kChainBroken) then run on
  // the uploader before it uploads anything, and their errors show in
  // status() and sync(). false: add() makes them and throws (the command
  // line's push stops before it spools); only an unreachable store defers
  // them as above.
  bool spool_first = false;
  // Upload retry backoff (capped exponential with jitter).
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{10000};
  // The file system through which segment files are written into the spool
  // (env.h; null: the real one). Tests inject faults through it.
  Env* spool_env = nullptr;
  // Milliseconds since the epoch for segment headers; injectable for tests.
  std::function<int64_t()> now_ms;
};

struct ReplicationStatus {
  std::string db;
  uint64_t spooled_seq = 0;    // last sequence number written to the spool
  uint64_t uploaded_seq = 0;   // last sequence number the store has
  uint64_t pending_segments = 0;
  uint64_t bytes_shipped = 0;  // encoded bytes uploaded since add()
  uint64_t segments_shipped = 0;  // segments (incrementals and snapshots) uploaded since add()
  uint64_t last_snapshot_seq = 0;
  // Snapshots after seq 0 are compacted in the background (compact.h): the
  // one being built (0: none), the last one built since add(), and why the
  // last attempt failed (cleared by a success).
  uint64_t compacting_seq = 0;
  uint64_t last_compacted_seq = 0;
  // Due snapshots not made since add() because a newer one was due before
  // the compactor reached them (SnapshotPolicy::coalesce).
  uint64_t snapshots_coalesced = 0;
  std::optional<std::string> compaction_error;
  uint64_t upload_retries = 0;
  std::optional<std::string> last_error;
  bool fenced = false;
  int64_t last_upload_ms = 0;  // when the last segment reached the store
  // The log (commits since the last checkpoint) in the store: its base
  // checkpoint, last log segment and the log's length there.
  uint64_t log_base_seq = 0;
  uint64_t log_index = 0;
  uint64_t log_length = 0;
  uint64_t log_bytes_shipped = 0;     // encoded log bytes uploaded since add()
  uint64_t log_segments_shipped = 0;
  uint64_t log_pending_bytes = 0;     // committed log bytes not yet in the store
  int64_t log_lag_ms = 0;             // age of the oldest of them (0: none)
  int64_t last_log_upload_ms = 0;
  // add() compared the whole file with the shipped state (false: a clean
  // close's proof held, see record_clean_close, and nothing was read but
  // the proof's pages).
  bool full_compare_at_add = false;
};

struct PushResult {
  uint64_t seq = 0;             // 0: nothing changed, nothing shipped
  uint64_t pages = 0;           // pages in the segment (without the length record)
  uint64_t data_bytes = 0;      // page bytes in the segment
  // Segment size; for a push spooled in the background (compressed before
  // it is written) the plain v1 size, an upper bound.
  uint64_t encoded_bytes = 0;
  // A snapshot was due at this seq: the compactor builds it in the
  // background from the chain (the checkpoint never reads the whole file).
  bool snapshot = false;
};

struct SnapshotResult {
  uint64_t seq = 0;          // the snapshot's seq: the chain's head once it is spooled
  PushResult incremental;    // what shipped first so that the head matches the file
  bool created = false;      // false: the chain already had a snapshot at seq
  uint64_t encoded_bytes = 0;  // the new snapshot's size (0 if not created)
};

// What the command line asks of a spool directory (SPOOL/DB is private to
// the Replicator; these are its only other readers and writers).
// Bytes of the segments of `db` waiting in `spool_dir` for upload.
uint64_t spooled_bytes(const std::string& spool_dir, const std::string& db);
// A spool remembers the store it ships to: the same spool used for a second
// store would take that store's chain for its own. check_spool_origin throws
// Error(kInvalidArgument) if the spool of `db` ships to another store than
// `store_url`; record_spool_origin records `store_url` (and the file, for
// people reading it) once a push has started shipping there.
void check_spool_origin(const std::string& spool_dir, const std::string& db, const std::string& store_url);
void record_spool_origin(const std::string& spool_dir, const std::string& db, const std::string& store_url,
                         const std::string& file, uint32_t mode);

class Replicator {
 public:
  Replicator(std::shared_ptr<ObjectStore> store, ReplicatorOptions options);
  ~Replicator();  // stops the uploader; pending segments stay in the spool
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // Registers database `db` whose file `reader` reads. If the store has no
  // chain for it, the file is shipped as the snapshot at seq 0. Otherwise the
  // spool's state (or, without one, the chain restored from the store) is
  // compared with the file and whatever differs ships as the next segment,
  // so the chain continues from exactly this file. The database's spool
  // directory is locked until remove() or destruction: another add() of it,
  // in this process or another, throws Error(kLocked) naming the holder.
  // Spool files take reader.file_mode() (0600 if unknown).
  void add(const std::string& db, PageReader& reader);

  // A promoted follower continues the chain from the store's head without a
  // new snapshot. `replica_path` is its file, at `position` (the store's head,
  // or add_continuing throws Error(kChainBroken)).
  void add_continuing(const std::string& db, PageReader& reader, const ChainPosition& position);

  // Ships one checkpoint of `db`: pages among `candidates` (4 KiB page ids
  // written since the last push; null = compare the whole file) whose bytes
  // changed, and the file length if it changed. The result (seq, sizes) is
  // final when it returns; spooled then or moments later (see
  // background_spool_bytes), uploaded in the background. Throws if an
  // earlier queued segment failed to spool; the push after that compares
  // the whole file, so nothing is missed.
  PushResult push_checkpoint(const std::string& db, PageReader& reader,
                             const std::vector<uint64_t>* candidates = nullptr);

  // Ships whatever the file differs by from the last shipped state, then
  // spools the whole file as the snapshot at the resulting head seq, so a
  // restore to the head needs no incrementals. Does nothing more if a
  // snapshot at that seq already exists. Uploaded in the background.
  // This explicit request (`duckblock snapshot`, duckblock_snapshot()) still
  // reads the whole file, on the caller's thread: the caller asked for it and
  // waits for it. Snapshots due by SnapshotPolicy are compacted instead.
  SnapshotResult snapshot_now(const std::string& db, PageReader& reader);

  // Ships committed log bytes of `db` (for DuckDB: its .wal after a commit's
  // fsync): the log beside the file at the chain's current head holds
  // `bytes` at `offset` and ends there. The first push after the head moved
  // (any push_checkpoint that shipped) must start at offset 0 with the whole
  // log. Queued in memory and uploaded by a background thread as log
  // segments (wal.h) once the head's checkpoint segment is in the store;
  // bytes of a base that a later checkpoint folded in are dropped if not yet
  // sent. Returns a ticket for wait_log.
  uint64_t push_log(const std::string& db, uint64_t offset, std::vector<uint8_t> bytes);
  // Waits until the log bytes of `ticket` (or the checkpoint that folded
  // them) are in the store. Throws Error(kFenced), or Error(kRetryable) on
  // timeout naming the last upload error.
  void wait_log(const std::string& db, uint64_t ticket, std::chrono::milliseconds timeout = std::chrono::minutes(5));

  // Waits until everything spooled for `db` ("" = all), and every log byte
  // pushed before the call, is in the store, or
  // throws Error(kFenced) / Error(kRetryable) on timeout with the last error.
  void sync(const std::string& db = "", std::chrono::milliseconds timeout = std::chrono::minutes(5));

  // Stops replicating `db`; its spool stays (a later add resumes from it).
  void remove(const std::string& db);

  // A clean close: the file `reader` reads holds exactly what the last push
  // of `db` shipped (nothing was written since) and is about to be closed.
  // Waits until every push is spooled, saves the page index at the head and
  // records proof of the file's state (clean_close.h): the next add() then
  // skips comparing the whole file if the proof still holds. `db` stays
  // added (uploads go on); a later push_checkpoint drops the record. Returns
  // false, recording nothing, when the state cannot be proved (the reader
  // has no stamp or evidence, the file changed while the proof was taken,
  // or a push failed to spool); the next add() then compares as usual.
  bool record_clean_close(const std::string& db, PageReader& reader);

  // Brings the local file `path` to the store's head for `db` (restoring
  // from a snapshot if it has no position yet). Returns the new position.
  ChainPosition pull(const std::string& db, const std::string& path);

  ReplicationStatus status(const std::string& db) const;
  std::vector<std::string> databases() const;

  ObjectStore& store() { return *store_; }
  const ReplicatorOptions& options() const { return options_; }

 private:
  struct Impl;
  std::shared_ptr<ObjectStore> store_;
  ReplicatorOptions options_;
  std::unique_ptr<Impl> impl_;
  void sync_segments(const std::string& db, std::chrono::milliseconds timeout);
};

}  // namespace duckblock
