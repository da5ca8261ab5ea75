// The duckblock DuckDB extension's per-database-instance state: the leader
// file system behind `duckblock://` paths, the databases it replicates, and
// the read replicas (followers) it keeps current. See docs/EXTENSION.md.
//
// Leader: ATTACH 'duckblock:///dir/name.duckdb' AS x opens the file through
// ReplicatingFileSystem, the capture file system of duckdb/ for duckblock://
// paths: it gives the database file a Capture of its own and so a
// Replicator, and every checkpoint's commit point ships a segment. The
// settings (duckblock_store, duckblock_spool_dir, ...) are read when the file
// opens.
//
// Follower: duckblock_follow() keeps two replica files, PATH and
// PATH.duckblock-alt, each with its .wal (the commits since its checkpoint),
// and attaches one READ_ONLY under the alias. A refresh brings the other one
// to the store's newest point, but only once no query reads it any more (the
// attached database object DuckDB kept for such queries is destroyed), then
// swaps the alias to it with ATTACH OR REPLACE. The alias never disappears,
// so no query fails because of a refresh; a query that began before a swap
// finishes on the file it started on, which nothing changes until it ends.
// DuckDB never re-reads a file's headers once attached, so an attachment must
// never see its file change under it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "duckdb.hpp"
#include "duckblock/apply.h"
#include "duckblock/metrics.h"
#include "duckblock/duckdb_capture.h"
#include "duckblock/follower.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "duckblock/wal.h"
#include "store_wait.h"

namespace duckblock::extension {

namespace dbi = duckblock::duckdb_integration;

// What the extension's settings say, read once per operation.
struct Settings {
  std::string store;                       // duckblock_store
  std::string prefix;                      // duckblock_prefix
  std::string spool_dir;                   // duckblock_spool_dir ("" = beside the database file)
  std::string name;                        // duckblock_name ("" = the file's name without extension)
  bool take_over = false;                  // duckblock_take_over
  uint64_t snapshot_every = 100;           // duckblock_snapshot_every
  uint64_t snapshot_bytes = 256ull << 20;  // duckblock_snapshot_bytes
  uint64_t poll_interval_ms = 1000;        // duckblock_poll_interval_ms (0 = on demand only)
  uint64_t refresh_wait_ms = 10000;        // duckblock_refresh_wait_ms
  uint64_t sync_interval_ms = 1000;        // duckblock_sync_interval_ms
  std::string sync_mode = "interval";      // duckblock_sync_mode: interval | commit
  StoreOptions store_options;              // duckblock_s3_*; credentials: environment or profile
  static Settings read(const duckdb::DatabaseInstance& db);
  // The spool directory of the database file at `path`.
  std::string spool_for(const std::string& path) const { return spool_dir.empty() ? path + ".duckblock-spool" : spool_dir; }
};

// Registers the settings above. They are global: the file system reads them
// when DuckDB opens a database file, and DuckDB passes it no client context.
void register_settings(duckdb::DBConfig& config);

std::shared_ptr<ObjectStore> open_store_for(const std::string& url, const Settings& s);

// A database file the leader side replicates.
struct Leader {
  std::string path;  // canonical path of the database file
  std::string db;    // its name in the store
  std::string store_url;
  std::string prefix;
  std::string spool_dir;
  std::string sync_mode;          // duckblock_sync_mode when it was attached
  uint64_t sync_interval_ms = 0;  // duckblock_sync_interval_ms when it was attached
  std::shared_ptr<Replicator> replicator;
  std::shared_ptr<dbi::Capture> capture;
  // Waiting for an unreachable store before replication can start.
  std::shared_ptr<StoreWait> wait = std::make_shared<StoreWait>();
};

struct FollowerStatus {
  std::string alias, db, path, store_url;
  uint64_t applied_seq = 0;
  uint64_t log_index = 0;      // log segments of that checkpoint the alias reads
  uint64_t log_bytes = 0;      // its log's length
  int64_t log_created_ms = 0;  // when the newest commit it reads was shipped
  uint64_t head_seq = 0;       // the store's head at the last successful poll
  uint64_t refreshes = 0;      // refreshes that applied something
  uint64_t polls = 0;
  uint64_t errors = 0;  // refreshes that failed
  bool attached = false;
  int64_t last_current_ms = 0;  // when the replica was last known to be at the head
  std::optional<std::string> last_error;
};

using RefreshResult = FollowerPoll;

// A read replica: two local files kept at the store's head by the core's
// Follower (follower.h), one of them attached READ_ONLY under `alias`. The
// hooks are the extension's part: before a file is written, wait until no
// query reads it; after, swap the alias to it with ATTACH OR REPLACE.
class Follower {
 public:
  // `instance`: the DuckDB instance the alias lives in. Held weakly: the
  // background loop holds it only while it polls, so it never keeps DuckDB
  // alive. `poll_interval` 0: no background loop (refresh() only).
  Follower(std::string alias, std::string db, std::string store_url, std::string path, std::string prefix,
           std::shared_ptr<ObjectStore> store, std::chrono::milliseconds refresh_wait,
           std::chrono::milliseconds poll_interval, duckdb::weak_ptr<duckdb::DatabaseInstance> instance);
  ~Follower();

  // Brings the replica to the store's head and makes sure the alias is
  // attached to it (restoring it first if it has no position yet).
  RefreshResult refresh();
  // Polls in the background every poll_interval (errors do not lengthen it).
  void start();
  // Stops polling (joins the thread; from the thread itself, detaches it).
  void stop();
  // Stops and detaches the alias.
  void close(duckdb::DatabaseInstance& db);
  FollowerStatus status() const;

