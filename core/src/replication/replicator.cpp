// Leader side. Layout of the spool, per database (under options.spool_dir/db):
//   state.json        head seq and chain checksum, last uploaded seq, snapshot
//                     counters; written durably by the uploader after each
//                     upload (and at add), so it may lag the spool
//   pages.idx         PageIndex on disk (page_index.h): its header names a seq
//                     <= the head, written every few pushes after its
//                     blocks are synced
//   clean.json        proof that the file is the head, from a clean close
//                     (clean_close.h); consumed by the next add()
//   0000/<seq>.hadbp  incrementals waiting for upload
//   0000/<seq>.digest the whole-file digest after seq, published by the
//                     uploader after the segment (digest_spool.h)
//   0001/<seq>.hadbp  snapshots waiting for upload (after seq 0, built by the
//                     compactor thread from the spool and the store, never
//                     from the live file on the checkpoint path; compact.h)
// A push makes only its segment durable (data fsync, rename, directory
// fsync): that is all a DuckDB checkpoint waits for. The rest is derived at
// the next add(): the head from state.json plus the spooled segments after
// it (a segment is removed only after state.json records its upload, so
// state.json covers every removed one), and the index by replaying the
// segments after the index's own seq, from the spool or else the store.
#include "duckblock/replicator.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "duckblock/chain.h"
#include "duckblock/clean_close.h"
#include "duckblock/compact.h"
#include "duckblock/error.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "digest_spool.h"
#include "leader_checks.h"
#include "log_shipper.h"
#include "spool_lock.h"

namespace duckblock {

namespace {

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void make_dirs(const std::string& dir) {
  if (dir.empty() || ::access(dir.c_str(), F_OK) == 0) return;
  make_dirs(dirname_of(dir));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("cannot create directory " + dir);
}

// Spool files copy the database's pages, so they take its file's mode (0600
// when it is unknown), and the database's spool directory the matching
// directory mode (0600 -> 0700, 0640 -> 0750).
template <typename DbT>
uint32_t spool_file_mode(const DbT& db, PageReader& reader) {
  uint32_t mode = reader.file_mode().value_or(0600) & 0666;
  uint32_t dir_mode = 0700 | ((mode & 0040) ? 0050 : 0) | ((mode & 0004) ? 0005 : 0);
  ::chmod(db.dir.c_str(), dir_mode);
  return mode;
}

std::string seq_name(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx.hadbp", static_cast<unsigned long long>(seq));
  return buf;
}

// Spool files of one generation, by seq. With `cleanup`, also deletes temp
// files a crashed push left (only safe before the database is registered:
// afterwards a push may be writing one).
std::map<uint64_t, std::string> spool_files(const std::string& dir, bool cleanup = false) {
  std::map<uint64_t, std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() == 22 && name.substr(16) == ".hadbp" &&
        name.find_first_not_of("0123456789abcdef") == 16) {
      out[std::stoull(name.substr(0, 16), nullptr, 16)] = dir + "/" + name;
    } else if (cleanup && name.rfind(".tmp-", 0) == 0) {
      ::unlink((dir + "/" + name).c_str());  // a push that died before its rename
    }
  }
  ::closedir(d);
  return out;
}

struct State {
  uint64_t seq = 0;
  uint64_t checksum = 0;
  uint64_t uploaded_seq = 0;
  bool uploaded_any = false;  // false until the first object reaches the store
  uint64_t last_snapshot_seq = 0;
  uint64_t segments_since_snapshot = 0;
  uint64_t bytes_since_snapshot = 0;
  // The chain's identity (chain.h): "" and convention 1 for a chain (or a
  // spool) from before chain.json.
  std::string lineage;
  int convention = 1;
  uint64_t base_checksum = 0;  // the chain checksum at seq 0
};

}  // namespace

struct Replicator::Impl {
  struct Db : std::enable_shared_from_this<Db> {
    std::string name, dir;
    State st;
    PageIndex index;
    ReplicationStatus status;
    bool active = true;
    uint64_t pushes_since_index_save = 0;
    // Last seq handed out by a push. Ahead of st.seq (the last one written
    // to the spool) while the spooler has segments of this database queued.
    uint64_t assigned_seq = 0;
    uint64_t queued = 0;          // segments queued for the spooler
    uint64_t queued_bytes = 0;    // their page bytes
    bool resync_needed = false;   // a queued segment failed: see push_locked
    bool uploading = false;       // the uploader is working on one of its segments
    // Set when the uploader found damage it must not get round (a damaged
    // spool file, a damaged object at our seq that is not provably ours):
    // nothing more is uploaded and sync()/push report Error(kCorruption).
    bool damaged = false;
    ErrorKind damage_kind = ErrorKind::kCorruption;  // what sync() and pushes report for `damaged`
    // The spool's checks against the store, not made yet (spool_first, or
    // the store unreachable at add()): the uploader makes them before it
    // uploads anything of this database.
    struct StoreCheck {
      uint64_t seq = 0, uploaded_seq = 0, base_checksum = 0;
      bool uploaded_any = false;
      int convention = 1;
      std::string lineage;
      std::optional<uint64_t> checksum_at_uploaded;
    };
    std::optional<StoreCheck> deferred_check;
    std::mutex push_mu;  // one push at a time per database; guards index
    // Commits between checkpoints (push_log); created once the database is
    // registered, destroyed (unsent bytes dropped) when it is removed.
    std::unique_ptr<LogShipper> log;
    std::unique_ptr<SpoolLock> lock;  // one writer process per spool directory
    uint32_t file_mode = 0600;        // the source file's: spool files hold its pages
    // Snapshots due at these seqs, oldest first, wait for the compactor,
    // which builds each once its incremental is spooled (compact_loop).
    std::deque<uint64_t> compact_queue;
    bool compacting = false;
    std::chrono::steady_clock::time_point compact_retry_at{};
    bool clean_recorded = false;      // clean.json vouches for the file (under mu)
    std::string incr_dir() const { return dir + "/0000"; }
    std::string snap_dir() const { return dir + "/0001"; }
  };

  Replicator* self;
  mutable std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::map<std::string, std::shared_ptr<Db>> dbs;
  bool stopping = false;
  std::thread uploader;

  // A checkpoint's changed pages, copied out of the file at the commit
  // point, waiting for the spooler to encode and fsync them.
  struct SpoolJob {
    std::shared_ptr<Db> db;
    uint64_t seq;
    uint64_t length;
    bool with_length;
    std::vector<uint64_t> ids;
    std::vector<uint8_t> data;  // page i at i * page_size
    int64_t created_ms;
  };
  std::deque<SpoolJob> spool_queue;
  std::condition_variable spool_cv;
  bool spooler_stopping = false;
  std::thread spooler;
  std::mt19937_64 rng{std::random_device{}()};
  std::condition_variable compact_cv;
  bool compactor_stopping = false;
  std::thread compactor;

