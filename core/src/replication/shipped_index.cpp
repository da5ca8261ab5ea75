// The shipped page index of each database (page_index.h, pages.idx in its
// spool): what the store's chain holds, page by page, so that a push ships
// only pages whose bytes changed. Its header names a seq <= the head; it is
// saved every few pushes once its blocks are synced, and brought to the head
// at add() by replaying the segments after it. And the clean-close record,
// which vouches for the index at the head (clean_close.h).
#include "duckblock/key.h"
#include <unistd.h>

#include "digest_spool.h"
#include "leader.h"

namespace duckblock {

namespace {

// The pages of a verified segment into `idx`, as an applier would apply
// them: pages extend the file; a length record sets it. Returns the
// segment's checksum.
uint64_t replay_into(PageIndex& idx, const std::string& path, uint32_t ps) {
  FileSource src(path);
  SegmentReader reader(src);
  PageView page;
  uint64_t end = idx.file_length();
  std::optional<uint64_t> recorded;
  while (reader.next(page)) {
    if (page.id == kFileLengthPageId) {
      recorded = decode_file_length(page.data);
    } else {
      idx.set(page.id, page.data.data(), page.data.size());
      end = std::max(end, page.id * ps + page.data.size());
    }
  }
  idx.set_length(recorded ? *recorded : end);
  return reader.checksum();
}

}  // namespace

// The index of the spool's head: pages.idx (opened, not read: its blocks
// are read as diffs need them), then the pages of every segment after its
// seq (from the spool, or the store once uploaded), each verified whole and
// chained before any of its pages counts. Without a usable index, or if a
// segment in between is gone, returns an empty index: the next push then
// ships every page, which is large but never wrong.
PageIndex Leader::load_index(LeaderDb& db) {
  const uint32_t ps = options_.page_size;
  bool found = false;
  PageIndex idx =
      PageIndex::open(db.spool.index_path(), ps, db.spool.file_mode(), &found, PageIndex::kDefaultCacheBytes,
                      db.spool.env());
  const std::string tmp = db.spool.replay_path();
  auto empty = [&] {
    ::unlink(tmp.c_str());
    idx.clear();
    return std::move(idx);
  };
  if (!found || idx.seq() > db.st.seq) return empty();
  uint64_t checksum = idx.chain_checksum();
  for (uint64_t seq = idx.seq() + 1; seq <= db.st.seq; ++seq) {
    std::string path = db.spool.incremental_path(seq);
    if (::access(path.c_str(), F_OK) != 0) {
      try {
        FileSink sink(tmp);
        store_->get(format_key(options_.prefix, {db.name, kIncrementalGeneration, seq}), sink);
        sink.close();
      } catch (const Error& e) {
        // Pruned, or the store unreachable (add() offline): no index, so
        // the next push compares the whole file.
        if (e.kind() == ErrorKind::kNotFound || e.kind() == ErrorKind::kRetryable) return empty();
        ::unlink(tmp.c_str());
        throw;
      }
      path = tmp;
    }
    try {
      // The index is changed in place, so the segment is verified first.
      FileSource whole(path);
      SegmentSummary sum = verify_segment(whole);
      if (sum.header.seq != seq || sum.header.prev_checksum != checksum || sum.header.page_size != ps) return empty();
      checksum = replay_into(idx, path, ps);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kCorruption) return empty();
      ::unlink(tmp.c_str());
      throw;
    }
    idx.set_position(seq, checksum);
    db.pushes_since_index_save++;  // replayed: saved at the next save point
  }
  ::unlink(tmp.c_str());
  if (checksum != db.st.checksum) return empty();
  return idx;
}

// An empty index in the database's pages.idx, to be filled.
PageIndex Leader::fresh_index(LeaderDb& db) {
  PageIndex idx = PageIndex::open(db.spool.index_path(), options_.page_size, db.spool.file_mode(), nullptr,
                                  PageIndex::kDefaultCacheBytes, db.spool.env());
  idx.clear();
  return idx;
}

// The index takes the pages of a push once it is spooled or queued (a
// queued push that then fails sets resync_needed, which rebuilds it). A
// queued push's pages stay in memory until the spooler has made it durable:
// the index file never holds an entry of a seq the spool lacks.
void Leader::record_shipped(LeaderDb& db, const PageIndex::Diff& diff) {
  uint64_t seq, durable;
  {
    std::lock_guard l(mu);
    seq = db.assigned_seq;
    durable = db.st.seq;
  }
  db.index.settle(durable);
  for (size_t i = 0; i < diff.changed.size(); ++i) {
    if (seq <= durable) {
      db.index.set_hash(diff.changed[i], diff.digests[i]);
    } else {
      db.index.set_pending(diff.changed[i], diff.digests[i], seq);
    }
  }
  db.index.set_length(diff.file_length);
  db.pushes_since_index_save++;
}

