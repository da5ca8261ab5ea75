// The leader's parts and the state they share (internal to the core).
//
// A Replicator is:
//   Leader      the databases and their heads, under one mutex; the push
//               path (replicator.cpp) and the shipped page index
//               (shipped_index.cpp)
//   Spool       one database's directory: layout, state.json, durable
//               segment files (spool.h)
//   Spooler     thread: encodes and writes queued pushes into the spool
//               (spooler.cpp)
//   Uploader    thread: puts spooled segments into the store in seq order,
//               if absent; fencing, damage, retries (uploader.cpp)
//   Compactor   thread: builds due snapshots from the chain (compactor.cpp)
//   LogShipper  one thread per database: commits between checkpoints
//               (log_shipper.h)
// docs/ARCHITECTURE.md follows one checkpoint through them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/clean_close.h"
#include "duckblock/page_index.h"
#include "duckblock/replicator.h"
#include "log_shipper.h"
#include "spool.h"

namespace duckblock {

// What the uploader must check of a spool against the store before it
// uploads anything of it (spool_first, or the store unreachable at add()).
struct StoreCheck {
  uint64_t seq = 0, uploaded_seq = 0, base_checksum = 0;
  bool uploaded_any = false;
  int convention = 1;
  std::string lineage;
  std::optional<uint64_t> checksum_at_uploaded;
};

// One replicated database. Fields are guarded by Leader::mu unless noted.
struct LeaderDb : std::enable_shared_from_this<LeaderDb> {
  LeaderDb(const std::string& name, const ReplicatorOptions& options)
      : name(name),
        spool(options.spool_dir + "/" + name, name, options.page_size, options.spool_env),
        index(options.page_size) {}

  std::string name;
  Spool spool;    // its own methods need no lock; st is what they read and write
  SpoolState st;  // the head: status().spooled_seq and uploaded_seq are read from it
  PageIndex index;  // guarded by push_mu
  // Counters and errors; the positions in it are filled from `st` by
  // Leader::status_of.
  ReplicationStatus status;
  bool active = true;
  uint64_t pushes_since_index_save = 0;  // guarded by push_mu
  // Last seq handed out by a push. Ahead of st.seq (the last one written
  // to the spool) while the spooler has segments of this database queued.
  uint64_t assigned_seq = 0;
  uint64_t queued = 0;        // segments queued for the spooler
  uint64_t queued_bytes = 0;  // their page bytes
  // A queued segment failed to spool: the index and assigned_seq are ahead
  // of the spool until the next push rebuilds them (Leader::resync_if_needed).
  // The failure's kind is kept, so the push that reports it keeps it too.
  bool resync_needed = false;
  ErrorKind resync_kind = ErrorKind::kIO;
  bool uploading = false;  // the uploader is working on one of its segments
  // Set when the uploader found damage it must not get round (a damaged
  // spool file, a damaged object at our seq that is not provably ours):
  // nothing more is uploaded and sync()/push report Error(damage_kind).
  bool damaged = false;
  ErrorKind damage_kind = ErrorKind::kCorruption;
  std::optional<StoreCheck> deferred_check;
  std::mutex push_mu;  // one push at a time per database; guards index
  // Commits between checkpoints (push_log); created once the database is
  // registered, destroyed (unsent bytes dropped) when it is removed.
  std::unique_ptr<LogShipper> log;
  // Snapshots due at these seqs, oldest first, wait for the compactor,
  // which builds each once its incremental is spooled.
  std::deque<uint64_t> compact_queue;
  bool compacting = false;
  std::chrono::steady_clock::time_point compact_retry_at{};
  bool clean_recorded = false;  // clean.json vouches for the file

  // Neither uploads nor compactions go on for it.
  bool stopped() const { return !active || status.fenced || damaged; }
  // Throws what a push or sync must report for a fenced or damaged database.
  void throw_if_stopped() const;
};

// A checkpoint's changed pages, copied out of the file at the commit
// point, waiting for the spooler to encode and fsync them.
struct SpoolJob {
  std::shared_ptr<LeaderDb> db;
  uint64_t seq;
  uint64_t length;
  bool with_length;
  std::vector<uint64_t> ids;
  std::vector<uint8_t> data;  // page i at i * page_size
  int64_t created_ms;
};

class Leader;

// One of the leader's threads: waits on its own condition variable under
// Leader::mu; stop() sets stopping_ under that mutex and joins.
class LeaderThread {
 public:
  explicit LeaderThread(Leader& leader) : leader_(leader) {}
  virtual ~LeaderThread() = default;
  void start();
  void stop();
  void wake() { cv_.notify_all(); }

 protected:
  virtual void loop() = 0;
  Leader& leader_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by Leader::mu

 private:
  std::thread thread_;
};

// Writes what is queued before it stops.
class Spooler : public LeaderThread {
 public:
  using LeaderThread::LeaderThread;
  // Caller holds Leader::mu.
  void enqueue(SpoolJob job);

