// The uploader thread: takes spooled segments in seq order (a snapshot once
// the store has the incremental of its seq), verifies each again, puts it
// if absent and records the upload in state.json before the spool file
// goes. A taken key is judged (leader_checks.h): our own earlier upload is
// fine, another leader's sound segment fences us, a damaged object that is
// provably ours is replaced, any other damage stops this database's uploads.
#include "duckblock/chain.h"
#include "duckblock/key.h"
#include "digest_spool.h"
#include "leader.h"
#include "leader_checks.h"

namespace duckblock {

// Caller holds mu.
std::optional<Uploader::Job> Uploader::next_job() {
  for (auto& [name, db] : leader_.dbs) {
    if (db->stopped() || db->deferred_check) continue;
    // Snapshots go up once the store has the incremental of their seq.
    for (auto& [seq, path] : db->spool.snapshots()) {
      if (seq == 0 || (db->st.uploaded_any && seq <= db->st.uploaded_seq)) return Job{db, seq, true, path};
      break;
    }
    auto incr = db->spool.incrementals();
    // An uploaded segment still in the spool: recording its upload failed
    // (record_upload). Sent again, it is found in the store (kSame) and
    // recorded again; until then sync() counts it as pending.
    if (!incr.empty() && db->st.uploaded_any && incr.begin()->first <= db->st.uploaded_seq) {
      return Job{db, incr.begin()->first, false, incr.begin()->second};
    }
    // Only a segment the state already counts (seq <= st.seq): a file
    // just renamed into the spool is not yet, and uploading it then could
    // record uploaded_seq > seq in state.json, which a restart after a
    // crash would read as a store ahead of the spool.
    if (db->st.uploaded_seq + 1 > db->st.seq) continue;
    auto it = incr.find(db->st.uploaded_seq + 1);
    if (it != incr.end()) return Job{db, it->first, false, it->second};
  }
  return std::nullopt;
}

Uploader::Outcome Uploader::upload_one(const std::string& key, const Job& job, uint64_t& size, std::string& error) {
  ObjectStore& store = leader_.store();
  // What is sent is held to what was verified (UploadSource), so the file
  // cannot change in between unnoticed.
  const VerifiedUpload verified = verify_spooled_segment(job.path, job.seq);
  UploadSource src(job.path, verified);
  size = verified.size;
  try {
    store.put_if_absent(key, src);
    return Outcome::kUploaded;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kAlreadyExists) throw;
  }
  ExistingVerdict v = judge_existing_object(store, key, job.path);
  switch (v.what) {
    case ExistingObject::kSame:
      return Outcome::kUploaded;
    case ExistingObject::kForeign:
      error = "fenced: " + key + " was already written by another leader (" + v.detail +
              "); this leader must stop writing " + job.db->name;
      return Outcome::kFenced;
    case ExistingObject::kDamagedOurs: {
      UploadSource again(job.path, verify_spooled_segment(job.path, job.seq));
      store.put(key, again);  // a repair: the object was ours, cut short
      return Outcome::kUploaded;
    }
    case ExistingObject::kDamaged:
      error = "the store's " + key + " is damaged and not provably this leader's (" + v.detail +
              "); nothing more is uploaded for " + job.db->name +
              ". `duckblock verify` lists the damage; remove the object if it is garbage and push again";
      return Outcome::kDamaged;
  }
  return Outcome::kUploaded;
}

void Uploader::check_against_store(const std::string& name, const StoreCheck& c, const std::string& dir) {
  ObjectStore& store = leader_.store();
  const std::string& prefix = leader_.options().prefix;
  ChainListing chain = list_chain(store, prefix, name);
  uint64_t head = chain.head_seq();
  if (!chain.empty() && head > c.seq) {
    throw Error(ErrorKind::kFenced, "the store's chain for '" + name + "' has reached seq " + std::to_string(head) +
                                        " but this leader's spool is at " + std::to_string(c.seq) +
                                        ": another leader has written it; use add_continuing after catching up");
  }
  if (c.uploaded_any && (chain.empty() || head < c.uploaded_seq)) {
    throw Error(ErrorKind::kCorruption, "the store has lost segments of '" + name + "': it ends at seq " +
                                            std::to_string(head) + " but seq " + std::to_string(c.uploaded_seq) +
                                            " was uploaded");
  }
  ChainIdentity store_id = read_chain_identity(store, prefix, name);
  if (chain.empty() && !c.uploaded_any) {
    // Nothing uploaded yet; a crash may have come between state.json and
    // the marker, so make sure it is there.
    if (c.convention == 2) write_chain_identity(store, prefix, name, {2, c.lineage, c.base_checksum});
  } else {
    check_store_holds_our_head(store, prefix, name, chain, store_id, c.lineage, c.uploaded_seq,
                               c.checksum_at_uploaded, dir);
  }
}

