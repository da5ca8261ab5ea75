// The DuckDB integration: a DuckDB FileSystem that watches the writes DuckDB
// makes to one database file, recognises the moment the file is consistent at
// a new checkpoint, and hands the pages written since the previous one to a
// Replicator. A C++ program gets replication by opening its database with
// open_replicated() instead of constructing duckdb::DuckDB itself.
//
// How a commit point is recognised (DuckDB 1.4, SingleFileBlockManager):
//   1. blocks are written at 12288 + block_id * 262144 (some of them long
//      before the checkpoint: large appends write blocks early);
//   2. fsync;
//   3. one 4 KiB database header is written at 4096 or 8192 (alternating);
//   4. fsync: from here the file on disk is the new checkpoint;
//   5. maybe ftruncate, cutting free blocks off the end of the file.
// The capture pushes at step 4: the file is consistent there, and any later
// write may already reuse a block the new header freed, so waiting risks
// shipping bytes of the next checkpoint. DuckDB does not always follow step 4
// with anything we could wait for (a large COMMIT checkpoints with no WAL to
// delete and nothing to truncate), so deferring the push to "the next file
// operation" could leave a checkpoint unshipped indefinitely. When step 5
// does happen (right after step 4, with no write between), the capture pushes
// again: a second segment that carries only the new, shorter file length.
// Both states are files DuckDB itself could have left on disk after a crash,
// so a follower is consistent at each. Holes punched in freed blocks
// (trim_free_blocks, off by default) ship the same way. See docs/DUCKDB.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "duckdb.hpp"
#include "duckdb/common/local_file_system.hpp"
#include "duckblock/apply.h"
#include "duckblock/page_reader.h"
#include "duckblock/replicator.h"

namespace duckblock::duckdb_integration {

// What a push saw and did, handed to CaptureOptions::on_push while the file
// is still exactly in the state that was pushed.
struct PushEvent {
  // kCheckpoint: a header's fsync; kTruncate / kTrim: DuckDB cut the file
  // or punched a hole in free blocks right after one (a follow-up segment).
  enum class Reason { kCheckpoint, kTruncate, kTrim };
  Reason reason = Reason::kCheckpoint;
  PushResult result;                   // seq 0: nothing changed, nothing shipped
  uint64_t candidate_pages = 0;        // 4 KiB pages DuckDB wrote since the last push
  uint64_t bytes_written = 0;          // bytes DuckDB wrote to the file since the last push
  uint64_t file_length = 0;
  PageReader* reader = nullptr;        // the file, through DuckDB's own handle
  const std::vector<uint64_t>* candidates = nullptr;  // those pages' ids, ascending
};

struct CaptureOptions {
  // What a failed push (spool full, fenced, ...) does. By default the error
  // is recorded (CaptureStats::last_error, and logged: duckblock/log.h) and the pages stay
  // pending, so the next checkpoint ships them: DuckDB keeps running. With
  // fail_checkpoint set the error is thrown into DuckDB instead, which makes
  // the checkpoint fail (DuckDB then treats the database as invalidated).
  bool fail_checkpoint = false;
  // A promoted follower: the file is the replica at this position (the
  // store's head), and the chain continues from it (Replicator::
  // add_continuing) instead of being registered with add(). Remove any stale
  // .wal beside the replica first, so that DuckDB opens the file unchanged.
  std::optional<ChainPosition> continuing;
  // Called at every commit point just before the push, with the capture's
  // lock held (the crash tests use it to kill a leader in mid-push).
  std::function<void()> before_push;
  // Called after every push (from the DuckDB thread that checkpointed, with
  // the capture's lock held: keep it short, and do not call into DuckDB).
  std::function<void(const PushEvent&)> on_push;
  // With LogSyncMode::kCommit, how long a COMMIT waits for the store to hold
  // its log bytes before it fails (DuckDB then rolls the transaction back;
  // the bytes may still reach the store: the outcome of a failed COMMIT is
  // unknown, as with any commit whose acknowledgement was lost).
  std::chrono::milliseconds commit_timeout{std::chrono::seconds(60)};
};

struct CaptureStats {
  uint64_t commits = 0;             // consistent points seen (header + fsync)
  uint64_t truncates = 0;           // truncates of the database file
  uint64_t pushes = 0;              // push_checkpoint calls
  uint64_t segments = 0;            // pushes that shipped a segment
  uint64_t bytes_written = 0;       // bytes DuckDB wrote to the file since open
  uint64_t pending_pages = 0;       // pages written since the last push
  uint64_t last_seq = 0;            // seq of the last segment shipped
  uint64_t push_failures = 0;
  uint64_t log_syncs = 0;           // fsyncs of the .wal that shipped log bytes (commits)
  uint64_t log_bytes = 0;           // log bytes handed to the replicator
  uint64_t checkpoint_log_flushes = 0;  // a checkpoint's own flush of the log (nothing shipped)
  // The last close was clean and recorded its proof (Replicator::
  // record_clean_close): the next open skips comparing the whole file.
  bool clean_close = false;
  std::optional<std::string> last_error;
};

class CaptureFileSystem;

// DuckDB's file headers: the main header at 0 (written only when the file is
// created or upgraded) and two database headers (h1, h2) at these offsets,
// exactly one 4 KiB page each. A file shorter than kHeadersEnd has never
// been checkpointed.
constexpr uint64_t kHeader1 = 4096;
constexpr uint64_t kHeader2 = 8192;
constexpr uint64_t kHeaderSize = 4096;
constexpr uint64_t kHeadersEnd = kHeader2 + kHeaderSize;
// The core writes a file's commit region last and proves a replica
// unchanged by it (apply.h): it must hold all three headers.
static_assert(kHeadersEnd <= kCommitRegionBytes, "DuckDB's headers must lie in the core's commit region");

// The canonical absolute form of a local path (symlinks in existing parents
// resolved): the same file whichever way DuckDB spells it (relative, with
// ./). Captures, leaders and followers record their files so.
std::string canonical_path(const std::string& path);

// The capture state of one database file, shared by the file system DuckDB
// owns and by the ReplicatedDatabase the program holds.
class Capture {
 public:
  Capture(std::string path, std::string db_name, std::shared_ptr<Replicator> replicator,
          CaptureOptions options);