 private:
  void loop() override;
  void write_one(SpoolJob& job, std::unique_lock<std::mutex>& l);
  std::deque<SpoolJob> queue_;
};

class Uploader : public LeaderThread {
 public:
  using LeaderThread::LeaderThread;
  // The spool (as `c` recorded it) against the store's chain: throws
  // kFenced if another leader went further, kCorruption if the store lost
  // what was uploaded, kChainBroken if its chain is another one.
  void check_against_store(const std::string& name, const StoreCheck& c, const std::string& dir);

 private:
  struct Job {
    std::shared_ptr<LeaderDb> db;
    uint64_t seq;
    bool snapshot;
    std::string path;
  };
  enum class Outcome { kUploaded, kFenced, kDamaged, kFailed };
  void loop() override;
  std::optional<Job> next_job();
  bool run_deferred_check(std::unique_lock<std::mutex>& l);
  Outcome upload_one(const std::string& key, const Job& job, uint64_t& size, std::string& error);
  bool record_upload(LeaderDb& db, const Job& job, uint64_t size);
  void publish_digest_of(const LeaderDb& db, const Job& job);
  void wait_before_retry(std::unique_lock<std::mutex>& l);

  std::chrono::milliseconds backoff_{0};  // set from the options on the first retry
  std::mt19937_64 rng_{std::random_device{}()};
};

// A compaction in progress stops at stop(); the next add() schedules it again.
class Compactor : public LeaderThread {
 public:
  using LeaderThread::LeaderThread;

 private:
  void loop() override;
  std::shared_ptr<LeaderDb> next_due();
  // Builds the snapshot at `seq` unless the spool or the store has it;
  // returns whether it built one.
  bool build(LeaderDb& db, uint64_t seq);
  void record_outcome(LeaderDb& db, uint64_t seq, bool built,
                      const std::optional<std::pair<ErrorKind, std::string>>& error);
};

class Leader {
  // First, so they are set before the threads' parts below are made.
  std::shared_ptr<ObjectStore> store_;
  const ReplicatorOptions& options_;

 public:
  Leader(std::shared_ptr<ObjectStore> store, const ReplicatorOptions& options)
      : store_(std::move(store)), options_(options), spooler(*this), uploader(*this), compactor(*this) {}

  ObjectStore& store() const { return *store_; }
  const std::shared_ptr<ObjectStore>& store_ptr() const { return store_; }
  const ReplicatorOptions& options() const { return options_; }
  int64_t now() const;

  mutable std::mutex mu;
  // done_cv: a spool, upload or compaction finished (push back-pressure,
  // sync, remove wait on it).
  std::condition_variable done_cv;
  std::map<std::string, std::shared_ptr<LeaderDb>> dbs;

  Spooler spooler;
  Uploader uploader;
  Compactor compactor;

  // Segments not yet in the store: queued, spooled, or snapshots due.
  // Caller holds mu.
  uint64_t pending(const LeaderDb& db) const;
  // The status of `db`, positions read from its head. Caller holds mu.
  ReplicationStatus status_of(const LeaderDb& db) const;
  std::shared_ptr<LeaderDb> find(const std::string& name) const;  // throws kNotFound

  // ---- the push path (replicator.cpp) ----
  PushResult push(LeaderDb& db, PageReader& reader, const std::vector<uint64_t>* candidates);
  SnapshotResult snapshot_now(LeaderDb& db, PageReader& reader);
  void start_log(const std::shared_ptr<LeaderDb>& db);
  // The snapshot at seq 0 of a new chain, read from the file.
  uint64_t spool_first_snapshot(LeaderDb& db, PageReader& reader);
  // A snapshot is due at `seq`: the compactor builds it off the checkpoint
  // path. Caller holds mu.
  void schedule_snapshot(LeaderDb& db, uint64_t seq);
  void wait_spooled(LeaderDb& db);
  void count_toward_snapshot(LeaderDb& db, uint64_t seq, bool snapshot_due, uint64_t size);

  // ---- the shipped page index (shipped_index.cpp) ----
  PageIndex load_index(LeaderDb& db);
  PageIndex fresh_index(LeaderDb& db);
  void record_shipped(LeaderDb& db, const PageIndex::Diff& diff);
  void save_index(LeaderDb& db, bool durable);
  void save_index_quietly(LeaderDb& db);
  void save_index_if_due(LeaderDb& db);
  // The digest of the file after `seq` (the index must describe it now),
  // spooled for the uploader to publish after segment `seq`; `durable`
  // where the segment is already durable (no spooler will sync it).
  void spool_digest_of(LeaderDb& db, uint64_t seq, bool durable);
  bool resync_if_needed(LeaderDb& db);
  static constexpr uint64_t kIndexSaveEvery = 16;

  // ---- clean close (clean_close.h; shipped_index.cpp) ----
  bool record_clean_close(LeaderDb& db, PageReader& reader);
  void forget_clean_close(LeaderDb& db);
  bool clean_close_holds(LeaderDb& db, const std::optional<CleanClose>& rec, PageReader& reader);

  StoreCheck store_check_of(const LeaderDb& db) const;

 private:
  PushResult push_locked(LeaderDb& db, PageReader& reader, const std::vector<uint64_t>* candidates);
};

}  // namespace duckblock
