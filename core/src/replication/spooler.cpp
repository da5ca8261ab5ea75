// The spooler thread: writes queued pushes into the spool, in order,
// durably; the uploader takes them from there. A failure drops the
// database's later queued segments too (they would not chain) and flags it
// for a resync, keeping the failure's kind for the push that reports it.
#include "digest_spool.h"
#include "leader.h"

namespace duckblock {

namespace {

// Pages copied by PageIndex::diff(keep_data): page i at i * ps.
PageSource pages_from_memory(uint32_t ps, const std::vector<uint64_t>& ids, const std::vector<uint8_t>& data) {
  return [ps, &ids, &data](const PageVisitor& visit) {
    for (size_t i = 0; i < ids.size(); ++i) {
      uint64_t off = uint64_t{i} * ps;
      visit(ids[i], data.data() + off, static_cast<size_t>(std::min<uint64_t>(ps, data.size() - off)));
    }
  };
}

}  // namespace

void Spooler::enqueue(SpoolJob job) {
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

// Called with `l` held; returns with it held.
void Spooler::write_one(SpoolJob& job, std::unique_lock<std::mutex>& l) {
  LeaderDb& db = *job.db;
  SegmentPlan plan;
  plan.seq = job.seq;
  plan.prev_checksum = db.st.checksum;
  plan.created_ms = job.created_ms;
  plan.page_count = job.ids.size();
  plan.source = pages_from_memory(leader_.options().page_size, job.ids, job.data);
  plan.file_length = job.length;
  plan.with_length = job.with_length;
  l.unlock();
  std::optional<Error> error;
  WrittenSegment written;
  try {
    // The push spooled the digest of job.seq unsynced; it must be durable
    // no later than the segment (digest_spool.h).
    sync_spooled_digest(db.spool.incremental_dir(), job.seq, *db.spool.env());
    written = db.spool.write(plan, leader_.options().compression);
  } catch (const Error& e) {
    error = e;
  } catch (const std::exception& e) {
    error = Error(ErrorKind::kIO, e.what());
  }
  l.lock();
  if (error) {
    db.resync_needed = true;
    db.resync_kind = error->kind();
    db.status.last_error = "spooling seq " + std::to_string(job.seq) + " of '" + db.name + "' failed: " + error->what();
    return;
  }
  DUCKBLOCK_ASSERT(job.seq == db.st.seq + 1);  // the spool's head moves one seq at a time
  db.st.seq = job.seq;
  db.st.checksum = written.checksum;
  leader_.uploader.wake();
  leader_.compactor.wake();
}

void Spooler::loop() {
  std::unique_lock l(leader_.mu);
  for (;;) {
    cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is written
    SpoolJob job = std::move(queue_.front());
    queue_.pop_front();
    LeaderDb& db = *job.db;
    if (!db.resync_needed) write_one(job, l);
    db.queued--;
    db.queued_bytes -= job.data.size();
    leader_.done_cv.notify_all();
    if (db.queued == 0 && !db.resync_needed) {
      // Caught up: the in-memory index is the spool's head; save it now
      // and then (a push holding push_mu saves it itself instead).
      l.unlock();
      if (db.push_mu.try_lock()) {
        std::lock_guard push_lock(db.push_mu, std::adopt_lock);
        leader_.save_index_if_due(db);
      }
      l.lock();
    }
  }
}

}  // namespace duckblock
