#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

Runner add_restore(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "restore",
      "Restore a database from the store to PATH: the latest point, or the one at --seq N or at --time T.\n"
      "Every segment is verified before it is applied; PATH appears atomically, complete, or not at all.");
  struct Flags {
    StoreFlags store;
    std::string to;
    std::optional<uint64_t> seq;
    std::string time;
    bool force = false;
  };
  auto f = std::make_shared<Flags>();
  add_store_flags(cmd, f->store, true, true);
  cmd->add_option("--to", f->to, "Where to write the database file")->required();
  auto* seq = cmd->add_option("--seq", f->seq, "Restore to this sequence number")->check(whole_number());
  cmd->add_option("--time", f->time,
                  "Restore to the last point created at or before this time: RFC 3339 (2026-11-25T14:30:00Z, "
                  "+01:00 offsets; no zone = UTC) or milliseconds since the epoch")
      ->excludes(seq);
  cmd->add_flag("--force", f->force,
                "Replace an existing PATH, and remove a stale PATH.wal (DuckDB would replay it onto the "
                "restored file)");
  cmd->footer(
      "Examples:\n"
      "  duckblock restore --store file:///backups/duckblock --db app --to /tmp/app.duckdb\n"
      "  duckblock restore --store s3://my-bucket/dbs/ --db app --to app.duckdb --seq 42\n"
      "  duckblock restore --db app --to app.duckdb --time 2026-11-25T09:00:00Z --force\n"
      "The restored file keeps its chain position in PATH.duckblock, so `duckblock follow --to PATH`\n"
      "continues from it.\n"
      "Exit status: 0 restored, 1 failed, 2 bad usage, 3 corrupt object or broken chain,\n"
      "4 database/point not in the store, 5 PATH exists (use --force), 6 credentials, 7 unreachable.");
  return [f]() {
    resolve(f->store, true);
    validate_db_name(f->store.db);
    RestoreTarget target;
    target.seq = f->seq;
    if (!f->time.empty()) target.time_ms = parse_time(f->time);
    std::string path = output_file_path(f->to, "--to");
    std::string dir = dirname_of(path);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      throw Error(ErrorKind::kNotFound, "the directory " + dir + " does not exist (create it first)");
    }
    TargetLock target_lock(path);  // one restore or follow per target (exit 9)
    bool exists = path_exists(path);
    const bool wal = stale_log_beside(path, LogBesideUse::kRestore);
    if (exists && !f->force) {
      throw Error(ErrorKind::kAlreadyExists,
                  path + " already exists: pass --force to replace it, or choose another --to");
    }
    if (wal && !f->force) {
      throw Error(ErrorKind::kAlreadyExists, stale_log_refusal(path, LogBesideUse::kRestore, "--force"));
    }
    auto counting = std::make_shared<CountingStore>(open_store_for(f->store, StoreUse::kRead));
    auto store = counting;

    // Restore beside PATH under a temporary name; only a complete, verified
    // result is moved over PATH (and only then is a stale WAL removed), so a
    // failure leaves every existing file as it was.
    std::string tmp = path + ".duckblock-new";
    auto cleanup_tmp = [&] {
      for (const auto& p : {tmp, tmp + ".duckblock", tmp + ".duckblock-pending", tmp + ".wal", tmp + ".duckblock-log"}) {
        ::unlink(p.c_str());
      }
    };
    cleanup_tmp();
    Progress progress("restoring", 0, f->store.quiet);
    if (progress.active() && !target.time_ms) {
      // The same choice restore() makes: the newest snapshot at or before
      // the target, then the incrementals after it.
      ChainListing chain = list_chain(*store, "", f->store.db);
      uint64_t want = target.seq.value_or(chain.head_seq()), base = 0, total = 0;
      for (const auto& s : chain.snapshots) {
        if (s.seq <= want) {
          base = s.seq;
          total = s.size;
        }
      }
      for (const auto& e : chain.incrementals) {
        if (e.seq > base && e.seq <= want) total += e.size;
      }
      progress.set_total(total);
    }
    progress.tick_from([counting] { return counting->bytes_down(); });
    RestoreOptions ro;
    ro.progress = [&](const RestoreProgress& p) { progress.set_total(p.bytes_total); };
    RestoreResult r;
    LogCatchUp log_done;
    try {
      r = restore(*store, f->store.db, tmp, target, ro);
      // The commits after that checkpoint: its log (DuckDB replays it when
      // it opens the file). --seq N means checkpoint N exactly.
      if (!target.seq) {
        LogReplica log(tmp + ".wal", tmp + ".duckblock-log");
        log_done = catch_up_log(*store, "", f->store.db, r.position, log, target.time_ms);
      }
    } catch (...) {
      progress.finish();
      cleanup_tmp();
      throw;
    }
    progress.finish();
    bool removed_wal = false;
    try {
      if (wal) {
        if (::unlink((path + ".wal").c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + path + ".wal");
        removed_wal = true;
      }
      ::unlink((path + ".duckblock").c_str());
      ::unlink((path + ".duckblock-pending").c_str());
      ::unlink((path + ".duckblock-log").c_str());
      if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot move the restored file to " + path);
      if (::rename((tmp + ".duckblock").c_str(), (path + ".duckblock").c_str()) != 0) {
        throw_errno("cannot move the restore journal beside " + path);
      }
      // The log after the file: a reader in between sees the checkpoint
      // alone, an earlier point of the same chain.
      if (log_done.position) {
        if (::rename((tmp + ".wal").c_str(), (path + ".wal").c_str()) != 0) {
          throw_errno("cannot move the restored log to " + path + ".wal");
        }
        if (::rename((tmp + ".duckblock-log").c_str(), (path + ".duckblock-log").c_str()) != 0) {
          throw_errno("cannot move the log record beside " + path);
        }
      }
      fsync_dir(dir);
    } catch (...) {
      cleanup_tmp();
      throw;
    }
    if (removed_wal) note(f->store, "restore: removed stale " + path + ".wal (--force)");
    // A fallback is a warning, never silenced: the store needs attention.
    for (const auto& why : r.skipped_snapshots) {
      std::cerr << "restore: warning: " << why << "; restored from the older snapshot at seq " << r.snapshot_seq
                << " plus incrementals instead (run `duckblock verify`)\n";
    }
    if (f->store.json) {
      nlohmann::json j = {{"db", f->store.db},
                          {"path", path},
                          {"seq", r.position.seq},
                          {"checksum", checksum_hex(r.position.checksum)},
                          {"snapshot_seq", r.snapshot_seq},
                          {"segments_applied", r.segments_applied},
                          {"bytes_downloaded", r.bytes_downloaded},
                          {"created_ms", r.created_ms},
                          {"created", format_time(r.created_ms)},
                          {"log_segments", log_done.applied},
                          {"log_bytes", log_done.position ? log_done.position->length : 0},
                          {"log_created_ms", log_done.position ? log_done.position->created_ms : 0},
                          {"replaced", exists},
                          {"removed_wal", removed_wal},
                          {"skipped_snapshots", r.skipped_snapshots},
                          {"digest", r.digest}};
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "restored '" << f->store.db << "' to " << path << ": seq " << r.position.seq << " (created "
                << format_time(r.created_ms) << "), snapshot " << r.snapshot_seq << " + " << r.segments_applied
                << " incremental" << (r.segments_applied == 1 ? "" : "s");
      if (log_done.position) {
        std::cout << " + " << log_done.applied << " log segment" << (log_done.applied == 1 ? "" : "s") << " ("
                  << human_bytes(log_done.position->length) << " of commits up to "
                  << format_time(log_done.position->created_ms) << ", in " << path << ".wal)";
      }
      std::cout << ", " << human_bytes(r.bytes_downloaded) << " downloaded\n";
    }
    return 0;
  };
}

}  // namespace duckblock::cli
