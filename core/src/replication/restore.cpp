#include "duckblock/restore.h"

#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <thread>

#include "duckblock/chain.h"
#include "duckblock/error.h"
#include "duckblock/file_digest.h"
#include "duckblock/key.h"
#include "duckblock/temp_files.h"
#include "duckblock/wal.h"

namespace duckblock {

uint64_t ChainListing::head_seq() const {
  uint64_t h = 0;
  if (!snapshots.empty()) h = std::max(h, snapshots.back().seq);
  if (!incrementals.empty()) h = std::max(h, incrementals.back().seq);
  return h;
}

ChainListing list_chain(ObjectStore& store, const std::string& prefix, const std::string& db) {
  ChainListing out;
  for (uint16_t gen : {kIncrementalGeneration, kSnapshotGeneration}) {
    for (const auto& info : store.list(generation_prefix(prefix, db, gen))) {
      auto key = parse_key(prefix, info.key);
      if (!key || key->db != db || key->generation != gen) continue;  // not ours: ignore
      ChainEntry e{key->seq, gen == kSnapshotGeneration, info.key, info.size, info.modified_ms, info.mode};
      (e.snapshot ? out.snapshots : out.incrementals).push_back(e);
    }
  }
  return out;
}

namespace {

// download_segment's work, keeping what Replica::apply(VerifiedSegment)
// needs so that the segment is not hashed again before its write pass.
VerifiedSegment download_verified(ObjectStore& store, const ChainEntry& entry, const std::string& path,
                                  Env* env = nullptr) {
  try {
    {
      // The object's mode where the store keeps it (the leader file's), else
      // owner-only: a snapshot download becomes the restored file.
      FileSink sink(path, entry.mode.value_or(0600), env);
      store.get(entry.key, sink);
      sink.sync();
      sink.close();
    }
    VerifiedSegment v;
    try {
      v = verify_segment_file(path);
    } catch (const Error& e) {
      throw Error(e.kind(), "object " + entry.key + ": " + e.what());
    }
    if (v.summary.header.seq != entry.seq) {
      throw Error(ErrorKind::kCorruption, "object " + entry.key + " holds seq " +
                                              std::to_string(v.summary.header.seq) + ", its key says " +
                                              std::to_string(entry.seq));
    }
    return v;
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

}  // namespace

SegmentSummary download_segment(ObjectStore& store, const ChainEntry& entry, const std::string& path) {
  return download_verified(store, entry, path).summary;
}

std::vector<ChainEntry> incrementals_between(const ChainListing& chain, uint64_t from, uint64_t to) {
  std::vector<ChainEntry> out;
  uint64_t expect = from + 1;
  for (const auto& e : chain.incrementals) {
    if (e.seq <= from || e.seq > to) continue;
    if (e.seq != expect) {
      throw Error(ErrorKind::kChainBroken,
                  "the store is missing incremental seq " + std::to_string(expect) + " (next present: " +
                      std::to_string(e.seq) + "); the chain cannot be replayed past seq " + std::to_string(expect - 1));
    }
    out.push_back(e);
    ++expect;
  }
  if (expect != to + 1) {
    throw Error(ErrorKind::kChainBroken, "the store is missing incremental seq " + std::to_string(expect) +
                                             " (wanted up to " + std::to_string(to) + ")");
  }
  return out;
}

namespace {

constexpr const char* kDownloadPrefix = ".duckblock-dl-";

std::string temp_name(const std::string& dir, const std::string& what) {
  return dir + "/" + temp_file_name(kDownloadPrefix, what);
}

int64_t header_time(ObjectStore& store, const ChainEntry& e) {
  auto bytes = get_bytes(store, e.key, ByteRange{0, kHeaderSize});
  if (bytes.size() < kHeaderSize) throw Error(ErrorKind::kCorruption, "object " + e.key + " is truncated");
  return parse_header(std::span<const uint8_t, kHeaderSize>(bytes.data(), kHeaderSize)).created_ms;
}

// Downloads entries in order on a background thread, at most `depth` ahead of
// the consumer, so network and disk work overlap with bounded space.
class Prefetcher {
 public:
  Prefetcher(ObjectStore& store, std::vector<ChainEntry> entries, std::string dir, Env* env, size_t depth = 2)
      : store_(store), entries_(std::move(entries)), dir_(std::move(dir)), env_(env), depth_(depth) {
    thread_ = std::thread([this] { run(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    for (auto& r : ready_) ::unlink(r.segment.path.c_str());
  }
  struct Ready {
    VerifiedSegment segment;
    ChainEntry entry;
  };
  // Next downloaded segment; rethrows a download error.
  Ready next() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    Ready r = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return r;
  }

 private:
  void run() {
    for (const auto& e : entries_) {
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
      }
      Ready r;
      r.entry = e;
      try {
        // Downloaded and verified here, on this thread, once: the apply
        // thread does not hash it again before writing (Replica::apply).
        r.segment = download_verified(store_, e, temp_name(dir_, std::to_string(e.seq)), env_);
      } catch (...) {
        std::lock_guard l(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      std::lock_guard l(mu_);
      if (stop_) {
        ::unlink(r.segment.path.c_str());
        return;
      }
      ready_.push_back(std::move(r));
      cv_.notify_all();
    }
  }

  ObjectStore& store_;
  std::vector<ChainEntry> entries_;
  std::string dir_;
  Env* env_;
  size_t depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Ready> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

// Applies `entries` to the replica with downloads overlapped.
uint64_t apply_all(ObjectStore& store, Replica& replica, const std::vector<ChainEntry>& entries,
                   const std::string& dir, RestoreResult* result, const RestoreOptions* options,
                   RestoreProgress* progress) {
  if (entries.empty()) return 0;
  Prefetcher pf(store, entries, dir, options ? options->env : nullptr);
  uint64_t n = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto r = pf.next();
    try {
      replica.apply(r.segment);
    } catch (...) {
      ::unlink(r.segment.path.c_str());
      throw;
    }
    ++n;
    if (result) {
      result->bytes_downloaded += r.segment.summary.encoded_size;
      result->created_ms = r.segment.summary.header.created_ms;
    }
    if (progress && options && options->progress) {
      progress->segments_done++;
      progress->bytes_done += r.entry.size;
      options->progress(*progress);
    }
  }
  return n;
}

// Resets `replica` from the newest of `candidates` (newest first) that
// downloads, verifies and belongs to this chain at its seq, and from which
// the listed incrementals reach `to`. A damaged or foreign snapshot is
// skipped for an older one (each skip is described in `skipped`); if none
// serves, the first failure is thrown.
struct Chosen {
  const ChainEntry* entry = nullptr;
  SegmentSummary summary;
  std::vector<ChainEntry> incrementals;
};
Chosen reset_from_bound_snapshot(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                                 const std::vector<const ChainEntry*>& candidates, uint64_t to, Replica& replica,
                                 std::vector<std::string>& skipped) {
  std::exception_ptr first;
  for (const ChainEntry* cand : candidates) {
    Chosen c;
    c.entry = cand;
    try {
      c.incrementals = incrementals_between(chain, cand->seq, to);
      // Streamed: no copy on disk, one pass; bound to the chain before the
      // replica's file is replaced.
      c.summary = restore_snapshot_streaming(store, *cand, replica, [&](const SegmentSummary& s) {
                    return bind_snapshot(store, chain, id, *cand, s);
                  }).summary;
      replica.set_lineage(id.lineage);
      return c;
    } catch (const Error& e) {
      // Only what an older snapshot can get round: damage, a foreign
      // object, a gap, an object gone since the listing.
      if (e.kind() != ErrorKind::kCorruption && e.kind() != ErrorKind::kChainBroken &&
          e.kind() != ErrorKind::kNotFound) {
        throw;
      }
      if (!first) first = std::current_exception();
      skipped.push_back("snapshot at seq " + std::to_string(cand->seq) + " not used: " + e.what());
    }
  }
  if (first) std::rethrow_exception(first);
  throw Error(ErrorKind::kNotFound, "no snapshot to start from");
}

}  // namespace

// (Over 80 lines: one sequence of steps, each of which must happen before
// the temp file is published, with one cleanup path for all of them.)
RestoreResult restore(ObjectStore& store, const std::string& db, const std::string& target_path,
                      const RestoreTarget& target, const RestoreOptions& options) {
  validate_db_name(db);
  ChainListing chain = list_chain(store, options.prefix, db);
  if (chain.empty()) {
    throw Error(ErrorKind::kNotFound, "the store " + store.url() + " has no database '" + db + "'" +
                                          (options.prefix.empty() ? "" : " under prefix '" + options.prefix + "'"));
  }
  uint64_t head = chain.head_seq();
  uint64_t want = head;
  if (target.seq) {
    if (*target.seq > head) {
      throw Error(ErrorKind::kNotFound, "seq " + std::to_string(*target.seq) + " is past the chain's head " +
                                            std::to_string(head));
    }
    want = *target.seq;
  }
  if (target.time_ms) {
    // Binary search the incrementals by header time (monotonic with seq on
    // one leader): the last one created at or before the target time.
    const auto& inc = chain.incrementals;
    size_t lo = 0, hi = inc.size();  // first index with time > target
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (header_time(store, inc[mid]) <= *target.time_ms) lo = mid + 1; else hi = mid;
    }
    if (lo > 0) {
      want = std::min(want, inc[lo - 1].seq);
    } else {
      // Before every incremental: only a snapshot that old can serve.
      uint64_t best = UINT64_MAX;
      for (const auto& s : chain.snapshots) {
        if (s.seq <= want && header_time(store, s) <= *target.time_ms) best = s.seq;
      }
      if (best == UINT64_MAX) {
        throw Error(ErrorKind::kNotFound, "no point of '" + db + "' was created at or before the requested time");
      }
      want = best;
    }
  }
  std::vector<const ChainEntry*> candidates;
  for (auto it = chain.snapshots.rbegin(); it != chain.snapshots.rend(); ++it) {
    if (it->seq <= want) candidates.push_back(&*it);
  }
  if (candidates.empty()) {
    throw Error(ErrorKind::kNotFound, "no snapshot of '" + db + "' at or before seq " + std::to_string(want) +
                                          " (it may have been pruned)");
  }
  ChainIdentity id = read_chain_identity(store, options.prefix, db);

  std::string dir = options.temp_dir.empty() ? dirname_of(target_path) : options.temp_dir;
  refuse_if_open_for_writing(target_path, "replace it");
  remove_stale_temp_files(dir, kDownloadPrefix);  // left by a run that was killed
  std::string work = target_path + ".duckblock-restoring";
  const std::vector<std::string> work_files = {work, work + ".duckblock", work + ".duckblock-pending", work + ".duckblock-restore"};
  for (const auto& p : work_files) ::unlink(p.c_str());
  RestoreResult result;
  RestoreProgress progress;
  ApplyOptions apply_options;
  apply_options.env = options.env;
  try {
    Replica replica(work, apply_options);
    Chosen c = reset_from_bound_snapshot(store, chain, id, candidates, want, replica, result.skipped_snapshots);
    const auto& incs = c.incrementals;
    progress.segments_total = 1 + incs.size();
    progress.bytes_total = c.entry->size;
    for (const auto& e : incs) progress.bytes_total += e.size;
    result.snapshot_seq = c.entry->seq;
    result.bytes_downloaded = c.summary.encoded_size;
    result.created_ms = c.summary.header.created_ms;
    progress.segments_done = 1;
    progress.bytes_done = c.entry->size;
    if (options.progress) options.progress(progress);
    result.segments_applied = apply_all(store, replica, incs, dir, &result, &options, &progress);
    result.position = replica.position();
    // Before anything is published: the bytes are the leader's at that seq.
    result.digest = check_published_digest(store, options.prefix, db, result.position.seq, replica.page_size(), work,
                                           "the restored file at seq " + std::to_string(result.position.seq));
    // Publish: drop the old journal, then move the file, then its journal. A
    // crash between these steps leaves either the old file or the new one
    // without a journal, which a follower treats as "start from a snapshot";
    // never a journal describing the wrong file.
    refuse_if_open_for_writing(target_path, "replace it");  // opened while we downloaded
    ::unlink((target_path + ".duckblock").c_str());
    fsync_dir(dirname_of(target_path));
    if (::rename(work.c_str(), target_path.c_str()) != 0) throw_errno("cannot move restored file to " + target_path);
    if (::rename((work + ".duckblock").c_str(), (target_path + ".duckblock").c_str()) != 0) {
      throw_errno("cannot move restore journal beside " + target_path);
    }
    ::unlink((target_path + ".duckblock-pending").c_str());
    fsync_dir(dirname_of(target_path));
  } catch (...) {
    for (const auto& p : work_files) ::unlink(p.c_str());
    throw;
  }
  return result;
}

namespace {

// The record of `seq`, checked against the chain's page size before any
// byte of the file is read in its pages: a forged page size must neither
// pass for a mismatch of the file nor size the reads.
std::optional<DigestRecord> published_digest_for(ObjectStore& store, const std::string& prefix, const std::string& db,
                                                 uint64_t seq, std::optional<uint32_t> page_size) {
  auto want = read_published_digest(store, prefix, db, seq);
  if (want && page_size && want->page_size != *page_size) {
    throw Error(ErrorKind::kCorruption, "the digest object " + digest_key(prefix, db, seq) + " is damaged: it counts " +
                                            std::to_string(want->page_size) + "-byte pages, the chain's are " +
                                            std::to_string(*page_size) + " bytes");
  }
  return want;
}

std::string check_file_against(const std::optional<DigestRecord>& want, const std::string& path,
                               const std::string& what) {
  if (!want) return "absent";
  check_file_digest(*want, path, what);
  return "verified";
}

}  // namespace

std::string check_published_digest(ObjectStore& store, const std::string& prefix, const std::string& db, uint64_t seq,
                                   std::optional<uint32_t> page_size, const std::string& path,
                                   const std::string& what) {
  return check_file_against(published_digest_for(store, prefix, db, seq, page_size), path, what);
}

namespace {

// After an apply: the replica's bytes are the leader's at its position, or
// it is marked diverged (refused until --force restores it afresh).
void check_replica_digest(ObjectStore& store, const std::string& prefix, const std::string& db, Replica& replica) {
  const uint64_t seq = replica.position().seq;
  try {
    check_published_digest(store, prefix, db, seq, replica.page_size(), replica.path(),
                           "the replica " + replica.path() + " at seq " + std::to_string(seq));
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kCorruption) throw;
    replica.mark_diverged(e.what());
    throw Error(ErrorKind::kCorruption, std::string(e.what()) +
                                            "; `duckblock follow --force` (or restore --force) replaces it with a "
                                            "fresh copy from the store");
  }
}

// catch_up against one listing of the chain.
uint64_t catch_up_listed(ObjectStore& store, const std::string& prefix, const std::string& db, Replica& replica,
                         std::optional<uint64_t> up_to_seq, const ChainListing& chain) {
  ChainIdentity id = read_chain_identity(store, prefix, db);
  uint64_t head = up_to_seq ? std::min(*up_to_seq, chain.head_seq()) : chain.head_seq();
  std::string dir = dirname_of(replica.path());
  refuse_if_open_for_writing(replica.path(), "apply segments to it");
  remove_stale_temp_files_once(dir, kDownloadPrefix);  // left by a run that was killed
  bool fresh = ::access(replica.journal_path().c_str(), F_OK) != 0;
  uint64_t pos = replica.position().seq;
  if (!fresh) check_replica_on_chain(store, chain, id, db, replica, prefix);
  // Start over from a snapshot when the replica has no position yet, or the
  // incremental it needs next is gone (pruned) while a newer snapshot exists.
  bool need_next = !fresh && pos < head;
  bool next_missing = need_next && std::none_of(chain.incrementals.begin(), chain.incrementals.end(),
                                                [&](const ChainEntry& e) { return e.seq == pos + 1; });
  uint64_t applied = 0;
  if (fresh || next_missing) {
    std::vector<const ChainEntry*> candidates;
    for (auto it = chain.snapshots.rbegin(); it != chain.snapshots.rend(); ++it) {
      if (it->seq <= head && (fresh || it->seq > pos)) candidates.push_back(&*it);
    }
    if (candidates.empty()) {
      throw Error(fresh ? ErrorKind::kNotFound : ErrorKind::kChainBroken,
                  fresh ? "no snapshot of '" + db + "' to start from"
                        : "incremental seq " + std::to_string(pos + 1) + " is gone from the store and no newer snapshot exists");
    }
    std::vector<std::string> skipped;
    reset_from_bound_snapshot(store, chain, id, candidates, head, replica, skipped);
    ++applied;
  }
  const bool reset = applied > 0;  // a snapshot was applied: always checked
  pos = replica.position().seq;
  uint64_t applied_bytes = 0;
  if (pos < head) {
    auto batch = incrementals_between(chain, pos, head);
    for (const auto& e : batch) applied_bytes += e.size;
    applied += apply_all(store, replica, batch, dir, nullptr, nullptr, nullptr);
  }
  if (applied > 0) {
    struct stat st {};
    uint64_t file_size = ::stat(replica.path().c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
    if (replica.whole_file_check_due(applied_bytes, file_size) || reset) {
      check_replica_digest(store, prefix, db, replica);
      replica.whole_file_checked();
    }
  }
  return applied;
}

}  // namespace

uint64_t catch_up(ObjectStore& store, const std::string& prefix, const std::string& db, Replica& replica,
                  std::optional<uint64_t> up_to_seq) {
  // An object listed but gone when fetched: a prune or a compaction changed
  // the chain meanwhile (a follow that caught up across a prune died with
  // "no such object"). What was applied stays; a new listing shows the
  // chain's new shape, from which the catch-up goes on.
  constexpr int kListings = 3;
  uint64_t applied = 0;
  for (int listing = 1;; ++listing) {
    ChainListing chain = list_chain(store, prefix, db);
    if (chain.empty()) throw Error(ErrorKind::kNotFound, "the store " + store.url() + " has no database '" + db + "'");
    const uint64_t before = replica.position().seq;
    try {
      return applied + catch_up_listed(store, prefix, db, replica, up_to_seq, chain);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kNotFound || listing == kListings) throw;
      if (replica.position().seq != before) ++applied;  // at least one
    }
  }
}

void check_replica_on_chain(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                            const std::string& db, Replica& replica, const std::string& prefix) {
  replica.check_unchanged();
  const std::string how = "`duckblock follow --force` replaces the replica with a fresh copy of the store's chain";
  if (stale_log_beside(replica.path(), LogBesideUse::kFollow)) {
    throw Error(ErrorKind::kChainBroken, "the replica " + replica.path() + " was changed since duckblock last applied "
                                         "to it (" + replica.path() + ".wal exists and is not the log duckblock "
                                         "applied), for example by a DuckDB that opened it read-write; " + how);
  }
  if (replica.stamp_changed()) {
    // Renamed or chmod-ed, or rewritten with its size, mtime and headers
    // put back: only its bytes can tell (one read of the whole file). A
    // damaged digest object is the store's defect, not the replica's.
    const uint64_t seq = replica.position().seq;
    auto want = published_digest_for(store, prefix, db, seq, replica.page_size());
    try {
      check_file_against(want, replica.path(), "the replica " + replica.path() + " at seq " + std::to_string(seq));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kCorruption) throw;
      throw Error(ErrorKind::kChainBroken, "the replica " + replica.path() +
                                               " was changed since duckblock last applied to it (" + e.what() + "); " +
                                               how);
    }
    replica.accept_stamp();
  }
  if (!replica.lineage().empty() && replica.lineage() != id.lineage) {
    throw_lineage_mismatch(db, id.lineage, replica.lineage(), how);
  }
  ChainPosition pos = replica.position();
  if (pos.seq > chain.head_seq()) {
    throw Error(ErrorKind::kChainBroken, "the replica " + replica.path() + " is at seq " + std::to_string(pos.seq) +
                                             " but the store's chain for '" + db + "' ends at seq " +
                                             std::to_string(chain.head_seq()) +
                                             ": the chain was rewritten or lost objects; " + how);
  }
  auto stated = stated_chain_checksum(store, chain, id, pos.seq);
  if (stated && *stated != pos.checksum) {
    throw Error(ErrorKind::kChainBroken, "the store's chain for '" + db + "' has checksum " + checksum_hex(*stated) +
                                             " at seq " + std::to_string(pos.seq) + " but the replica " +
                                             replica.path() + " is at " + checksum_hex(pos.checksum) +
                                             ": the database was rebuilt or rewritten in the store; " + how);
  }
  // A journal from before chain.json learns the lineage once its position
  // is confirmed.
  if (replica.lineage().empty() && !id.lineage.empty()) replica.set_lineage(id.lineage);
}

}  // namespace duckblock
