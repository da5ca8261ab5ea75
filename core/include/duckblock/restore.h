// Reading a chain back out of the store: listing it, restoring a file to a
// chosen point (the follower loop that keeps one current is follower.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/apply.h"
#include "duckblock/store.h"
#include "duckblock/wal.h"

namespace duckblock {

class Env;

struct ChainEntry {
  uint64_t seq = 0;
  bool snapshot = false;
  std::string key;
  uint64_t size = 0;
  int64_t modified_ms = 0;
  std::optional<uint32_t> mode;  // the object's permission bits, where the store keeps them
};

// Every snapshot and incremental of `db` under `prefix`, by seq (snapshots
// and incrementals in separate, ascending lists).
struct ChainListing {
  std::vector<ChainEntry> snapshots;
  std::vector<ChainEntry> incrementals;
  uint64_t head_seq() const;  // highest seq of either kind (0 if empty)
  bool empty() const { return snapshots.empty() && incrementals.empty(); }
};
ChainListing list_chain(ObjectStore& store, const std::string& prefix, const std::string& db);

struct RestoreTarget {
  std::optional<uint64_t> seq;          // restore to this seq (default: latest)
  std::optional<int64_t> time_ms;       // or to the last segment created at or before this
};

struct RestoreProgress {
  uint64_t segments_done = 0, segments_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;
};

struct RestoreOptions {
  std::string prefix;
  std::string temp_dir;  // where segments are downloaded ("" = beside the target)
  std::function<void(const RestoreProgress&)> progress;
  // The file system that downloads and the restored file are written
  // through (null: Env::posix(); tests pass a FaultyEnv, see env.h).
  Env* env = nullptr;
};

struct RestoreResult {
  ChainPosition position;
  uint64_t snapshot_seq = 0;
  uint64_t segments_applied = 0;  // incrementals after the snapshot
  uint64_t bytes_downloaded = 0;
  int64_t created_ms = 0;         // header time of the last segment applied
  // Newer snapshots that could not be used (damaged, foreign, unreachable
  // through incrementals), each with why: the restore fell back to an older
  // one plus incrementals.
  std::vector<std::string> skipped_snapshots;
  // The whole-file digest check of the result (file_digest.h): "verified",
  // or "absent" when the store has no digest for that seq (a chain written
  // before digests). A mismatch is an Error(kCorruption), nothing published.
  std::string digest = "absent";
};

// Restores `db` to `target_path`: the newest snapshot at or before the
// target, then every later incremental up to it, each verified before it is
// applied. Downloads overlap applies. The result appears atomically at
// target_path (with its Replica journal) only when complete; an existing
// file there is replaced only then.
RestoreResult restore(ObjectStore& store, const std::string& db, const std::string& target_path,
                      const RestoreTarget& target = {}, const RestoreOptions& options = {});

// One restore or follow per target at a time: flock(LOCK_EX) on
// `TARGET.duckblock-lock` (the kernel drops it however the holder exits;
// the file is removed as the lock is let go, or left by kill -9, harmless).
// Two at once interleaved their writes: a restore reported seq 3 over a
// file that was neither seq 3 nor the head. Throws Error(kLocked) naming the
// holder's pid and host.
class TargetLock {
 public:
  explicit TargetLock(const std::string& target_path);
  ~TargetLock();
  TargetLock(const TargetLock&) = delete;
  TargetLock& operator=(const TargetLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// Checks the file at `path`, at `seq` of `db`'s chain, against the digest
// the store publishes for that seq: "verified", or "absent" if it has none.
// Reads the whole file, in pages of `page_size` (the chain's, as the file's
// Replica journal records it; a record that counts other pages is damaged;
// nullopt, for a journal too old to say: the record's). Throws
// Error(kCorruption) naming `what` on a mismatch, or naming the object if
// it is damaged.
std::string check_published_digest(ObjectStore& store, const std::string& prefix, const std::string& db, uint64_t seq,
                                   std::optional<uint32_t> page_size, const std::string& path,
                                   const std::string& what);

// Downloads `key` into `path` and verifies it; throws on any defect (the
// file is removed), and checks the header seq against the key's.
SegmentSummary download_segment(ObjectStore& store, const ChainEntry& entry, const std::string& path);

// Restores `replica` from the snapshot `entry` in one pass, with no copy of
// the segment on disk: the download (a helper thread), decoding with
// verification (this thread) and the writes (the replica's writer thread)
// overlap. The replica's file is replaced only once the trailer verifies,
// the header's seq matches the key's and `bind` (chain.h's bind_snapshot,
// given the verified summary) returns the position. Throws like
// download_segment, plus what `bind` throws.
ApplyResult restore_snapshot_streaming(ObjectStore& store, const ChainEntry& entry, Replica& replica,
                                      const std::function<ChainPosition(const SegmentSummary&)>& bind = {});
// The listed incrementals after `from` up to `to`, by seq; throws
// Error(kChainBroken) naming the first one missing.
std::vector<ChainEntry> incrementals_between(const ChainListing& chain, uint64_t from, uint64_t to);

// Applies to `replica` every incremental after its position (up to
// `up_to_seq`), restoring from a snapshot first if the replica has no
// position or the incrementals it needs were pruned. Returns segments applied.
// After applying, the file is checked against the chain's whole-file digest
// at its new position (a read of the whole file; skipped where the store has
// none): a mismatch throws Error(kCorruption) and marks the replica diverged
// (Replica::mark_diverged), so it is refused until `--force` restores it.
uint64_t catch_up(ObjectStore& store, const std::string& prefix, const std::string& db, Replica& replica,
                  std::optional<uint64_t> up_to_seq = std::nullopt);

struct ChainIdentity;
// Checks, before anything is applied, that a replica with a position still
// belongs to the store's chain: the file is as the last apply left it
// (Replica::check_unchanged), its lineage is the store's, and the store
// states its checksum at its seq. A file whose inode or ctime changed while
// size, mtime and headers did not (Replica::stamp_changed) is checked
// against the chain's whole-file digest at its seq (`prefix`: the key
// prefix). Throws Error(kChainBroken) saying how out.
void check_replica_on_chain(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                            const std::string& db, Replica& replica, const std::string& prefix = "");

// Retention: what to keep so that every point in the window stays restorable.
struct RetentionPolicy {
  // Keep every point created within this long before now (0: keep everything).
  std::chrono::milliseconds window{std::chrono::hours(24 * 7)};
  uint64_t min_snapshots = 2;  // never fewer snapshots than this
};
struct PrunePlan {
  std::vector<ChainEntry> remove;
  // Log segments of bases older than oldest_restorable_seq: the log of base
  // B serves only points between checkpoints B and B+1, and none of those
  // can be restored once no snapshot at or before B is kept.
  std::vector<LogEntry> remove_log;
  uint64_t oldest_restorable_seq = 0;
};
// `log` (list_log) is the database's log segments; the plan removes those
// whose base is older than the oldest restorable checkpoint it keeps, and
// never one a point inside the window needs.
PrunePlan plan_prune(const ChainListing& chain, const RetentionPolicy& policy, int64_t now_ms,
                     const std::vector<LogEntry>& log = {});
// plan_prune, then proof before anything is deleted: downloads and verifies
// the snapshot the window relies on (bound to the chain) and every
// incremental after it. A damaged snapshot there makes it fall back to an
// older one that verifies, deleting only what is older than that (each such
// decision goes to `notes`); a damaged incremental, or no snapshot that
// verifies, throws (kCorruption or kChainBroken) and nothing is to be
// deleted. Downloads go to `temp_dir`.
PrunePlan plan_safe_prune(ObjectStore& store, const std::string& prefix, const std::string& db,
                          const ChainListing& chain, const RetentionPolicy& policy, int64_t now_ms,
                          const std::string& temp_dir, std::vector<std::string>* notes = nullptr,
                          const std::vector<LogEntry>& log = {});
// Executes a plan (log segments, then incrementals, then snapshots, so a
// crash leaves the chain usable).
void execute_prune(ObjectStore& store, const PrunePlan& plan);

}  // namespace duckblock