 private:
  // The core follower's hooks, run under its apply lock.
  void wait_unread(const ReplicaFiles& files);
  void attach(const ReplicaFiles& files);
  bool still_attached();
  // The attachment reading `path` (expired: no query reads it).
  duckdb::weak_ptr<duckdb::AttachedDatabase>& attachment(const std::string& path);

  const std::string alias_, db_, store_url_, path_, prefix_;
  const std::chrono::milliseconds refresh_wait_, poll_interval_;
  const duckdb::weak_ptr<duckdb::DatabaseInstance> instance_;
  duckdb::weak_ptr<duckdb::AttachedDatabase> attached_[2];  // of path_ and its alternate
  std::atomic<bool> closed_{false};
  std::unique_ptr<duckblock::Follower> core_;  // last: its loop stops before the rest goes
};

// Everything the extension keeps for one DuckDB database instance. Owned by
// the ReplicatingFileSystem (which DuckDB destroys with the instance, after
// it has closed every attached database) and found by table functions
// through State::find.
class State {
 public:
  ~State();
  static std::shared_ptr<State> find(duckdb::DatabaseInstance& db);  // throws if not loaded
  static void install(duckdb::DatabaseInstance& db, std::shared_ptr<State> state);
  static void uninstall(duckdb::DatabaseInstance* db);

  // The Leader for a database file DuckDB opens for writing through a
  // duckblock:// path: a new one (replicator, capture) from the settings.
  std::shared_ptr<Leader> open_leader(const std::string& canonical_path, const Settings& settings);
  // Whether `canonical_path` is a database file or one of its side files
  // (.wal, .tmp) that must not be captured.
  bool is_side_file(const std::string& canonical_path) const;

  std::vector<std::shared_ptr<Leader>> leaders();
  std::shared_ptr<Leader> leader_by_path(const std::string& canonical_path);
  std::shared_ptr<Leader> leader_by_name(const std::string& name);
  // The Leader (current, or replaced by a re-attach) that owns `capture`.
  std::shared_ptr<Leader> leader_of(const dbi::Capture& capture);

  std::shared_ptr<Follower> add_follower(const std::string& alias, std::shared_ptr<Follower> f);
  std::shared_ptr<Follower> follower(const std::string& alias);
  std::shared_ptr<Follower> remove_follower(const std::string& alias);
  std::vector<std::shared_ptr<Follower>> followers();

  // Stops the metrics listener and every follower thread (the instance is
  // going away).
  void shutdown();

  // The duckblock_metrics_port listener (metrics_setting.h); null: off.
  // Last, so that it stops before anything it reads is destroyed.
  std::mutex metrics_mu;
  std::unique_ptr<MetricsServer> metrics;

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Leader>> leaders_;  // by canonical path
  // Replaced by a re-attach. Kept: a handle DuckDB still holds may report to
  // one's capture (leader_of).
  std::vector<std::shared_ptr<Leader>> retired_;
  std::map<std::string, std::shared_ptr<Follower>> followers_;
};

// The file system for `duckblock://` paths: strips the prefix and serves the
// local file. The database file opened for writing reports to its Leader's
// Capture; every other file (its .wal and .tmp, a READ_ONLY attach) is plain.
// The handle methods are the capture file system's.
class ReplicatingFileSystem final : public dbi::CaptureFileSystem {
 public:
  ReplicatingFileSystem(duckdb::DatabaseInstance& db, std::shared_ptr<State> state);
  ~ReplicatingFileSystem() override;

  static constexpr const char* kPrefix = "duckblock://";
  // "duckblock:///abs/x.duckdb" -> "/abs/x.duckdb"; "duckblock://rel" -> "rel".
  static std::string strip(const std::string& path);

  duckdb::unique_ptr<duckdb::FileHandle> OpenFile(const duckdb::string& path, duckdb::FileOpenFlags flags,
                                                  duckdb::optional_ptr<duckdb::FileOpener> opener = nullptr) override;
  void FileSync(duckdb::FileHandle& handle) override;

  bool DirectoryExists(const duckdb::string& directory, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  void CreateDirectory(const duckdb::string& directory, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  void RemoveDirectory(const duckdb::string& directory, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  void MoveFile(const duckdb::string& source, const duckdb::string& target,
                duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  bool FileExists(const duckdb::string& filename, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  bool IsPipe(const duckdb::string& filename, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  void RemoveFile(const duckdb::string& filename, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  bool TryRemoveFile(const duckdb::string& filename, duckdb::optional_ptr<duckdb::FileOpener> opener) override;
  bool ListFiles(const duckdb::string& directory, const std::function<void(const duckdb::string&, bool)>& callback,
                 duckdb::FileOpener* opener) override;
  // Glob and extended listing stay as DuckDB's FileSystem has them (no glob;
  // listing through ListFiles above, which strips the prefix): those of
  // LocalFileSystem would take duckblock:// for part of a local path.
  duckdb::vector<duckdb::OpenFileInfo> Glob(const duckdb::string& path, duckdb::FileOpener* opener = nullptr) override;

  bool CanHandleFile(const duckdb::string& fpath) override;
  duckdb::string GetName() const override { return "DuckblockFileSystem"; }

 protected:
  bool SupportsListFilesExtended() const override { return false; }

 private:
  // The store was unreachable at ATTACH: start once it answers.
  static void wait_for_store(Leader& leader, const std::string& canon, const Settings& settings, const std::string& why);

  duckdb::DatabaseInstance& db_;
  std::shared_ptr<State> state_;
  // Opens the local files: their own handles (inside ours) and the path
  // operations are plain LocalFileSystem's.
  duckdb::LocalFileSystem local_;
};

// Milliseconds since the epoch (status lag).
int64_t now_ms();

}  // namespace duckblock::extension