  const std::string& path() const { return path_; }
  const std::string& db_name() const { return db_name_; }
  Replicator& replicator() { return *replicator_; }
  CaptureStats stats() const;

  // Registers the database with the replicator (Replicator::add: first
  // snapshot, or the difference to the chain) through DuckDB's handle, and
  // starts pushing at commit points. open_replicated calls it once DuckDB has
  // opened (and, if it had to, recovered) the file.
  void start();
  bool started() const;

  // Pushes whatever was written since the last push, as if a commit point
  // had just happened. Only correct when the file is consistent (no
  // checkpoint running); a test hook and an escape hatch.
  PushResult push_now();

 private:
  friend class CaptureFileSystem;
  class HandleReader;

  // Called by CaptureFileSystem for the database file's handle.
  void on_open(duckdb::FileHandle& inner, duckdb::LocalFileSystem& fs);
  void on_close(duckdb::FileHandle& inner);
  void on_write(uint64_t offset, uint64_t length);
  void on_trim(uint64_t offset, uint64_t length);
  void on_sync();
  void on_truncate(uint64_t old_size, uint64_t new_size);
  // The same for the database's write-ahead log (`<path>.wal`).
  void on_log_open(duckdb::FileHandle& inner, duckdb::LocalFileSystem& fs);
  void on_log_close(duckdb::FileHandle& inner);
  void on_log_truncate(uint64_t new_size);
  void on_log_sync();
  // Reads the log's committed bytes not yet shipped and hands them to the
  // replicator; returns the ticket (0: nothing shipped).
  uint64_t ship_log_locked();
  // The log's bytes from `from` to its end, and its size.
  std::vector<uint8_t> read_log(uint64_t from, uint64_t* size);

  PushResult push_locked(PushEvent::Reason reason);
  void mark_locked(uint64_t offset, uint64_t length);
  std::vector<uint64_t> take_candidates_locked() const;

  const std::string path_;
  const std::string db_name_;
  const std::shared_ptr<Replicator> replicator_;
  const CaptureOptions options_;

  mutable std::mutex mu_;
  duckdb::FileHandle* handle_ = nullptr;  // DuckDB's (inner) handle on the file
  duckdb::LocalFileSystem* fs_ = nullptr;
  bool started_ = false;
  bool header_written_ = false;  // a header write not yet followed by fsync
  bool wrote_since_push_ = false;  // a write (not a trim) since the last push
  // 4 KiB pages written since the last successful push, as a bitmap.
  std::vector<uint64_t> dirty_;
  uint64_t dirty_count_ = 0;
  uint64_t bytes_since_push_ = 0;
  // The write-ahead log: DuckDB's handle on it (while open), how much of it
  // the replicator has (for the current head), and the lowest length DuckDB
  // cut it to since (a rolled-back commit, a torn tail cut at reopen).
  duckdb::FileHandle* log_handle_ = nullptr;
  duckdb::LocalFileSystem* log_fs_ = nullptr;
  bool log_from_zero_ = true;  // the head moved or the log is new: ship it whole
  uint64_t log_shipped_end_ = 0;
  uint64_t log_cut_ = UINT64_MAX;
  CaptureStats stats_;
};

// A LocalFileSystem that forwards everything and reports the writes, syncs,
// truncates and trims of a database file to its Capture. Installed through
// DBConfig::file_system inside a VirtualFileSystem (so DuckDB's other file
// systems still register beside it); DuckDB owns and destroys it with the
// database instance.
//
// A file system that serves several database files (the extension's, for
// duckblock:// paths) derives from it: it picks the Capture for each file it
// opens, opens the local file itself and hands the handle to wrap(); the
// handle methods below then serve its files as they serve this one's.
class CaptureFileSystem : public duckdb::LocalFileSystem {
 public:
  // Watches the database file `capture` names; every other file is plain.
  explicit CaptureFileSystem(std::shared_ptr<Capture> capture);

