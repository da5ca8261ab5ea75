#include "ship.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "common.h"
#include "duckblock/key.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

namespace {

struct ShipFlags {
  StoreFlags store;
  std::string file;
  std::string spool;
  uint64_t snapshot_every = 100;
  std::string timeout = "5m";
  uint64_t retries = 5;
  std::string compression;
};

void add_ship_flags(CLI::App* cmd, ShipFlags& f) {
  cmd->add_option("FILE", f.file, "The database file (not being written by a running DuckDB)")->required();
  add_store_flags(cmd, f.store, true, true);
  cmd->add_option("--spool", f.spool,
                  "Directory for segments waiting for upload and the shipped state (default: $DUCKBLOCK_SPOOL, the "
                  "config file's \"spool\", else .duckblock-spool/ beside FILE)");
  cmd->add_option("--snapshot-every", f.snapshot_every,
                  "Also ship a snapshot after this many incrementals since the last one (0: never)")
      ->check(whole_number())
      ->capture_default_str();
  cmd->add_option("--timeout", f.timeout, "Give up waiting for the upload after this long (the spool keeps it)")
      ->capture_default_str();
  cmd->add_option("--retries", f.retries, "Give up after this many failed upload attempts")
      ->check(whole_number())
      ->capture_default_str();
  cmd->add_option("--compression", f.compression,
                  "none (plain hadbp v1, for stores the reference implementation reads), zstd or zstd:LEVEL (1..19) "
                  "(default: $DUCKBLOCK_COMPRESSION, the config file's \"compression\", else zstd:3)");
}

// The log the store holds for `base` (every log segment applied in order),
// or nullopt if it has none.
std::optional<std::vector<uint8_t>> stored_log(ObjectStore& store, const std::string& db, uint64_t base) {
  auto entries = list_log(store, "", db, base);
  if (entries.empty()) return std::nullopt;
  std::vector<uint8_t> log;
  for (const auto& e : entries) {
    auto s = fetch_log_segment(store, e);
    if (s.header.offset > log.size()) return std::nullopt;  // not a log we can reproduce: ship ours
    log.resize(s.header.offset);
    log.insert(log.end(), s.data.begin(), s.data.end());
  }
  return log;
}

int run_ship(ShipFlags& f, bool force_snapshot) {
  const char* verb = force_snapshot ? "snapshot" : "push";
  resolve(f.store, true);
  validate_db_name(f.store.db);
  auto timeout = parse_duration(f.timeout);
  std::string file = absolute_path(f.file);
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    throw Error(ErrorKind::kNotFound, "the file " + f.file + " does not exist");
  }
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::kInvalidArgument, f.file + " is not a regular file");
  std::string spool = f.spool;
  if (spool.empty()) spool = std::getenv("DUCKBLOCK_SPOOL") ? std::getenv("DUCKBLOCK_SPOOL") : "";
  if (spool.empty()) spool = config_string("spool");
  if (spool.empty()) spool = dirname_of(file) + "/.duckblock-spool";
  spool = absolute_path(spool);
  std::string db_dir = spool + "/" + f.store.db;
  const int level = resolve_compression(f.compression);

  auto counting = std::make_shared<CountingStore>(open_store_for(f.store, StoreUse::kWrite));
  std::shared_ptr<ObjectStore> store = counting;
  check_spool_origin(spool, f.store.db, store->url());
  ReadLock lock(file);
  FilePageReader reader(file);
  ChainListing before = list_chain(*store, "", f.store.db);

  ReplicatorOptions ro;
  ro.spool_dir = spool;
  ro.compression = level;
  ro.snapshots.every_segments = f.snapshot_every;
  ro.snapshots.every_bytes = 0;  // by count only: predictable from the command line
  std::unique_ptr<Replicator> rep_owner;
  try {
    rep_owner = std::make_unique<Replicator>(store, ro);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kIO) throw;
    throw Error(ErrorKind::kIO, std::string(e.what()) + " (pass --spool DIR to keep the spool in a writable directory)");
  }
  Replicator& rep = *rep_owner;
  note(f.store, std::string(verb) + ": reading " + file + (before.empty() ? " (new database in the store)" : ""));
  try {
    rep.add(f.store.db, reader);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kFenced) {
      throw Error(ErrorKind::kFenced,
                  std::string(e.what()) + ". If " + file + " is now the file to replicate, remove " + db_dir +
                      " and run " + verb + " again: it rebuilds the shipped state from the store");
    }
    throw;
  }
  record_spool_origin(spool, f.store.db, store->url(), file, st.st_mode & 0666);
  SnapshotResult snap;
  bool snapshot_created = before.empty();  // add() shipped the seq-0 snapshot
  if (force_snapshot && !before.empty()) {
    snap = rep.snapshot_now(f.store.db, reader);
    snapshot_created = snap.created;
  }

  // Wait for the uploader, drawing progress over the bytes it has to move.
  // Uploads may already be under way: count everything this process sent.
  Progress progress(force_snapshot ? "uploading" : "pushing", spooled_bytes(spool, f.store.db) + counting->bytes_up(),
                    f.store.quiet);
  progress.tick_from([counting] { return counting->bytes_up(); });
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    try {
      rep.sync(f.store.db, std::chrono::milliseconds(200));
      break;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kRetryable) throw;
    }
    auto status = rep.status(f.store.db);
    bool out_of_time = std::chrono::steady_clock::now() >= deadline;
    if (status.upload_retries >= f.retries || out_of_time) {
      progress.finish();
      throw Error(ErrorKind::kRetryable,
                  std::string("upload to ") + store->url() + " failed" +
                      (out_of_time ? " to finish in " + f.timeout : " " + std::to_string(status.upload_retries) + " times") +
                      ": " + status.last_error.value_or("no error recorded") + ". The segments stay in " + db_dir +
                      "; run " + verb + " again to upload them");
    }
  }
  progress.finish();

  // Commits DuckDB has in FILE.wal but not yet in FILE (no checkpoint since
  // them) ship as the log of the head, unless the store's log of that
  // checkpoint already holds exactly these bytes.
  uint64_t log_bytes = 0;
  bool log_shipped = false;
  if (path_exists(file + ".wal")) {
    auto wal = read_file(file + ".wal");
    uint64_t base = rep.status(f.store.db).uploaded_seq;
    if (!wal.empty() && stored_log(*store, f.store.db, base) != wal) {
      log_bytes = wal.size();
      rep.push_log(f.store.db, 0, std::move(wal));
      rep.sync(f.store.db, timeout);
      log_shipped = true;
    } else {
      log_bytes = wal.size();
    }
  }

  auto status = rep.status(f.store.db);
  uint64_t head_before = before.empty() ? 0 : before.head_seq();
  uint64_t head = status.uploaded_seq;
  if (force_snapshot && !before.empty()) head = snap.seq;
  nlohmann::json j = {{"db", f.store.db},
                      {"store", store->url()},
                      {"file", file},
                      {"new_database", before.empty()},
                      {"seq_before", before.empty() ? nlohmann::json(nullptr) : nlohmann::json(head_before)},
                      {"seq", head},
                      {"segments", head - head_before},
                      {"snapshot", snapshot_created},
                      {"snapshot_seq", status.last_snapshot_seq},
                      {"bytes_uploaded", status.bytes_shipped + status.log_bytes_shipped},
                      {"log_bytes", log_bytes},
                      {"log_shipped", log_shipped},
                      {"compacted_seq", status.last_compacted_seq},
                      {"compaction_error", status.compaction_error ? nlohmann::json(*status.compaction_error)
                                                                    : nlohmann::json(nullptr)},
                      {"spool", spool}};
  // The incremental shipped; a due snapshot that could not be compacted is
  // missing, which a restore pays for in incrementals: say so.
  if (status.compaction_error) {
    std::cerr << verb << ": warning: " << *status.compaction_error
              << " (the incremental shipped: `duckblock verify` checks the chain)\n";
  }
  if (f.store.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  if (log_shipped) {
    std::cout << verb << ": '" << f.store.db << "' log of " << human_bytes(log_bytes) << " (commits in " << file
              << ".wal since seq " << status.uploaded_seq << ") shipped\n";
  }
  if (before.empty()) {
    std::cout << verb << ": '" << f.store.db << "' is new in " << store->url() << ": snapshot at seq 0 ("
              << human_bytes(status.bytes_shipped) << ")\n";
  } else if (head == head_before && !snapshot_created && log_shipped) {
    // The log line above says what shipped.
  } else if (head == head_before && !snapshot_created) {
    std::cout << verb << ": '" << f.store.db << "' is unchanged since seq " << head
              << (force_snapshot ? " and already has a snapshot there" : "") << "\n";
  } else {
    std::cout << verb << ": '" << f.store.db << "' seq " << head_before << " -> " << head << " ("
              << (head - head_before) << " incremental" << (head - head_before == 1 ? "" : "s")
              << (snapshot_created || status.last_snapshot_seq == head ? ", snapshot at seq " + std::to_string(head) : "")
              << ", " << human_bytes(status.bytes_shipped) << " uploaded)\n";
  }
  return 0;
}

}  // namespace

Runner add_ship_command(CLI::App& app, const std::string& name, const std::string& description,
                        const std::string& footer, bool force_snapshot) {
  auto* cmd = app.add_subcommand(name, description);
  auto f = std::make_shared<ShipFlags>();
  add_ship_flags(cmd, *f);
  cmd->footer(footer);
  return [f, force_snapshot]() { return run_ship(*f, force_snapshot); };
}

}  // namespace duckblock::cli
