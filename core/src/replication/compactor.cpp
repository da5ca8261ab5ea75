// The compactor thread: builds each scheduled snapshot (only the newest of
// those due when it is behind, SnapshotPolicy::coalesce) from the newest
// snapshot before it and the incrementals after that (from the spool while
// they are there, else the store), into 0001/<seq>.hadbp through a temp file
// that the next add() removes if a crash leaves it (compact.h). The
// uploader takes it from there. A failure is kept in
// status().compaction_error; a transient one (store, disk) is retried, any
// other drops this snapshot (the next one due is tried afresh, from an older
// base if need be).
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "duckblock/compact.h"
#include "duckblock/key.h"
#include "leader.h"

namespace duckblock {

namespace {

// A compaction rewrites the whole database; it must take neither CPU nor
// disk from the checkpoints and commits beside it, which it can always
// catch up on later (due snapshots coalesce). So this thread, and the ones
// it starts (they inherit both), runs at nice 10 and the lowest
// best-effort I/O priority. Linux only; a refusal only costs speed.
void lower_this_threads_priority() {
#ifdef __linux__
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  (void)::setpriority(PRIO_PROCESS, tid, 10);
  constexpr int kIoprioWhoProcess = 1, kIoprioClassBestEffort = 2, kIoprioClassShift = 13, kLowest = 7;
  (void)::syscall(SYS_ioprio_set, kIoprioWhoProcess, static_cast<int>(tid),
                  (kIoprioClassBestEffort << kIoprioClassShift) | kLowest);
#endif
}

}  // namespace

// A database whose oldest due snapshot can be built now. Caller holds mu.
std::shared_ptr<LeaderDb> Compactor::next_due() {
  auto now = std::chrono::steady_clock::now();
  for (auto& [name, d] : leader_.dbs) {
    if (!d->stopped() && !d->compact_queue.empty() && d->st.seq >= d->compact_queue.front() &&
        now >= d->compact_retry_at) {
      return d;
    }
  }
  return nullptr;
}

bool Compactor::build(LeaderDb& db, uint64_t seq) {
  const ReplicatorOptions& options = leader_.options();
  CompactSources src;
  src.store = &leader_.store();
  src.prefix = options.prefix;
  src.db = db.name;
  src.work_dir = db.spool.snapshot_dir();
  src.temp_prefix = Spool::kCompactTempPrefix;  // Spool::adopt removes what a crash leaves
  {
    std::lock_guard l(leader_.mu);
    src.id = ChainIdentity{db.st.convention, db.st.lineage, db.st.base_checksum};
  }
  CompactOptions o;
  o.compression = options.compression;
  o.now_ms = [this] { return leader_.now(); };
  o.file_mode = db.spool.file_mode();
  o.cancelled = [this, &db] {
    std::lock_guard g(leader_.mu);
    return stopping_ || !db.active;
  };
  src.spool_snapshots = db.spool.snapshots();
  src.spool_incrementals = db.spool.incrementals();
  // A seq queued again at add() (which asks nothing of the store) may be in
  // the store already: building it again would put different bytes
  // (another timestamp) under a taken key.
  const std::string key = format_key(options.prefix, {db.name, kSnapshotGeneration, seq});
  if (src.spool_snapshots.count(seq) || leader_.store().head(key)) return false;
  compact_snapshot(src, seq, db.spool.snapshot_path(seq), o);
  return true;
}

// Caller holds mu.
void Compactor::record_outcome(LeaderDb& db, uint64_t seq, bool built,
                               const std::optional<std::pair<ErrorKind, std::string>>& error) {
  db.compacting = false;
  db.status.compacting_seq = 0;
  if (!error) {
    if (built) db.status.last_compacted_seq = seq;
    db.status.compaction_error.reset();
    db.compact_queue.pop_front();
    leader_.uploader.wake();
  } else if (!stopping_ && db.active) {
    db.status.compaction_error = "the snapshot at seq " + std::to_string(seq) + " was not made: " + error->second;
    if (error->first == ErrorKind::kRetryable || error->first == ErrorKind::kIO) {
      db.compact_retry_at = std::chrono::steady_clock::now() + leader_.options().retry_max;
    } else {
      db.compact_queue.pop_front();
    }
  }
  leader_.done_cv.notify_all();
}

void Compactor::loop() {
  lower_this_threads_priority();
  std::unique_lock l(leader_.mu);
  while (!stopping_) {
    std::shared_ptr<LeaderDb> db = next_due();
    if (!db) {
      cv_.wait_for(l, std::chrono::seconds(1));
      continue;
    }
    // Behind: build only the newest due snapshot whose incrementals are
    // spooled (SnapshotPolicy::coalesce); each would rewrite the database.
    while (leader_.options().snapshots.coalesce && db->compact_queue.size() > 1 &&
           db->compact_queue[1] <= db->st.seq) {
      db->compact_queue.pop_front();
      db->status.snapshots_coalesced++;
    }
    const uint64_t seq = db->compact_queue.front();
    db->compacting = true;
    db->status.compacting_seq = seq;
    l.unlock();
    std::optional<std::pair<ErrorKind, std::string>> error;
    bool built = false;
    try {
      built = build(*db, seq);
    } catch (const Error& e) {
      error.emplace(e.kind(), e.what());
    } catch (const std::exception& e) {
      error.emplace(ErrorKind::kIO, e.what());
    }
    l.lock();
    record_outcome(*db, seq, built, error);
  }
}

}  // namespace duckblock