// Without a digest (the index has pages without entries, or the spool write
// failed) the point has none: readers report it absent, nothing is wrong.
void Leader::spool_digest_of(LeaderDb& db, uint64_t seq, bool durable) {
  const std::string dir = db.spool.incremental_dir();
  try {
    auto digest = db.index.file_digest();
    if (!digest) {
      unspool_digest(dir, seq);
      return;
    }
    spool_digest(dir, db.spool.file_mode(), DigestRecord{seq, db.index.file_length(), options_.page_size, *digest},
                 durable, *db.spool.env());
  } catch (const Error&) {
    unspool_digest(dir, seq);
  }
}

// Saving the index is an optimisation (a restart replays fewer segments),
// so on the checkpoint path it skips the fsync. Caller holds push_mu; the
// index is saved only when it describes the spool's head.
void Leader::save_index(LeaderDb& db, bool durable) {
  {
    std::lock_guard l(mu);
    if (db.queued != 0 || db.resync_needed || db.assigned_seq != db.st.seq) return;
    db.index.set_position(db.st.seq, db.st.checksum);
  }
  db.index.save(durable);
  db.pushes_since_index_save = 0;
}

// Every kIndexSaveEvery pushes; a failure costs only a longer replay.
// Caller holds push_mu.
void Leader::save_index_if_due(LeaderDb& db) {
  if (db.pushes_since_index_save < kIndexSaveEvery) return;
  try {
    save_index(db, false);
  } catch (const Error&) {
  }
}

// On a clean stop, so the next add() replays nothing. A failure here costs
// only a longer replay then.
void Leader::save_index_quietly(LeaderDb& db) {
  std::lock_guard push_lock(db.push_mu);
  wait_spooled(db);
  if (db.pushes_since_index_save == 0) return;
  try {
    save_index(db, true);
  } catch (const Error&) {
  }
}

// After a queued segment failed to spool (disk full, say), the index and
// the assigned seq are ahead of the spool: rebuild the index from the
// spool's head and compare the whole file. Caller holds push_mu.
bool Leader::resync_if_needed(LeaderDb& db) {
  {
    std::lock_guard l(mu);
    if (!db.resync_needed) return false;
  }
  wait_spooled(db);  // the failed segment's successors are dropped
  PageIndex index = load_index(db);
  std::lock_guard l(mu);
  db.index = std::move(index);
  db.assigned_seq = db.st.seq;
  db.resync_needed = false;
  return true;
}

// ---- clean close (clean_close.h) ----

bool Leader::record_clean_close(LeaderDb& db, PageReader& reader) {
  std::lock_guard push_lock(db.push_mu);
  wait_spooled(db);
  {
    std::lock_guard l(mu);
    if (db.resync_needed || db.stopped() || db.assigned_seq != db.st.seq) return false;
  }
  auto proof = take_proof(reader, options_.page_size, true);
  if (!proof || proof->stamp.size != db.index.file_length()) return false;
  // The record vouches for the index at the head: it must be on disk
  // first, at that position.
  save_index(db, true);
  {
    std::lock_guard l(mu);
    if (db.index.seq() != db.st.seq || db.index.chain_checksum() != db.st.checksum) return false;
    proof->seq = db.st.seq;
    proof->chain_checksum = db.st.checksum;
  }
  write_clean_close(db.spool.dir(), *proof, db.spool.file_mode());
  std::lock_guard l(mu);
  db.clean_recorded = true;
  return true;
}

// A push after the close: the record no longer describes the file.
void Leader::forget_clean_close(LeaderDb& db) {
  {
    std::lock_guard l(mu);
    if (!db.clean_recorded) return;
    db.clean_recorded = false;
  }
  drop_clean_close(db.spool.dir());
}

// At add(), once the spool's head and index are loaded: the record is of
// this head, the index is at it, and the file is as it was at the close.
bool Leader::clean_close_holds(LeaderDb& db, const std::optional<CleanClose>& rec, PageReader& reader) {
  return rec && rec->seq == db.st.seq && rec->chain_checksum == db.st.checksum && db.index.seq() == db.st.seq &&
         db.index.chain_checksum() == db.st.checksum && db.index.file_length() == rec->stamp.size &&
         proof_holds(*rec, reader, options_.page_size);
}

}  // namespace duckblock