  explicit Impl(Replicator* s) : self(s) {}

  int64_t now() const { return self->options_.now_ms ? self->options_.now_ms() : system_now_ms(); }

  void save_state(Db& db) {
    nlohmann::json j = {{"seq", db.st.seq},
                        {"checksum", checksum_hex(db.st.checksum)},
                        {"uploaded_seq", db.st.uploaded_seq},
                        {"uploaded_any", db.st.uploaded_any},
                        {"last_snapshot_seq", db.st.last_snapshot_seq},
                        {"segments_since_snapshot", db.st.segments_since_snapshot},
                        {"bytes_since_snapshot", db.st.bytes_since_snapshot},
                        {"page_size", self->options_.page_size}};
    if (!db.st.lineage.empty()) {
      j["lineage"] = db.st.lineage;
      j["convention"] = db.st.convention;
      j["base_checksum"] = checksum_hex(db.st.base_checksum);
    }
    std::string text = j.dump(1) + "\n";
    write_file_atomic(db.dir + "/state.json",
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), true,
                      db.file_mode);
  }

  std::optional<State> load_state(const std::string& dir) {
    std::string path = dir + "/state.json";
    if (::access(path.c_str(), F_OK) != 0) return std::nullopt;
    auto bytes = read_file(path);
    try {
      auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
      State st;
      st.seq = j.at("seq");
      st.checksum = parse_checksum_hex(j.at("checksum"));
      st.uploaded_seq = j.at("uploaded_seq");
      st.uploaded_any = j.value("uploaded_any", true);
      st.last_snapshot_seq = j.at("last_snapshot_seq");
      st.segments_since_snapshot = j.at("segments_since_snapshot");
      st.bytes_since_snapshot = j.at("bytes_since_snapshot");
      st.lineage = j.value("lineage", std::string());
      st.convention = j.value("convention", 1);
      if (j.contains("base_checksum")) st.base_checksum = parse_checksum_hex(j.at("base_checksum"));
      if (j.at("page_size").get<uint32_t>() != self->options_.page_size) {
        throw Error(ErrorKind::kInvalidArgument, "spool " + dir + " was written with page size " +
                                                     std::to_string(j.at("page_size").get<uint32_t>()));
      }
      return st;
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::kCorruption, "spool state " + path + " is unreadable: " + e.what() +
                                              " (move the spool directory away to start over from the store)");
    }
  }

  // Calls its argument with (page id, bytes, length) for each page of a
  // segment, in ascending id order.
  using PageVisitor = std::function<void(uint64_t, const uint8_t*, size_t)>;
  using PageSource = std::function<void(const PageVisitor&)>;

  static PageSource pages_from_file(PageReader& reader, uint32_t ps, uint64_t length,
                                    const std::vector<uint64_t>& ids) {
    return [&reader, ps, length, &ids](const PageVisitor& visit) { read_pages(reader, ps, length, ids, visit); };
  }
  // Pages copied by PageIndex::diff(keep_data): page i at i * ps.
  static PageSource pages_from_memory(uint32_t ps, const std::vector<uint64_t>& ids, const std::vector<uint8_t>& data) {
    return [ps, &ids, &data](const PageVisitor& visit) {
      for (size_t i = 0; i < ids.size(); ++i) {
        uint64_t off = uint64_t{i} * ps;
        visit(ids[i], data.data() + off, static_cast<size_t>(std::min<uint64_t>(ps, data.size() - off)));
      }
    };
  }

  // Size of the segment write_segment makes of these pages: known before it
  // is written, so a push can report it while the spooler still works.
  static uint64_t encoded_size(size_t pages, uint64_t page_bytes, bool with_length) {
    return kHeaderSize + pages * 12 + page_bytes + (with_length ? 12 + 8 : 0) + kTrailerSize;
  }

  // Writes a segment of `page_count` pages from `source` (plus the file
  // length record if asked) durably into `dir`/<seq>.hadbp: data fsync,
  // rename, directory fsync. Returns checksum and size.
  std::pair<uint64_t, uint64_t> write_segment(const std::string& dir, uint32_t mode, uint64_t seq, uint64_t prev,
                                              int64_t created_ms,
                                              size_t page_count, const PageSource& source, uint64_t length,
                                              bool with_length) {
    make_dirs(dir);
    std::string tmp = dir + "/.tmp-" + seq_name(seq);
    std::string final_path = dir + "/" + seq_name(seq);
    uint64_t checksum = 0, size = 0;
    try {
      FileSink sink(tmp, mode);
      SegmentHeader h;
      h.page_size = self->options_.page_size;
      h.seq = seq;
      h.prev_checksum = prev;
      h.created_ms = created_ms;
      h.page_count = static_cast<uint32_t>(page_count + (with_length ? 1 : 0));
      const int level = self->options_.compression;
      if (level > 0) h.flags = kFlagCompressed;
      SegmentWriter w(sink, h, level);
      size_t pages_written = 0;
      source([&](uint64_t id, const uint8_t* p, size_t n) {
        w.add_page(id, std::span<const uint8_t>(p, n));
        ++pages_written;
      });
      if (pages_written != page_count) throw Error(ErrorKind::kIO, "file shrank while a checkpoint was being read");
      if (with_length) w.add_page(kFileLengthPageId, encode_file_length(length));
      checksum = w.finish();
      size = w.bytes_written();
      sink.sync();
      sink.close();
      if (::rename(tmp.c_str(), final_path.c_str()) != 0) throw_errno("cannot rename " + tmp);
      fsync_dir(dir);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
    return {checksum, size};
  }

  static std::vector<uint64_t> all_ids(uint64_t length, uint32_t ps) {
    std::vector<uint64_t> ids((length + ps - 1) / ps);
    for (uint64_t i = 0; i < ids.size(); ++i) ids[i] = i;
    return ids;
  }

  // Spools the whole file as the snapshot at the current seq; returns its
  // checksum. A snapshot carries no file-length record: it is applied to an
  // empty file, and its last page (short if the file is) ends where the file
  // does, so a v1-only applier applies it too.
  uint64_t spool_snapshot(Db& db, PageReader& reader) {
    const uint32_t ps = self->options_.page_size;
    const uint64_t length = reader.file_size();
    // No list of the file's pages: memory stays flat whatever its size.
    PageSource all = [&reader, ps, length](const PageVisitor& visit) { read_all_pages(reader, ps, length, visit); };
    uint64_t checksum = write_segment(db.snap_dir(), db.file_mode, db.st.seq, db.st.checksum, now(),
                                      (length + ps - 1) / ps, all, length, false)
                            .first;
    db.st.last_snapshot_seq = db.st.seq;
    db.st.segments_since_snapshot = 0;
    db.st.bytes_since_snapshot = 0;
    return checksum;
  }

  PushResult push(Db& db, PageReader& reader, const std::vector<uint64_t>* candidates) {
    std::lock_guard push_lock(db.push_mu);
    PushResult r = push_locked(db, reader, candidates);
    // Log bytes queued on an older head are in this checkpoint now.
    if (r.seq != 0 && db.log) db.log->supersede(r.seq);
    return r;
  }

  void start_log(const std::shared_ptr<Db>& db) {
    LogShipper::Options o;
    o.prefix = self->options_.prefix;
    o.db = db->name;
    o.mode = self->options_.log_sync_mode;
    o.interval = self->options_.log_interval;
    o.retry_initial = self->options_.retry_initial;
    o.retry_max = self->options_.retry_max;
    o.now_ms = self->options_.now_ms;
    std::weak_ptr<Db> weak = db;
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
    db->log = std::make_unique<LogShipper>(self->store_, std::move(o));
  }

  // Holds db.push_mu across the push and the snapshot, so no other push can
  // change the head between them: the snapshot is the state at that seq.
  SnapshotResult snapshot_now(Db& db, PageReader& reader) {
    std::lock_guard push_lock(db.push_mu);
    SnapshotResult r;
    r.incremental = push_locked(db, reader, nullptr);
    wait_spooled(db);
    std::unique_lock l(mu);
    if (db.resync_needed) throw Error(ErrorKind::kIO, db.status.last_error.value_or("spooling failed"));
    r.seq = db.st.seq;
    if (r.incremental.seq != 0 && db.log) db.log->supersede(r.incremental.seq);
    if (r.incremental.snapshot || db.st.last_snapshot_seq == db.st.seq) return r;
    uint64_t prev = db.st.checksum;
    l.unlock();
    uint64_t length = reader.file_size();
    auto ids = all_ids(length, self->options_.page_size);
    uint64_t size = write_segment(db.snap_dir(), db.file_mode, r.seq, prev, now(), ids.size(),
                                  pages_from_file(reader, self->options_.page_size, length, ids), length, false)
                        .second;
    l.lock();
    db.st.last_snapshot_seq = r.seq;
    db.st.segments_since_snapshot = 0;
    db.st.bytes_since_snapshot = 0;
    save_state(db);
    r.created = true;
    r.encoded_bytes = size;
    l.unlock();
    work_cv.notify_all();
    return r;
  }

  // At a commit point: finds the changed pages (hashing them) and hands
  // them on. Normally they are copied into memory and the spooler thread
  // encodes, writes and fsyncs the segment, so the checkpoint waits only for
  // the diff. The push writes the segment itself when the pages would exceed
  // options.background_spool_bytes. A snapshot that is due is not read from
  // the file here: the compactor builds it from the chain (schedule_snapshot).
  PushResult push_locked(Db& db, PageReader& reader, const std::vector<uint64_t>* candidates) {
    const uint32_t ps = self->options_.page_size;
    {
      std::lock_guard l(mu);
      if (db.status.fenced) throw Error(ErrorKind::kFenced, *db.status.last_error);
      if (db.damaged) throw Error(db.damage_kind, *db.status.last_error);
    }
    if (resync_if_needed(db)) candidates = nullptr;
    const uint64_t limit = self->options_.background_spool_bytes;
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
    const auto& pol = self->options_.snapshots;

    std::unique_lock l(mu);
    bool snapshot_due = (pol.every_segments && db.st.segments_since_snapshot + 1 >= pol.every_segments) ||
                        (pol.every_bytes && db.st.bytes_since_snapshot + result.encoded_bytes >= pol.every_bytes);
    // Bounded memory: a background push waits while the queue is full; a
    // foreground one for the queue to empty (its segment comes after them).
    done_cv.wait(l, [&] { return db.queued == 0 || (background && db.queued_bytes + data_bytes <= limit); });
    if (db.resync_needed) {
      throw Error(ErrorKind::kIO, "an earlier checkpoint of '" + db.name + "' could not be spooled (" +
                                      db.status.last_error.value_or("") +
                                      "); the next checkpoint ships everything that differs");
    }
    const uint64_t seq = db.assigned_seq + 1;
    result.seq = seq;
    if (background) {
      db.assigned_seq = seq;
      db.queued++;
      db.queued_bytes += data_bytes;
      if (snapshot_due) {
        schedule_snapshot(db, seq);
        result.snapshot = true;
      } else {
        db.st.segments_since_snapshot++;
        db.st.bytes_since_snapshot += result.encoded_bytes;
      }
      std::vector<uint64_t> ids = diff.changed;
      SpoolJob job{db.shared_from_this(), seq, diff.file_length, diff.length_changed,
                   std::move(ids), std::move(diff.data), now()};
      // The index and the digest of seq before the spooler can hand the
      // segment to the uploader, which publishes the digest after it.
      l.unlock();
      try {
        record_shipped(db, diff);
        spool_digest_of(db, seq);
      } catch (...) {
        // Queued all the same (it is counted in db.queued), as before.
        l.lock();
        spool_queue.push_back(std::move(job));
        l.unlock();
        spool_cv.notify_all();
        throw;
      }
      l.lock();
      spool_queue.push_back(std::move(job));
      l.unlock();
      spool_cv.notify_all();
      return result;
    }
    const uint64_t prev = db.st.checksum;
    l.unlock();
    auto [checksum, size] =
        write_segment(db.incr_dir(), db.file_mode, seq, prev, now(), diff.changed.size(),
                      pages_from_file(reader, ps, diff.file_length, diff.changed), diff.file_length,
                      diff.length_changed);
    result.encoded_bytes = size;
    result.snapshot = snapshot_due;
    record_shipped(db, diff);
    spool_digest_of(db, seq);
    l.lock();
    db.assigned_seq = db.st.seq = seq;
    db.st.checksum = checksum;
    if (snapshot_due) {
      schedule_snapshot(db, seq);
    } else {
      db.st.segments_since_snapshot++;
      db.st.bytes_since_snapshot += size;
    }
    db.status.spooled_seq = seq;
    l.unlock();
    work_cv.notify_all();
    if (db.pushes_since_index_save >= kIndexSaveEvery) save_index(db, false);
    return result;
  }

  // A snapshot is due at `seq`: the compactor builds it off the checkpoint
  // path once incremental `seq` is spooled. Each due snapshot is made, in
  // order (retention counts on them), each from the one before. Caller holds mu.
  void schedule_snapshot(Db& db, uint64_t seq) {
    db.st.last_snapshot_seq = seq;
    db.st.segments_since_snapshot = 0;
    db.st.bytes_since_snapshot = 0;
    db.compact_queue.push_back(seq);
    db.compact_retry_at = {};
    compact_cv.notify_all();
  }

  // The compactor: builds each scheduled snapshot from the newest snapshot
  // before it and the incrementals after that (from the spool while they are
  // there, else the store), into 0001/<seq>.hadbp through a temp file the
  // next add() removes if a crash leaves it. The uploader takes it from
  // there. A failure is kept in status().compaction_error; a transient one
  // (store, disk) is retried, any other drops this snapshot (the next one due
  // is tried afresh, from an older base if need be).
  void compact_loop() {
    std::unique_lock l(mu);
    while (!compactor_stopping) {
      std::shared_ptr<Db> db;
      auto now_steady = std::chrono::steady_clock::now();
      for (auto& [name, d] : dbs) {
        if (d->active && !d->compact_queue.empty() && d->st.seq >= d->compact_queue.front() && !d->status.fenced &&
            !d->damaged && now_steady >= d->compact_retry_at) {
          db = d;
          break;
        }
      }
      if (!db) {
        compact_cv.wait_for(l, std::chrono::seconds(1));
        continue;
      }
      const uint64_t seq = db->compact_queue.front();
      db->compacting = true;
      db->status.compacting_seq = seq;
      CompactSources src;
      src.store = self->store_.get();
      src.prefix = self->options_.prefix;
      src.db = db->name;
      src.id = ChainIdentity{db->st.convention, db->st.lineage, db->st.base_checksum};
      src.work_dir = db->snap_dir();
      src.temp_prefix = ".tmp-compact-";  // adopt_spool's cleanup removes what a crash leaves
      l.unlock();
      CompactOptions o;
      o.compression = self->options_.compression;
      o.now_ms = [this] { return now(); };
      o.file_mode = db->file_mode;
      o.cancelled = [this, db] {
        std::lock_guard g(mu);
        return compactor_stopping || !db->active;
      };
      std::optional<std::pair<ErrorKind, std::string>> error;
      bool built = false;
      try {
        make_dirs(db->snap_dir());
        src.spool_snapshots = spool_files(db->snap_dir());
        src.spool_incrementals = spool_files(db->incr_dir());
        // A seq queued again at add() (which asks nothing of the store)
        // may be in the store already: building it again would put
        // different bytes (another timestamp) under a taken key.
        const std::string key = format_key(self->options_.prefix, {db->name, kSnapshotGeneration, seq});
        if (!src.spool_snapshots.count(seq) && !self->store_->head(key)) {
          compact_snapshot(src, seq, db->snap_dir() + "/" + seq_name(seq), o);
          built = true;
        }
      } catch (const Error& e) {
        error.emplace(e.kind(), e.what());
      } catch (const std::exception& e) {
        error.emplace(ErrorKind::kIO, e.what());
      }
      l.lock();
      db->compacting = false;
      db->status.compacting_seq = 0;
      if (!error) {
        if (built) db->status.last_compacted_seq = seq;
        db->status.compaction_error.reset();
        db->compact_queue.pop_front();
        db->status.pending_segments = pending(*db);
        work_cv.notify_all();
      } else if (!compactor_stopping && db->active) {
        db->status.compaction_error = "the snapshot at seq " + std::to_string(seq) + " was not made: " + error->second;
        if (error->first == ErrorKind::kRetryable || error->first == ErrorKind::kIO) {
          db->compact_retry_at = std::chrono::steady_clock::now() + self->options_.retry_max;
        } else {
          db->compact_queue.pop_front();
        }
      }
      done_cv.notify_all();
    }
  }

  // A grown file whose last page ships ends where that page ends: pages
  // alone express its length. A shrink, or a growth whose last page did not
  // change (it cannot, but the check costs nothing), needs the record.
  static bool needs_length_record(const PageIndex::Diff& diff, uint64_t old_length, uint32_t ps) {
    if (diff.file_length == old_length) return false;
    if (diff.file_length < old_length) return true;
    return diff.changed.empty() || diff.changed.back() != (diff.file_length - 1) / ps;
  }

  // The digest of the file after `seq` (the index must describe it now),
  // spooled for the uploader to publish after segment `seq`. Without one
  // (the index has pages without entries, or the spool write failed) the
  // point has no digest: readers report it absent, nothing is wrong.
  void spool_digest_of(Db& db, uint64_t seq) {
    try {
      auto digest = db.index.file_digest();
      make_dirs(db.incr_dir());
      if (!digest) {
        unspool_digest(db.incr_dir(), seq);
        return;
      }
      spool_digest(db.incr_dir(), db.file_mode,
                   DigestRecord{seq, db.index.file_length(), self->options_.page_size, *digest});
    } catch (const Error&) {
      unspool_digest(db.incr_dir(), seq);
    }
  }

  // After segment `seq` is in the store: its digest (seq 0's comes with
  // the snapshot, the others with the incremental).
  void publish_digest_of(const Db& db, uint64_t seq, bool snapshot) {
    if (snapshot && seq != 0) return;
    publish_spooled_digest(*self->store_, self->options_.prefix, db.name, db.incr_dir(), seq);
  }

  // The index takes the pages of a push once it is spooled or queued (a
  // queued push that then fails sets resync_needed, which rebuilds it). A
  // queued push's pages stay in memory until the spooler has made it
  // durable: the index file never holds an entry of a seq the spool lacks.
  void record_shipped(Db& db, const PageIndex::Diff& diff) {
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

  // Waits until the spooler has written every queued segment of `db`.
  void wait_spooled(Db& db) {
    std::unique_lock l(mu);
    done_cv.wait(l, [&] { return db.queued == 0; });
  }

  // After a queued segment failed to spool (disk full, say), the index and
  // the assigned seq are ahead of the spool: rebuild the index from the
  // spool's head and compare the whole file. Caller holds push_mu.
  bool resync_if_needed(Db& db) {
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

  // The spooler: writes queued segments in order, durably; then the
  // uploader takes them. A failure drops the database's later queued
  // segments too (they would not chain) and flags it for a resync.
  void spool_loop() {
    std::unique_lock l(mu);
    for (;;) {
      spool_cv.wait(l, [&] { return spooler_stopping || !spool_queue.empty(); });
      if (spool_queue.empty()) return;  // stopping, and everything is written
      SpoolJob job = std::move(spool_queue.front());
      spool_queue.pop_front();
      Db& db = *job.db;
      if (!db.resync_needed) {
        uint64_t prev = db.st.checksum;
        l.unlock();
        std::optional<std::string> error;
        uint64_t checksum = 0;
        try {
          checksum = write_segment(db.incr_dir(), db.file_mode, job.seq, prev, job.created_ms, job.ids.size(),
                                   pages_from_memory(self->options_.page_size, job.ids, job.data), job.length,
                                   job.with_length)
                         .first;
        } catch (const std::exception& e) {
          error = std::string(e.what());
        }
        l.lock();
        if (error) {
          db.resync_needed = true;
          db.status.last_error = "spooling seq " + std::to_string(job.seq) + " of '" + db.name + "' failed: " + *error;
        } else {
          db.st.seq = job.seq;
          db.st.checksum = checksum;
          db.status.spooled_seq = job.seq;
          work_cv.notify_all();
          compact_cv.notify_all();
        }
      }
      db.queued--;
      db.queued_bytes -= job.data.size();
      done_cv.notify_all();
      if (db.queued == 0 && !db.resync_needed) {
        // Caught up: the in-memory index is the spool's head; save it now
        // and then (a push holding push_mu saves it itself instead).
        l.unlock();
        if (db.push_mu.try_lock()) {
          std::lock_guard push_lock(db.push_mu, std::adopt_lock);
          if (db.pushes_since_index_save >= kIndexSaveEvery) {
            try {
              save_index(db, false);
            } catch (const Error&) {
            }
          }
        }
        l.lock();
      }
    }
  }

  // Saving the index is an optimisation (a restart replays fewer segments),
  // so on the checkpoint path it skips the fsync. Caller holds push_mu; the
  // index is saved only when it describes the spool's head.
  static constexpr uint64_t kIndexSaveEvery = 16;
  void save_index(Db& db, bool durable) {
    {
      std::lock_guard l(mu);
      if (db.queued != 0 || db.resync_needed || db.assigned_seq != db.st.seq) return;
      db.index.set_position(db.st.seq, db.st.checksum);
    }
    db.index.save(durable);
    db.pushes_since_index_save = 0;
  }

  // On a clean stop, so the next add() replays nothing. A failure here
  // costs only a longer replay then.
  void save_index_quietly(Db& db) {
    std::lock_guard push_lock(db.push_mu);
    wait_spooled(db);
    if (db.pushes_since_index_save == 0) return;
    try {
      save_index(db, true);
    } catch (const Error&) {
    }
  }

  // Brings the state loaded from state.json up to the spool: deletes what
  // was uploaded, adopts the incrementals and snapshots spooled after it.
  void adopt_spool(Db& db) {
    spool_files(db.snap_dir(), true);  // deletes temp files a crash left
    for (auto& [seq, path] : spool_files(db.incr_dir(), true)) {
      if (seq <= db.st.seq) {
        if (db.st.uploaded_any && seq <= db.st.uploaded_seq) ::unlink(path.c_str());  // the crash came before its removal
        continue;
      }
      if (seq != db.st.seq + 1) {
        throw Error(ErrorKind::kCorruption, "the spool of '" + db.name + "' has a gap: segment " + path +
                                                " follows seq " + std::to_string(db.st.seq));
      }
      FileSource src(path);
      auto s = verify_segment(src);
      if (s.header.seq != seq || s.header.prev_checksum != db.st.checksum) {
        throw Error(ErrorKind::kCorruption, "spooled segment " + path + " does not chain onto the spool state");
      }
      db.st.seq = seq;
      db.st.checksum = s.checksum;
      db.st.segments_since_snapshot++;
      db.st.bytes_since_snapshot += s.encoded_size;
    }
    drop_stale_digests(db.incr_dir(), db.st.uploaded_any ? std::optional<uint64_t>(db.st.uploaded_seq) : std::nullopt,
                       db.st.seq);
    // A snapshot is spooled after the incremental of its seq, so it is
    // covered by the head now; only the counters need it.
    for (auto& [seq, path] : spool_files(db.snap_dir())) {
      if (seq > db.st.last_snapshot_seq && seq <= db.st.seq) {
        db.st.last_snapshot_seq = seq;
        db.st.segments_since_snapshot = db.st.seq - seq;
        db.st.bytes_since_snapshot = 0;
      }
    }
  }

  // The index of the spool's head: pages.idx (opened, not read: its
  // blocks are read as diffs need them), then the pages of every segment
  // after its seq (from the spool, or the store once uploaded), each
  // verified whole and chained before any of its pages counts. Without a
  // usable index, or if a segment in between is gone, returns an empty
  // index: the next push then ships every page, which is large but never
  // wrong.
  PageIndex load_index(Db& db) {
    const uint32_t ps = self->options_.page_size;
    bool found = false;
    PageIndex idx = PageIndex::open(db.dir + "/pages.idx", ps, db.file_mode, &found);
    std::string tmp = db.dir + "/replay.hadbp";
    auto empty = [&] {
      ::unlink(tmp.c_str());
      idx.clear();
      return std::move(idx);
    };
    if (!found || idx.seq() > db.st.seq) return empty();
    uint64_t checksum = idx.chain_checksum();
    for (uint64_t seq = idx.seq() + 1; seq <= db.st.seq; ++seq) {
      std::string path = db.incr_dir() + "/" + seq_name(seq);
      if (::access(path.c_str(), F_OK) != 0) {
        try {
          FileSink sink(tmp);
          self->store_->get(format_key(self->options_.prefix, {db.name, kIncrementalGeneration, seq}), sink);
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
        FileSource src(path);
        SegmentReader reader(src);
        PageView page;
        // As an applier: pages extend the file; a length record sets it.
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
        checksum = reader.checksum();
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
  PageIndex fresh_index(Db& db) {
    PageIndex idx = PageIndex::open(db.dir + "/pages.idx", self->options_.page_size, db.file_mode);
    idx.clear();
    return idx;
  }

  // The chain checksum at `seq` (<= the head) as this spool knows it.
  std::optional<uint64_t> checksum_at(Db& db, uint64_t seq) {
    if (seq == db.st.seq) return db.st.checksum;
    if (seq == 0) return db.st.convention == 2 ? db.st.base_checksum : 0;
    auto files = spool_files(db.incr_dir());
    auto it = files.find(seq + 1);
    if (it == files.end()) return std::nullopt;
    FileSource src(it->second);
    SegmentReader reader(src);
    return reader.header().prev_checksum;
  }

  // state.json's head against the spooled segment at that seq, if it is
  // still spooled: a state.json with a wrong checksum would otherwise make
  // the next segment name a checksum no follower has.
  void check_state_against_spool(Db& db) {
    auto files = spool_files(db.incr_dir());
    auto it = files.find(db.st.seq);
    if (it == files.end()) return;
    FileSource src(it->second);
    SegmentSummary s = verify_segment(src);
    if (s.checksum != db.st.checksum) {
      throw Error(ErrorKind::kCorruption, "the spool state " + db.dir + "/state.json records checksum " +
                                              checksum_hex(db.st.checksum) + " at seq " + std::to_string(db.st.seq) +
                                              " but the spooled segment there has " + checksum_hex(s.checksum) +
                                              ": state.json is damaged. Move the spool directory away to rebuild "
                                              "the shipped state from the store");
    }
  }

  // ---- clean close (clean_close.h) ----

  bool record_clean_close(Db& db, PageReader& reader) {
    std::lock_guard push_lock(db.push_mu);
    wait_spooled(db);
    {
      std::lock_guard l(mu);
      if (db.resync_needed || db.status.fenced || db.damaged || db.assigned_seq != db.st.seq) return false;
    }
    auto proof = take_proof(reader, self->options_.page_size, true);
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
    write_clean_close(db.dir, *proof, db.file_mode);
    std::lock_guard l(mu);
    db.clean_recorded = true;
    return true;
  }

  // A push after the close: the record no longer describes the file.
  void forget_clean_close(Db& db) {
    {
      std::lock_guard l(mu);
      if (!db.clean_recorded) return;
      db.clean_recorded = false;
    }
    drop_clean_close(db.dir);
  }

  // At add(), once the spool's head and index are loaded: the record is of
  // this head, the index is at it, and the file is as it was at the close.
  bool clean_close_holds(Db& db, const std::optional<CleanClose>& rec, PageReader& reader) {
    return rec && rec->seq == db.st.seq && rec->chain_checksum == db.st.checksum && db.index.seq() == db.st.seq &&
           db.index.chain_checksum() == db.st.checksum && db.index.file_length() == rec->stamp.size &&
           proof_holds(*rec, reader, self->options_.page_size);
  }

  // ---- uploader ----

  struct Job {
    std::shared_ptr<Db> db;
    uint64_t seq;
    bool snapshot;
    std::string path;
  };

  std::optional<Job> next_job() {
    for (auto& [name, db] : dbs) {
      if (!db->active || db->status.fenced || db->damaged || db->deferred_check) continue;
      // Snapshots go up once the store has the incremental of their seq.
      for (auto& [seq, path] : spool_files(db->snap_dir())) {
        if (seq == 0 || (db->st.uploaded_any && seq <= db->st.uploaded_seq)) return Job{db, seq, true, path};
        break;
      }
      // Only a segment the state already counts (seq <= st.seq): a file
      // just renamed into the spool is not yet, and uploading it then could
      // record uploaded_seq > seq in state.json, which a restart after a
      // crash would read as a store ahead of the spool.
      if (db->st.uploaded_seq + 1 > db->st.seq) continue;
      auto incr = spool_files(db->incr_dir());
      auto it = incr.find(db->st.uploaded_seq + 1);
      if (it != incr.end()) return Job{db, it->first, false, it->second};
    }
    return std::nullopt;
  }

  uint64_t pending(const Db& db) const {
    return db.queued + spool_files(db.incr_dir()).size() + spool_files(db.snap_dir()).size() +
           db.compact_queue.size();
  }

  // Uploads one spooled segment, re-verified first. If the key is taken:
  // our own earlier upload (a crash before it was recorded) is fine;
  // another leader's sound segment fences us; a damaged object that is
  // provably ours (a server killed mid-upload left a prefix of it) is
  // replaced; any other damage stops uploads and is reported as damage.
  void upload_one(const std::string& key, const Job& job, uint64_t& size, bool& fenced, bool& damaged,
                  std::optional<std::string>& error) {
    verify_spooled_segment(job.path, job.seq);
    FileSource src(job.path);
    size = src.size();
    try {
      self->store_->put_if_absent(key, src);
      return;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kAlreadyExists) throw;
    }
    ExistingVerdict v = judge_existing_object(*self->store_, key, job.path);
    switch (v.what) {
      case ExistingObject::kSame:
        return;
      case ExistingObject::kForeign:
        fenced = true;
        error = "fenced: " + key + " was already written by another leader (" + v.detail +
                "); this leader must stop writing " + job.db->name;
        return;
      case ExistingObject::kDamagedOurs: {
        FileSource again(job.path);
        self->store_->put(key, again);  // a repair: the object was ours, cut short
        return;
      }
      case ExistingObject::kDamaged:
        damaged = true;
        error = "the store's " + key + " is damaged and not provably this leader's (" + v.detail +
                "); nothing more is uploaded for " + job.db->name +
                ". `duckblock verify` lists the damage; remove the object if it is garbage and push again";
        return;
    }
  }

  Db::StoreCheck store_check_of(Db& db) {
    Db::StoreCheck c;
    c.seq = db.st.seq;
    c.uploaded_seq = db.st.uploaded_seq;
    c.uploaded_any = db.st.uploaded_any;
    c.convention = db.st.convention;
    c.lineage = db.st.lineage;
    c.base_checksum = db.st.base_checksum;
    c.checksum_at_uploaded = checksum_at(db, db.st.uploaded_seq);
    return c;
  }

  // The spool (as `c` recorded it) against the store's chain: throws
  // kFenced if another leader went further, kCorruption if the store lost
  // what was uploaded, kChainBroken if its chain is another one.
  void check_against_store(const std::string& name, const Db::StoreCheck& c, const std::string& dir) {
    ObjectStore& store = *self->store_;
    const std::string& prefix = self->options_.prefix;
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

  // One deferred store check (see Db::deferred_check), if any is due.
  // Called with `l` held; returns false if there was none.
  bool run_deferred_check(std::unique_lock<std::mutex>& l, std::chrono::milliseconds& backoff) {
    std::shared_ptr<Db> db;
    for (auto& [name, d] : dbs) {
      if (d->active && d->deferred_check && !d->status.fenced && !d->damaged) {
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
      check_against_store(db->name, check, db->dir);
    } catch (const Error& e) {
      err = e;
    }
    l.lock();
    db->uploading = false;
    if (!err) {
      db->deferred_check.reset();
      db->status.last_error.reset();
      backoff = self->options_.retry_initial;
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
        work_cv.wait_for(l, backoff, [&] { return stopping; });
        backoff = std::min(backoff * 2, self->options_.retry_max);
      }
    }
    done_cv.notify_all();
    return true;
  }

  void upload_loop() {
    std::chrono::milliseconds backoff = self->options_.retry_initial;
    std::unique_lock l(mu);
    while (!stopping) {
      if (run_deferred_check(l, backoff)) continue;
      auto job = next_job();
      if (!job) {
        work_cv.wait_for(l, std::chrono::seconds(1));
        continue;
      }
      job->db->uploading = true;
      l.unlock();
      std::string key = format_key(self->options_.prefix,
                                   {job->db->name, job->snapshot ? kSnapshotGeneration : kIncrementalGeneration, job->seq});
      std::optional<std::string> error;
      bool fenced = false, damaged = false;
      uint64_t size = 0;
      try {
        upload_one(key, *job, size, fenced, damaged, error);
        if (!fenced && !damaged) publish_digest_of(*job->db, job->seq, job->snapshot);
      } catch (const Error& e) {
        error = std::string(e.what());
        damaged = e.kind() == ErrorKind::kCorruption;
      }
      l.lock();
      auto& db = *job->db;
      db.uploading = false;
      if (fenced || damaged) {
        (fenced ? db.status.fenced : db.damaged) = true;
        db.status.last_error = error;
        done_cv.notify_all();
        continue;
      }
      if (error) {
        db.status.upload_retries++;
        db.status.last_error = error;
        done_cv.notify_all();
        auto jitter = std::uniform_int_distribution<int64_t>(0, backoff.count() / 2 + 1)(rng);
        work_cv.wait_for(l, backoff + std::chrono::milliseconds(jitter), [&] { return stopping; });
        backoff = std::min(backoff * 2, self->options_.retry_max);
        continue;
      }
      backoff = self->options_.retry_initial;
      db.status.last_error.reset();
      db.status.bytes_shipped += size;
      db.status.segments_shipped++;
      db.status.last_upload_ms = system_now_ms();
      if (job->snapshot) {
        db.status.last_snapshot_seq = std::max(db.status.last_snapshot_seq, job->seq);
      } else {
        db.st.uploaded_seq = job->seq;
      }
      db.st.uploaded_any = true;
      db.status.uploaded_seq = db.st.uploaded_seq;
      try {
        save_state(db);
        ::unlink(job->path.c_str());
        if (!job->snapshot || job->seq == 0) unspool_digest(db.incr_dir(), job->seq);
      } catch (const Error& e) {
        db.status.last_error = std::string(e.what());
      }
      db.status.pending_segments = pending(db);
      if (db.log) db.log->kick();
      done_cv.notify_all();
    }
  }
};

Replicator::Replicator(std::shared_ptr<ObjectStore> store, ReplicatorOptions options)
    : store_(std::move(store)), options_(std::move(options)), impl_(std::make_unique<Impl>(this)) {
  if (options_.spool_dir.empty()) throw Error(ErrorKind::kInvalidArgument, "a spool directory is required");
  if (options_.page_size == 0 || options_.page_size > kMaxPageSize) {
    throw Error(ErrorKind::kInvalidArgument, "bad page size");
  }
  if (options_.compression < 0 || options_.compression > kMaxCompressionLevel) {
    throw Error(ErrorKind::kInvalidArgument, "compression level " + std::to_string(options_.compression) +
                                                 " out of range (0 for plain hadbp v1, 1.." +
                                                 std::to_string(kMaxCompressionLevel) + " for zstd)");
  }
  make_dirs(options_.spool_dir);
  impl_->uploader = std::thread([this] { impl_->upload_loop(); });
  impl_->spooler = std::thread([this] { impl_->spool_loop(); });
  impl_->compactor = std::thread([this] { impl_->compact_loop(); });
}

Replicator::~Replicator() {
  {
    // A compaction in progress stops; the next add() schedules it again.
    std::lock_guard l(impl_->mu);
    impl_->compactor_stopping = true;
  }
  impl_->compact_cv.notify_all();
  impl_->compactor.join();
  for (auto& [name, db] : impl_->dbs) db->log.reset();
  {
    std::lock_guard l(impl_->mu);
    impl_->spooler_stopping = true;  // it writes what is queued, then stops
  }
  impl_->spool_cv.notify_all();
  impl_->spooler.join();
  {
    std::lock_guard l(impl_->mu);
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  impl_->uploader.join();
  for (auto& [name, db] : impl_->dbs) impl_->save_index_quietly(*db);
}

void Replicator::add(const std::string& db_name, PageReader& reader) {
  validate_db_name(db_name);
  auto db = std::make_shared<Impl::Db>();
  db->name = db_name;
  db->dir = options_.spool_dir + "/" + db_name;
  db->index = PageIndex(options_.page_size);
  db->status.db = db_name;
  {
    std::lock_guard l(impl_->mu);
    if (impl_->dbs.count(db_name)) throw Error(ErrorKind::kInvalidArgument, "database '" + db_name + "' is already added");
  }
  make_dirs(db->dir);
  db->lock = std::make_unique<SpoolLock>(db->dir, "the spool of '" + db_name + "'");
  db->file_mode = spool_file_mode(*db, reader);
  // Consumed by every add(), whatever follows: once the file may change, a
  // crash must not leave a record vouching for it.
  std::optional<CleanClose> clean = take_clean_close(db->dir);
  bool proven = false;
  auto st = impl_->load_state(db->dir);
  ChainListing chain;
  if (st) {
    db->st = *st;
    impl_->adopt_spool(*db);
    impl_->check_state_against_spool(*db);
    auto check = impl_->store_check_of(*db);
    if (options_.spool_first) {
      db->deferred_check = check;
    } else {
      try {
        impl_->check_against_store(db_name, check, db->dir);
      } catch (const Error& e) {
        // With a spool, the state to continue from is local: an unreachable
        // store (retries exhausted) must not keep the database from opening.
        // Its segments spool; the uploader makes the checks once the store
        // answers, before it uploads anything.
        if (e.kind() != ErrorKind::kRetryable) throw;
        db->deferred_check = check;
      }
    }
    db->index = impl_->load_index(*db);
    proven = impl_->clean_close_holds(*db, clean, reader);
  } else {
    chain = list_chain(*store_, options_.prefix, db_name);
  }
  if (!st && chain.empty()) {
    // A new database: its first snapshot, at seq 0.
    for (auto& [seq, path] : spool_files(db->snap_dir())) ::unlink(path.c_str());
    db->st = State{};
    db->st.convention = 2;
    db->st.lineage = new_lineage();
    // Convention 2: incremental 1 chains from the seq-0 snapshot's checksum.
    db->st.checksum = db->st.base_checksum = impl_->spool_snapshot(*db, reader);
    db->index = impl_->fresh_index(*db);
    db->index.update_all(reader);
    db->index.set_position(db->st.seq, db->st.checksum);
    impl_->spool_digest_of(*db, 0);
    impl_->save_state(*db);
    impl_->save_index(*db, true);
    // Before anything of the chain is uploaded (the uploader starts on it
    // only once add() returns).
    write_chain_identity(*store_, options_.prefix, db_name, {2, db->st.lineage, db->st.base_checksum});
  } else if (!st) {
    // The store has a chain but this machine has no spool: rebuild the
    // shipped state from the store, then ship whatever the file differs by.
    ChainIdentity store_id = read_chain_identity(*store_, options_.prefix, db_name);
    std::string base = db->dir + "/base.restore";
    RestoreOptions ro;
    ro.prefix = options_.prefix;
    RestoreResult r = restore(*store_, db_name, base, {}, ro);
    {
      FilePageReader base_reader(base);
      db->index = impl_->fresh_index(*db);
      db->index.update_all(base_reader);
    }
    ::unlink(base.c_str());
    ::unlink((base + ".duckblock").c_str());
    db->st = State{};
    db->st.seq = db->st.uploaded_seq = r.position.seq;
    db->st.checksum = r.position.checksum;
    db->st.uploaded_any = true;
    db->st.last_snapshot_seq = chain.snapshots.empty() ? 0 : chain.snapshots.back().seq;
    db->st.lineage = store_id.lineage;
    db->st.convention = store_id.convention;
    db->st.base_checksum = store_id.base_checksum;
    db->index.set_position(db->st.seq, db->st.checksum);
    impl_->save_state(*db);
    impl_->save_index(*db, true);
  }
  db->assigned_seq = db->st.seq;
  db->status.spooled_seq = db->st.seq;
  db->status.uploaded_seq = db->st.uploaded_seq;
  db->status.last_snapshot_seq = db->st.last_snapshot_seq;
  // A snapshot scheduled before a crash or a stop and not made yet.
  if (st && db->st.last_snapshot_seq > 0 && db->st.last_snapshot_seq <= db->st.seq &&
      !spool_files(db->snap_dir()).count(db->st.last_snapshot_seq)) {
    // The compactor skips it if the store has it (add() lists nothing).
    db->compact_queue.push_back(db->st.last_snapshot_seq);
  }
  // Whatever the file holds beyond the shipped state (a checkpoint that
  // committed before a crash could spool it) ships now, unless a clean
  // close proved the file unchanged since the head.
  db->status.full_compare_at_add = !proven;
  if (!proven) impl_->push(*db, reader, nullptr);
  impl_->start_log(db);
  std::lock_guard l(impl_->mu);
  db->status.pending_segments = impl_->pending(*db);
  impl_->dbs[db_name] = db;
  impl_->work_cv.notify_all();
}

void Replicator::add_continuing(const std::string& db_name, PageReader& reader, const ChainPosition& position) {
  validate_db_name(db_name);
  ChainListing chain = list_chain(*store_, options_.prefix, db_name);
  if (chain.head_seq() != position.seq) {
    throw Error(ErrorKind::kChainBroken, "cannot continue '" + db_name + "' from seq " + std::to_string(position.seq) +
                                             ": the store's head is seq " + std::to_string(chain.head_seq()) +
                                             " (catch up first)");
  }
  auto db = std::make_shared<Impl::Db>();
  db->name = db_name;
  db->dir = options_.spool_dir + "/" + db_name;
  db->index = PageIndex(options_.page_size);
  db->status.db = db_name;
  {
    std::lock_guard l(impl_->mu);
    if (impl_->dbs.count(db_name)) throw Error(ErrorKind::kInvalidArgument, "database '" + db_name + "' is already added");
  }
  // A spool left from an earlier term as leader is stale: the chain moved on.
  make_dirs(db->dir);
  db->lock = std::make_unique<SpoolLock>(db->dir, "the spool of '" + db_name + "'");
  db->file_mode = spool_file_mode(*db, reader);
  drop_clean_close(db->dir);  // it vouched for the old term's head
  for (auto& [seq, path] : spool_files(db->incr_dir())) ::unlink(path.c_str());
  for (auto& [seq, path] : spool_files(db->snap_dir())) ::unlink(path.c_str());
  db->st.seq = db->st.uploaded_seq = db->assigned_seq = position.seq;
  db->st.checksum = position.checksum;
  db->st.uploaded_any = true;
  db->st.last_snapshot_seq = chain.snapshots.empty() ? 0 : chain.snapshots.back().seq;
  ChainIdentity store_id = read_chain_identity(*store_, options_.prefix, db_name);
  db->st.lineage = store_id.lineage;
  db->st.convention = store_id.convention;
  db->st.base_checksum = store_id.base_checksum;
  db->index = impl_->fresh_index(*db);
  db->index.update_all(reader);
  db->index.set_position(position.seq, position.checksum);
  impl_->save_state(*db);
  impl_->save_index(*db, true);
  db->status.spooled_seq = db->status.uploaded_seq = position.seq;
  db->status.last_snapshot_seq = db->st.last_snapshot_seq;
  impl_->start_log(db);
  std::lock_guard l(impl_->mu);
  impl_->dbs[db_name] = db;
}

PushResult Replicator::push_checkpoint(const std::string& db_name, PageReader& reader,
                                       const std::vector<uint64_t>* candidates) {
  std::shared_ptr<Impl::Db> db;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    db = it->second;
  }
  impl_->forget_clean_close(*db);
  PushResult r = impl_->push(*db, reader, candidates);
  std::lock_guard l(impl_->mu);
  db->status.pending_segments = impl_->pending(*db);
  return r;
}

SnapshotResult Replicator::snapshot_now(const std::string& db_name, PageReader& reader) {
  std::shared_ptr<Impl::Db> db;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    db = it->second;
  }
  SnapshotResult r = impl_->snapshot_now(*db, reader);
  std::lock_guard l(impl_->mu);
  db->status.pending_segments = impl_->pending(*db);
  return r;
}

void Replicator::sync(const std::string& db_name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sync_segments(db_name, timeout);
  // Then the log: its bytes go up only after the checkpoint they are based
  // on, which is in the store now.
  std::vector<std::shared_ptr<Impl::Db>> dbs;
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
  std::shared_ptr<Impl::Db> db;
  uint64_t base;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    db = it->second;
    if (db->status.fenced) throw Error(ErrorKind::kFenced, *db->status.last_error);
    base = db->assigned_seq;
  }
  DUCKBLOCK_ASSERT(db->log);
  return db->log->push(base, offset, std::move(bytes));
}

void Replicator::wait_log(const std::string& db_name, uint64_t ticket, std::chrono::milliseconds timeout) {
  std::shared_ptr<Impl::Db> db;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    db = it->second;
  }
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
      if (db->status.fenced) throw Error(ErrorKind::kFenced, *db->status.last_error);
      if (db->damaged) throw Error(db->damage_kind, *db->status.last_error);
      if (db->resync_needed) {
        throw Error(ErrorKind::kIO, *db->status.last_error + " (the next checkpoint ships everything that differs)");
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
      throw Error(ErrorKind::kRetryable, "sync timed out with segments still pending;" + (why.empty() ? std::string(" no error recorded") : why));
    }
  }
}

bool Replicator::record_clean_close(const std::string& db_name, PageReader& reader) {
  std::shared_ptr<Impl::Db> db;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->dbs.find(db_name);
    if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
    db = it->second;
  }
  return impl_->record_clean_close(*db, reader);
}

void Replicator::remove(const std::string& db_name) {
  std::shared_ptr<Impl::Db> db;
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
  db->lock.reset();  // a later add(), here or in another process, may take it
}

ChainPosition Replicator::pull(const std::string& db_name, const std::string& path) {
  Replica replica(path);
  catch_up(*store_, options_.prefix, db_name, replica);
  return replica.position();
}

ReplicationStatus Replicator::status(const std::string& db_name) const {
  std::lock_guard l(impl_->mu);
  auto it = impl_->dbs.find(db_name);
  if (it == impl_->dbs.end()) throw Error(ErrorKind::kNotFound, "database '" + db_name + "' is not added");
  ReplicationStatus s = it->second->status;
  if (it->second->log) it->second->log->fill_status(s);
  return s;
}

std::vector<std::string> Replicator::databases() const {
  std::lock_guard l(impl_->mu);
  std::vector<std::string> out;
  for (auto& [name, db] : impl_->dbs) out.push_back(name);
  return out;
}

}  // namespace duckblock