// One deferred store check (LeaderDb::deferred_check), if any is due.
// Called with `l` held; returns false if there was none.
bool Uploader::run_deferred_check(std::unique_lock<std::mutex>& l) {
  std::shared_ptr<LeaderDb> db;
  for (auto& [name, d] : leader_.dbs) {
    if (d->deferred_check && !d->stopped()) {
      db = d;
      break;
    }
  }
  if (!db) return false;
  auto check = *db->deferred_check;
  db->uploading = true;  // remove() waits for it (the check may write chain.json)
  l.unlock();
  std::optional<Error> err;
  try {
    check_against_store(db->name, check, db->spool.dir());
  } catch (const Error& e) {
    err = e;
  }
  l.lock();
  db->uploading = false;
  if (!err) {
    db->deferred_check.reset();
    db->status.last_error.reset();
    backoff_ = leader_.options().retry_initial;
  } else {
    db->status.last_error = err->kind() == ErrorKind::kRetryable
                                ? "the store could not be reached (" + std::string(err->what()) +
                                      "); segments spool and upload once it answers"
                                : std::string(err->what());
    if (err->kind() == ErrorKind::kFenced) {
      db->status.fenced = true;
    } else if (err->kind() != ErrorKind::kRetryable) {
      db->damaged = true;
      db->damage_kind = err->kind();
    } else {
      // Counted as a failed upload (the uploads wait for it): a caller
      // that gives up after N failed uploads gives up on this too.
      db->status.upload_retries++;
      wait_before_retry(l);
    }
  }
  leader_.done_cv.notify_all();
  return true;
}

// Exponential backoff with jitter, cut short by stop(). Caller holds `l`.
void Uploader::wait_before_retry(std::unique_lock<std::mutex>& l) {
  auto jitter = std::uniform_int_distribution<int64_t>(0, backoff_.count() / 2 + 1)(rng_);
  cv_.wait_for(l, backoff_ + std::chrono::milliseconds(jitter), [&] { return stopping_; });
  backoff_ = std::min(backoff_ * 2, leader_.options().retry_max);
}

// After a successful upload; caller holds mu. state.json records it before
// the spool file goes, so a crash in between uploads it again (kSame).
// Returns false if state.json could not be written: the file stays, and
// next_job() sends it again after a backoff.
bool Uploader::record_upload(LeaderDb& db, const Job& job, uint64_t size) {
  backoff_ = leader_.options().retry_initial;
  db.status.last_error.reset();
  db.status.bytes_shipped += size;
  db.status.segments_shipped++;
  db.status.last_upload_ms = wall_clock_ms();
  if (job.snapshot) {
    db.status.last_snapshot_seq = std::max(db.status.last_snapshot_seq, job.seq);
  } else {
    db.st.uploaded_seq = job.seq;
  }
  db.st.uploaded_any = true;
  try {
    db.spool.save_state(db.st);
    db.spool.remove_segment(job.path);
    if (!job.snapshot || job.seq == 0) unspool_digest(db.spool.incremental_dir(), job.seq);
  } catch (const Error& e) {
    db.status.last_error = "uploaded " + job.path + " but could not record it: " + e.what();
    return false;
  }
  if (db.log) db.log->kick();
  return true;
}

// After segment `seq` is in the store: its digest (seq 0's comes with the
// snapshot, the others with the incremental). A failure retries the upload,
// which finds the segment there (kSame) and publishes again.
void Uploader::publish_digest_of(const LeaderDb& db, const Job& job) {
  if (job.snapshot && job.seq != 0) return;
  publish_spooled_digest(leader_.store(), leader_.options().prefix, db.name, db.spool.incremental_dir(), job.seq);
}

void Uploader::loop() {
  backoff_ = leader_.options().retry_initial;
  std::unique_lock l(leader_.mu);
  while (!stopping_) {
    if (run_deferred_check(l)) continue;
    auto job = next_job();
    if (!job) {
      cv_.wait_for(l, std::chrono::seconds(1));
      continue;
    }
    LeaderDb& db = *job->db;
    db.uploading = true;
    l.unlock();
    std::string key = format_key(leader_.options().prefix,
                                 {db.name, job->snapshot ? kSnapshotGeneration : kIncrementalGeneration, job->seq});
    std::string error;
    Outcome outcome;
    uint64_t size = 0;
    try {
      outcome = upload_one(key, *job, size, error);
      if (outcome == Outcome::kUploaded) publish_digest_of(db, *job);
    } catch (const Error& e) {
      error = e.what();
      outcome = e.kind() == ErrorKind::kCorruption ? Outcome::kDamaged : Outcome::kFailed;
    }
    l.lock();
    db.uploading = false;
    switch (outcome) {
      case Outcome::kUploaded:
        if (!record_upload(db, *job, size)) {
          db.status.upload_retries++;
          leader_.done_cv.notify_all();
          wait_before_retry(l);
        }
        break;
      case Outcome::kFenced:
      case Outcome::kDamaged:
        (outcome == Outcome::kFenced ? db.status.fenced : db.damaged) = true;
        db.status.last_error = error;
        break;
      case Outcome::kFailed:
        db.status.upload_retries++;
        db.status.last_error = error;
        leader_.done_cv.notify_all();
        wait_before_retry(l);
        break;
    }
    leader_.done_cv.notify_all();
  }
}

}  // namespace duckblock