  duckdb::unique_ptr<duckdb::FileHandle> OpenFile(const duckdb::string& path, duckdb::FileOpenFlags flags,
                                                  duckdb::optional_ptr<duckdb::FileOpener> opener = nullptr) override;
  void Read(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes, duckdb::idx_t location) override;
  void Write(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes, duckdb::idx_t location) override;
  int64_t Read(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes) override;
  int64_t Write(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes) override;
  bool Trim(duckdb::FileHandle& handle, duckdb::idx_t offset_bytes, duckdb::idx_t length_bytes) override;
  int64_t GetFileSize(duckdb::FileHandle& handle) override;
  duckdb::timestamp_t GetLastModifiedTime(duckdb::FileHandle& handle) override;
  duckdb::string GetVersionTag(duckdb::FileHandle& handle) override;
  duckdb::FileType GetFileType(duckdb::FileHandle& handle) override;
  void Truncate(duckdb::FileHandle& handle, int64_t new_size) override;
  void FileSync(duckdb::FileHandle& handle) override;
  void Seek(duckdb::FileHandle& handle, duckdb::idx_t location) override;
  void Reset(duckdb::FileHandle& handle) override;
  duckdb::idx_t SeekPosition(duckdb::FileHandle& handle) override;
  bool OnDiskFile(duckdb::FileHandle& handle) override;

 protected:
  // For a subclass that opens its files itself (its OpenFile calls wrap()).
  CaptureFileSystem() = default;

  // DuckDB's handle on `inner`, a handle a LocalFileSystem opened: named
  // `path` (the name DuckDB opened it by) and served by this file system's
  // handle methods, which report its writes to `capture` (null: none, a
  // plain file under another name).
  // With `log`, the handle is the database's write-ahead log instead.
  duckdb::unique_ptr<duckdb::FileHandle> wrap(const std::string& path, duckdb::unique_ptr<duckdb::FileHandle> inner,
                                              std::shared_ptr<Capture> capture, bool log = false);
  // The Capture a handle from wrap() or OpenFile reports to, or null.
  static Capture* capture_of(duckdb::FileHandle& handle);

 private:
  class Handle;
  std::shared_ptr<Capture> capture_;
  std::string canonical_path_;
};

// A DuckDB database whose checkpoints replicate. Destroying it closes DuckDB
// (which checkpoints its WAL and ships that last checkpoint); the segments
// stay in the replicator's spool until they are uploaded, so call
// replicator.sync() before exiting if they must be in the store.
class ReplicatedDatabase {
 public:
  ReplicatedDatabase(std::unique_ptr<duckdb::DuckDB> db, std::shared_ptr<Capture> capture)
      : capture_(std::move(capture)), db_(std::move(db)) {}
  duckdb::DuckDB& db() { return *db_; }
  Capture& capture() { return *capture_; }
  CaptureStats stats() const { return capture_->stats(); }
  // Closes DuckDB now (as the destructor would).
  void close() { db_.reset(); }

 private:
  std::shared_ptr<Capture> capture_;  // declared first: outlives db_
  std::unique_ptr<duckdb::DuckDB> db_;
};

// Opens (or creates) the DuckDB database at `path` with capture on, and
// registers it with `replicator` as `db_name` (Replicator::add). `config` may
// carry any DuckDB option except a file system of its own; it is consumed.
// Throws duckblock::Error(kInvalidArgument) for an in-memory or read-only
// database, and whatever DuckDB or the replicator throw.
std::unique_ptr<ReplicatedDatabase> open_replicated(const std::string& path,
                                                    std::shared_ptr<Replicator> replicator,
                                                    const std::string& db_name,
                                                    duckdb::DBConfig* config = nullptr,
                                                    CaptureOptions options = {});

}  // namespace duckblock::duckdb_integration
