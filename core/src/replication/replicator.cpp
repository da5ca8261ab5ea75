// The leader's push path and the Replicator's public calls. The parts it is
// made of, and what each owns, are listed in leader.h; the spool's layout in
// spool.h. A push makes only its segment durable (data fsync, rename,
// directory fsync): that is all a DuckDB checkpoint waits for. The rest is
// derived at the next add(): the head from state.json plus the spooled
// segments after it (a segment is removed only after state.json records its
// upload, so state.json covers every removed one), and the index by
// replaying the segments after the index's own seq, from the spool or else
// the store.
#include "duckblock/replicator.h"

#include <unistd.h>

#include <filesystem>

#include "duckblock/chain.h"
#include "duckblock/clean_close.h"
#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "leader.h"

namespace duckblock {

namespace {

PageSource pages_from_file(PageReader& reader, uint32_t ps, uint64_t length, const std::vector<uint64_t>& ids) {
  return [&reader, ps, length, &ids](const PageVisitor& visit) { read_pages(reader, ps, length, ids, visit); };
}

// Every page of the file, without a list of them: memory stays flat
// whatever its size.
PageSource all_pages_of(PageReader& reader, uint32_t ps, uint64_t length) {
  return [&reader, ps, length](const PageVisitor& visit) { read_all_pages(reader, ps, length, visit); };
}

// Size of the segment Spool::write makes of these pages: known before it is
// written, so a push can report it while the spooler still works.
uint64_t encoded_size(size_t pages, uint64_t page_bytes, bool with_length) {
  return kHeaderSize + pages * 12 + page_bytes + (with_length ? 12 + 8 : 0) + kTrailerSize;
}

// A grown file whose last page ships ends where that page ends: pages alone
// express its length. A shrink, or a growth whose last page did not change
// (it cannot, but the check costs nothing), needs the record.
bool needs_length_record(const PageIndex::Diff& diff, uint64_t old_length, uint32_t ps) {
  if (diff.file_length == old_length) return false;
  if (diff.file_length < old_length) return true;
  return diff.changed.empty() || diff.changed.back() != (diff.file_length - 1) / ps;
}

}  // namespace

void LeaderDb::throw_if_stopped() const {
  if (status.fenced) throw Error(ErrorKind::kFenced, *status.last_error);
  if (damaged) throw Error(damage_kind, *status.last_error);
}

void LeaderThread::start() {
  thread_ = std::thread([this] { loop(); });
}

void LeaderThread::stop() {
  {
    std::lock_guard l(leader_.mu);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t Leader::now() const { return options_.now_ms ? options_.now_ms() : wall_clock_ms(); }

uint64_t Leader::pending(const LeaderDb& db) const {
  return db.queued + db.spool.pending().segments + db.compact_queue.size();
}

ReplicationStatus Leader::status_of(const LeaderDb& db) const {
  ReplicationStatus s = db.status;
  s.spooled_seq = db.st.seq;
  s.uploaded_seq = db.st.uploaded_seq;
  s.pending_segments = pending(db);
  return s;
}

std::shared_ptr<LeaderDb> Leader::find(const std::string& name) const {
  std::lock_guard l(mu);
  auto it = dbs.find(name);
  if (it == dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + name + "' is not added");
  return it->second;
}

StoreCheck Leader::store_check_of(const LeaderDb& db) const {
  StoreCheck c;
  c.seq = db.st.seq;
  c.uploaded_seq = db.st.uploaded_seq;
  c.uploaded_any = db.st.uploaded_any;
  c.convention = db.st.convention;
  c.lineage = db.st.lineage;
  c.base_checksum = db.st.base_checksum;
  c.checksum_at_uploaded = db.spool.checksum_at(db.st, db.st.uploaded_seq);
  return c;
}

uint64_t Leader::spool_first_snapshot(LeaderDb& db, PageReader& reader) {
  const uint32_t ps = options_.page_size;
  const uint64_t length = reader.file_size();
  SegmentPlan plan;
  plan.snapshot = true;
  plan.seq = db.st.seq;
  plan.prev_checksum = db.st.checksum;
  plan.created_ms = now();
  plan.page_count = (length + ps - 1) / ps;
  plan.source = all_pages_of(reader, ps, length);
  plan.file_length = length;
  // A snapshot carries no file-length record: it is applied to an empty
  // file, and its last page (short if the file is) ends where the file
  // does, so a v1-only applier applies it too.
  return db.spool.write(plan, options_.compression).checksum;
}

PushResult Leader::push(LeaderDb& db, PageReader& reader, const std::vector<uint64_t>* candidates) {
  std::lock_guard push_lock(db.push_mu);
  PushResult r = push_locked(db, reader, candidates);
  // Log bytes queued on an older head are in this checkpoint now.
  if (r.seq != 0 && db.log) db.log->supersede(r.seq);
  return r;
}

void Leader::start_log(const std::shared_ptr<LeaderDb>& db) {
  LogShipper::Options o;
  o.prefix = options_.prefix;
  o.db = db->name;
  o.mode = options_.log_sync_mode;
  o.interval = options_.log_interval;
  o.retry_initial = options_.retry_initial;
  o.retry_max = options_.retry_max;
  o.now_ms = options_.now_ms;
  std::weak_ptr<LeaderDb> weak = db;
  o.base_state = [this, weak](uint64_t base) {
    LogShipper::BaseState b;
    auto d = weak.lock();
    if (!d) return b;
    std::lock_guard l(mu);
    if (d->st.seq > base || d->assigned_seq > base) {
      b.superseded = true;
    } else if (d->st.seq == base && d->st.uploaded_any && d->st.uploaded_seq >= base && !d->deferred_check) {
      b.stored = true;
      b.checksum = d->st.checksum;
    }
    return b;
  };
  db->log = std::make_unique<LogShipper>(store_, std::move(o));
}

// Holds db.push_mu across the push and the snapshot, so no other push can
// change the head between them: the snapshot is the state at that seq.
SnapshotResult Leader::snapshot_now(LeaderDb& db, PageReader& reader) {
  std::lock_guard push_lock(db.push_mu);
  SnapshotResult r;
  r.incremental = push_locked(db, reader, nullptr);
  wait_spooled(db);
  std::unique_lock l(mu);
  if (db.resync_needed) throw Error(db.resync_kind, db.status.last_error.value_or("spooling failed"));
  r.seq = db.st.seq;
  if (r.incremental.seq != 0 && db.log) db.log->supersede(r.incremental.seq);
  if (r.incremental.snapshot || db.st.snapshot_base_seq == db.st.seq) return r;
  SegmentPlan plan;
  plan.snapshot = true;
  plan.seq = r.seq;
  plan.prev_checksum = db.st.checksum;
  l.unlock();
  const uint32_t ps = options_.page_size;
  const uint64_t length = reader.file_size();
  plan.created_ms = now();
  plan.page_count = (length + ps - 1) / ps;
  plan.source = all_pages_of(reader, ps, length);
  plan.file_length = length;
  uint64_t size = db.spool.write(plan, options_.compression).size;
  l.lock();
  db.st.snapshot_base_seq = r.seq;
  db.st.segments_since_snapshot = 0;
  db.st.bytes_since_snapshot = 0;
  db.spool.save_state(db.st);
  r.created = true;
  r.encoded_bytes = size;
  uploader.wake();
  return r;
}

// At a commit point: finds the changed pages (hashing them) and hands them
// on. Normally they are copied into memory and the spooler thread encodes,
// writes and fsyncs the segment, so the checkpoint waits only for the diff.
// The push writes the segment itself when the pages would exceed
// options.background_spool_bytes. A snapshot that is due is not read from
// the file here: the compactor builds it from the chain (schedule_snapshot).
// (Over 80 lines: the background and foreground paths share the seq
// assignment and the back-pressure wait under one hold of mu; split into
// functions, the lock would have to be handed between them.)
PushResult Leader::push_locked(LeaderDb& db, PageReader& reader, const std::vector<uint64_t>* candidates) {
  const uint32_t ps = options_.page_size;
  {
    std::lock_guard l(mu);
    db.throw_if_stopped();
  }
  if (resync_if_needed(db)) candidates = nullptr;
  const uint64_t limit = options_.background_spool_bytes;
  uint64_t candidate_bytes = (candidates ? candidates->size() : reader.file_size() / ps + 1) * uint64_t{ps};
  bool background = limit > 0 && candidate_bytes <= limit;
  auto diff = db.index.diff(reader, candidates, background);
  if (diff.changed.empty() && !diff.length_changed) return PushResult{};
  // Only a length the pages cannot express takes the length record, so a
  // v1-only applier applies every segment that does not shrink the file.
  diff.length_changed = needs_length_record(diff, db.index.file_length(), ps);
  uint64_t data_bytes = 0;
  for (uint64_t id : diff.changed) data_bytes += std::min<uint64_t>(ps, diff.file_length - id * ps);
  PushResult result;
  result.pages = diff.changed.size();
  result.data_bytes = data_bytes;
  result.encoded_bytes = encoded_size(diff.changed.size(), data_bytes, diff.length_changed);
  const auto& pol = options_.snapshots;

  std::unique_lock l(mu);
  const bool snapshot_due =
      (pol.every_segments && db.st.segments_since_snapshot + 1 >= pol.every_segments) ||
      (pol.every_bytes && db.st.bytes_since_snapshot + result.encoded_bytes >= pol.every_bytes);
  // Bounded memory: a background push waits while the queue is full; a
  // foreground one for the queue to empty (its segment comes after them).
  done_cv.wait(l, [&] { return db.queued == 0 || (background && db.queued_bytes + data_bytes <= limit); });
  if (db.resync_needed) {
    throw Error(db.resync_kind, "an earlier checkpoint of '" + db.name + "' could not be spooled (" +
                                    db.status.last_error.value_or("") +
                                    "); the next checkpoint ships everything that differs");
  }
  const uint64_t seq = db.assigned_seq + 1;
  result.seq = seq;
  result.snapshot = snapshot_due;
  if (background) {
    db.assigned_seq = seq;
    db.queued++;
    db.queued_bytes += data_bytes;
    count_toward_snapshot(db, seq, snapshot_due, result.encoded_bytes);
    std::vector<uint64_t> ids = diff.changed;
    SpoolJob job{db.shared_from_this(), seq, diff.file_length, diff.length_changed, std::move(ids),
                 std::move(diff.data), now()};
    l.unlock();
    // The index and the digest of seq before the spooler can hand the
    // segment to the uploader, which publishes the digest after it. The job
    // is queued whatever happens (db.queued counts it).
    try {
      record_shipped(db, diff);
      spool_digest_of(db, seq, false);  // the spooler syncs it before the segment
    } catch (...) {
      l.lock();
      spooler.enqueue(std::move(job));
      throw;
    }
    l.lock();
    spooler.enqueue(std::move(job));
    return result;
  }
  SegmentPlan plan;
  plan.seq = seq;
  plan.prev_checksum = db.st.checksum;
  l.unlock();
  plan.created_ms = now();
  plan.page_count = diff.changed.size();
  plan.source = pages_from_file(reader, ps, diff.file_length, diff.changed);
  plan.file_length = diff.file_length;
  plan.with_length = diff.length_changed;
  WrittenSegment written = db.spool.write(plan, options_.compression);
  result.encoded_bytes = written.size;
  // Durable now: the index takes its pages, and its digest is spooled,
  // before the uploader can see the segment.
  record_shipped(db, diff);
  spool_digest_of(db, seq, true);
  l.lock();
  db.assigned_seq = db.st.seq = seq;
  db.st.checksum = written.checksum;
  count_toward_snapshot(db, seq, snapshot_due, written.size);
  uploader.wake();
  l.unlock();
  save_index_if_due(db);
  return result;
}

// The SnapshotPolicy counters after incremental `seq` of `size` bytes, or
// the snapshot due at it, which starts a new count. Caller holds mu.
void Leader::count_toward_snapshot(LeaderDb& db, uint64_t seq, bool snapshot_due, uint64_t size) {
  if (snapshot_due) {
    schedule_snapshot(db, seq);
    return;
  }
  db.st.segments_since_snapshot++;
  db.st.bytes_since_snapshot += size;
}

// Due snapshots are queued in order; the compactor builds each from the one
// before, or only the newest of those due when it is behind
// (SnapshotPolicy::coalesce). Caller holds mu.
void Leader::schedule_snapshot(LeaderDb& db, uint64_t seq) {
  db.st.snapshot_base_seq = seq;
  db.st.segments_since_snapshot = 0;
  db.st.bytes_since_snapshot = 0;
  db.compact_queue.push_back(seq);
  db.compact_retry_at = {};
  compactor.wake();
}

// Waits until the spooler has written every queued segment of `db`.
void Leader::wait_spooled(LeaderDb& db) {
  std::unique_lock l(mu);
  done_cv.wait(l, [&] { return db.queued == 0; });
}

struct Replicator::Impl : Leader {
  using Leader::Leader;
};

namespace {

// A LeaderDb for `name`, its spool locked, not yet registered.
std::shared_ptr<LeaderDb> open_db(Leader& leader, const std::string& name, PageReader& reader) {
  validate_db_name(name);
  {
    std::lock_guard l(leader.mu);
    if (leader.dbs.count(name)) throw Error(ErrorKind::kInvalidArgument, "database '" + name + "' is already added");
  }
  auto db = std::make_shared<LeaderDb>(name, leader.options());
  db->status.db = name;
  db->spool.open(reader.file_mode());
  return db;
}

// add() with a spool: the head is state.json plus the segments spooled
// after it; checked against the store now, or by the uploader before it
// uploads anything (spool_first, or the store unreachable). Returns whether
// the clean-close record `clean` proves the file is the head.
bool resume_from_spool(Leader& leader, LeaderDb& db, const SpoolState& st, const std::optional<CleanClose>& clean,
                       PageReader& reader) {
  db.st = st;
  db.spool.adopt(db.st);
  db.spool.check_state(db.st);
  StoreCheck check = leader.store_check_of(db);
  if (leader.options().spool_first) {
    db.deferred_check = check;
  } else {
    try {
      leader.uploader.check_against_store(db.name, check, db.spool.dir());
    } catch (const Error& e) {
      // With a spool, the state to continue from is local: an unreachable
      // store (retries exhausted) must not keep the database from opening.
      if (e.kind() != ErrorKind::kRetryable) throw;
      db.deferred_check = check;
    }
  }
  db.index = leader.load_index(db);
  // A snapshot scheduled before a crash or a stop and not made yet (the
  // compactor skips it if the store has it: add() lists nothing).
  if (db.st.snapshot_base_seq > 0 && db.st.snapshot_base_seq <= db.st.seq &&
      !db.spool.snapshots().count(db.st.snapshot_base_seq)) {
    db.compact_queue.push_back(db.st.snapshot_base_seq);
  }
  return leader.clean_close_holds(db, clean, reader);
}

// add() of a database the store does not have: the file is the snapshot at
// seq 0 of a new chain (convention 2: incremental 1 chains from its
// checksum).
void start_new_chain(Leader& leader, LeaderDb& db, PageReader& reader) {
  for (auto& [seq, path] : db.spool.snapshots()) db.spool.remove_segment(path);
  db.st = SpoolState{};
  db.st.convention = 2;
  db.st.lineage = new_lineage();
  db.st.checksum = db.st.base_checksum = leader.spool_first_snapshot(db, reader);
  db.index = leader.fresh_index(db);
  db.index.update_all(reader);
  db.index.set_position(db.st.seq, db.st.checksum);
  leader.spool_digest_of(db, 0, true);
  db.spool.save_state(db.st);
  leader.save_index(db, true);
  // Before anything of the chain is uploaded (the uploader starts on it only
  // once add() returns).
  write_chain_identity(leader.store(), leader.options().prefix, db.name, {2, db.st.lineage, db.st.base_checksum});
}

// The shipped state at `position` of the store's chain, with the index
// built from `reader` (the file at that position).
void adopt_store_position(Leader& leader, LeaderDb& db, const ChainListing& chain, const ChainPosition& position,
                          PageReader& reader) {
  ChainIdentity store_id = read_chain_identity(leader.store(), leader.options().prefix, db.name);
  db.st = SpoolState{};
  db.st.seq = db.st.uploaded_seq = position.seq;
  db.st.checksum = position.checksum;
  db.st.uploaded_any = true;
  db.st.snapshot_base_seq = chain.snapshots.empty() ? 0 : chain.snapshots.back().seq;
  db.st.lineage = store_id.lineage;
  db.st.convention = store_id.convention;
  db.st.base_checksum = store_id.base_checksum;
  db.index = leader.fresh_index(db);
  db.index.update_all(reader);
  db.index.set_position(position.seq, position.checksum);
  db.spool.save_state(db.st);
  leader.save_index(db, true);
}

// add() without a spool of a database the store has: the shipped state is
// rebuilt from the store (restored to a scratch file in the spool); the
// file's differences from it then ship as the next segment.
void rebuild_from_store(Leader& leader, LeaderDb& db, const ChainListing& chain) {
  std::string base = db.spool.base_restore_path();
  RestoreOptions ro;
  ro.prefix = leader.options().prefix;
  RestoreResult r = restore(leader.store(), db.name, base, {}, ro);
  {
    FilePageReader base_reader(base);
    adopt_store_position(leader, db, chain, r.position, base_reader);
  }
  ::unlink(base.c_str());
  ::unlink((base + ".duckblock").c_str());
}

// Caller has set assigned_seq (before any push it made: a push queued at
// add() is ahead of st.seq until spooled).
void register_db(Leader& leader, const std::shared_ptr<LeaderDb>& db) {
  leader.start_log(db);
  std::lock_guard l(leader.mu);
  leader.dbs[db->name] = db;
  leader.uploader.wake();
  leader.compactor.wake();
}

}  // namespace

namespace {

// A spool that is a local store's directory (with the prefix) keeps its
// segments in the store's own {db}/0000 and {db}/0001: its cleanup of
// uploaded segments deleted the whole chain. (A spool elsewhere inside the
// store's directory shares no path with an object, and is the default when
// the store is the database's own directory.)
void refuse_spool_in_local_store_layout(ObjectStore& store, const std::string& prefix, const std::string& spool_dir) {
  const std::string url = store.url();
  if (url.rfind("file://", 0) != 0) return;
  auto dir = [](const std::filesystem::path& p, std::error_code& ec) {
    auto c = std::filesystem::weakly_canonical(p, ec);
    return c.has_filename() ? c : c.parent_path();  // "/a/b/" is "/a/b"
  };
  std::error_code ec1, ec2;
  const auto objects = dir(std::filesystem::path(url.substr(7)) / prefix, ec1);
  const auto spool = dir(spool_dir, ec2);
  if (ec1 || ec2 || objects != spool) return;
  throw Error(ErrorKind::kInvalidArgument, "the spool directory " + spool.string() + " is where the store " + url +
                                               " keeps its objects: the spool's cleanup would delete the store's "
                                               "segments. Give a spool outside the store");
}

}  // namespace

Replicator::Replicator(std::shared_ptr<ObjectStore> store, ReplicatorOptions options)
    : store_(std::move(store)), options_(std::move(options)) {
  if (options_.spool_dir.empty()) throw Error(ErrorKind::kInvalidArgument, "a spool directory is required");
  if (options_.page_size == 0 || options_.page_size > kMaxPageSize) {
    throw Error(ErrorKind::kInvalidArgument, "bad page size");
  }
  if (options_.compression < 0 || options_.compression > kMaxCompressionLevel) {
    throw Error(ErrorKind::kInvalidArgument, "compression level " + std::to_string(options_.compression) +
                                                 " out of range (0 for plain hadbp v1, 1.." +
                                                 std::to_string(kMaxCompressionLevel) + " for zstd)");
  }
  refuse_spool_in_local_store_layout(*store_, options_.prefix, options_.spool_dir);
  make_directories(options_.spool_dir);
  impl_ = std::make_unique<Impl>(store_, options_);
  impl_->uploader.start();
  impl_->spooler.start();
  impl_->compactor.start();
}

Replicator::~Replicator() {
  impl_->compactor.stop();
  for (auto& [name, db] : impl_->dbs) db->log.reset();
  impl_->spooler.stop();  // it writes what is queued, then stops
  impl_->uploader.stop();
  for (auto& [name, db] : impl_->dbs) impl_->save_index_quietly(*db);
}

void Replicator::add(const std::string& db_name, PageReader& reader) {
  auto db = open_db(*impl_, db_name, reader);
  // Consumed by every add(), whatever follows: once the file may change, a
  // crash must not leave a record vouching for it.
  std::optional<CleanClose> clean = take_clean_close(db->spool.dir());
  bool proven = false;
  if (auto st = db->spool.load_state()) {
    proven = resume_from_spool(*impl_, *db, *st, clean, reader);
  } else {
    ChainListing chain = list_chain(*store_, options_.prefix, db_name);
    if (chain.empty()) {
      start_new_chain(*impl_, *db, reader);
    } else {
      rebuild_from_store(*impl_, *db, chain);
    }
  }
  db->assigned_seq = db->st.seq;
  db->status.last_snapshot_seq = db->st.snapshot_base_seq;
  // Whatever the file holds beyond the shipped state (a checkpoint that
  // committed before a crash could spool it) ships now, unless a clean close
  // proved the file unchanged since the head.
  db->status.full_compare_at_add = !proven;
  if (!proven) impl_->push(*db, reader, nullptr);
  register_db(*impl_, db);
}

void Replicator::add_continuing(const std::string& db_name, PageReader& reader, const ChainPosition& position) {
  validate_db_name(db_name);
  ChainListing chain = list_chain(*store_, options_.prefix, db_name);
  if (chain.head_seq() != position.seq) {
    throw Error(ErrorKind::kChainBroken, "cannot continue '" + db_name + "' from seq " + std::to_string(position.seq) +
                                             ": the store's head is seq " + std::to_string(chain.head_seq()) +
                                             " (catch up first)");
  }
  auto db = open_db(*impl_, db_name, reader);
  // A spool left from an earlier term as leader is stale: the chain moved on.
  drop_clean_close(db->spool.dir());  // it vouched for the old term's head
  db->spool.remove_all_segments();
  adopt_store_position(*impl_, *db, chain, position, reader);
  db->assigned_seq = db->st.seq;
  db->status.last_snapshot_seq = db->st.snapshot_base_seq;
  register_db(*impl_, db);
}

PushResult Replicator::push_checkpoint(const std::string& db_name, PageReader& reader,
                                       const std::vector<uint64_t>* candidates) {
  auto db = impl_->find(db_name);
  impl_->forget_clean_close(*db);
  return impl_->push(*db, reader, candidates);
}

SnapshotResult Replicator::snapshot_now(const std::string& db_name, PageReader& reader) {
  return impl_->snapshot_now(*impl_->find(db_name), reader);
}

void Replicator::sync(const std::string& db_name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sync_segments(db_name, timeout);
  // Then the log: its bytes go up only after the checkpoint they are based
  // on, which is in the store now.
  std::vector<std::shared_ptr<LeaderDb>> dbs;
  {
    std::lock_guard l(impl_->mu);
    for (auto& [name, db] : impl_->dbs) {
      if (db_name.empty() || name == db_name) dbs.push_back(db);
    }
  }
  for (auto& db : dbs) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (db->log) db->log->drain(std::max(left, std::chrono::milliseconds(1)));
  }
}

uint64_t Replicator::push_log(const std::string& db_name, uint64_t offset, std::vector<uint8_t> bytes) {
  auto db = impl_->find(db_name);
  uint64_t base;
  {
    std::lock_guard l(impl_->mu);
    if (db->status.fenced) throw Error(ErrorKind::kFenced, *db->status.last_error);
    base = db->assigned_seq;
  }
  DUCKBLOCK_ASSERT(db->log);
  return db->log->push(base, offset, std::move(bytes));
}

void Replicator::wait_log(const std::string& db_name, uint64_t ticket, std::chrono::milliseconds timeout) {
  auto db = impl_->find(db_name);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (db->log->wait(ticket, timeout)) return;
  // Folded into a checkpoint before it went up: that checkpoint's segment
  // carries the commit.
  sync_segments(db_name, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
}

void Replicator::sync_segments(const std::string& db_name, std::chrono::milliseconds timeout) {
  std::unique_lock l(impl_->mu);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool done = true;
    for (auto& [name, db] : impl_->dbs) {
      if (!db_name.empty() && name != db_name) continue;
      db->throw_if_stopped();
      if (db->resync_needed) {
        throw Error(db->resync_kind, *db->status.last_error + " (the next checkpoint ships everything that differs)");
      }
      if (impl_->pending(*db) > 0 || db->deferred_check) done = false;
    }
    if (!db_name.empty() && !impl_->dbs.count(db_name)) {
      throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    }
    if (done) return;
    if (impl_->done_cv.wait_until(l, deadline) == std::cv_status::timeout) {
      std::string why;
      for (auto& [name, db] : impl_->dbs) {
        if (db->status.last_error) why += " " + name + ": " + *db->status.last_error;
      }
      throw Error(ErrorKind::kRetryable,
                  "sync timed out with segments still pending;" + (why.empty() ? std::string(" no error recorded") : why));
    }
  }
}

bool Replicator::record_clean_close(const std::string& db_name, PageReader& reader) {
  return impl_->record_clean_close(*impl_->find(db_name), reader);
}

void Replicator::remove(const std::string& db_name) {
  std::shared_ptr<LeaderDb> db;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) return;
    db = it->second;
    db->active = false;
    impl_->dbs.erase(it);
  }
  {
    // An upload in flight finishes first: it records its result in the
    // spool, which a later add() of the same database reads.
    std::unique_lock l(impl_->mu);
    impl_->done_cv.wait(l, [&] { return !db->uploading && !db->compacting; });
  }
  db->log.reset();
  impl_->save_index_quietly(*db);
  db->spool.close();  // a later add(), here or in another process, may take the lock
}

ChainPosition Replicator::pull(const std::string& db_name, const std::string& path) {
  Replica replica(path);
  catch_up(*store_, options_.prefix, db_name, replica);
  return replica.position();
}

ReplicationStatus Replicator::status(const std::string& db_name) const {
  auto db = impl_->find(db_name);
  std::lock_guard l(impl_->mu);
  ReplicationStatus s = impl_->status_of(*db);
  if (db->log) db->log->fill_status(s);
  return s;
}

std::vector<std::string> Replicator::databases() const {
  std::lock_guard l(impl_->mu);
  std::vector<std::string> out;
  for (auto& [name, db] : impl_->dbs) out.push_back(name);
  return out;
}

}  // namespace duckblock
