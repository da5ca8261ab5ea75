#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

Runner add_prune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prune",
      "Delete what is no longer needed to restore any point created within --keep of now: incrementals\n"
      "and snapshots older than the newest snapshot at or before the window's start (never fewer than\n"
      "--min-snapshots snapshots), and the log segments of checkpoints older than the oldest snapshot\n"
      "kept (the log of checkpoint B serves only the points between B and B+1). Times are the store's\n"
      "object times.");
  struct Flags {
    StoreFlags store;
    std::string keep;
    uint64_t min_snapshots = 2;
    bool dry_run = false;
  };
  auto f = std::make_shared<Flags>();
  add_store_flags(cmd, f->store, true, true);
  cmd->add_option("--keep", f->keep, "Retention window: 36h, 7d, 2w, ... (every point inside stays restorable)")
      ->required();
  cmd->add_option("--min-snapshots", f->min_snapshots, "Keep at least this many snapshots")
      ->check(whole_number())
      ->capture_default_str();
  cmd->add_flag("--dry-run", f->dry_run, "Show what would be deleted; delete nothing");
  cmd->footer(
      "Examples:\n"
      "  duckblock prune --store file:///backups/duckblock --db app --keep 7d --dry-run\n"
      "  duckblock prune --store s3://my-bucket/dbs/ --db app --keep 30d --min-snapshots 3\n"
      "Before deleting, prune downloads and verifies the snapshot the window relies on and every incremental\n"
      "after it; if that snapshot is damaged it keeps an older one that verifies instead.\n"
      "Exit status: 0 pruned (or nothing to prune), 1 failed, 2 bad usage, 3 deleted nothing: a point in the\n"
      "window is not restorable through objects that verify, 4 database not in the store.");
  return [f]() {
    resolve(f->store, true);
    validate_db_name(f->store.db);
    auto window = parse_duration(f->keep);
    if (window.count() <= 0) throw Error(ErrorKind::kInvalidArgument, "--keep must be positive, like 7d");
    auto store = open_store_for(f->store, StoreUse::kRead);
    ChainListing chain = list_chain(*store, "", f->store.db);
    if (chain.empty()) {
      throw Error(ErrorKind::kNotFound, "the store " + store->url() + " has no database '" + f->store.db + "'");
    }
    RetentionPolicy policy;
    policy.window = window;
    policy.min_snapshots = f->min_snapshots;
    // Nothing is deleted before what the window relies on is downloaded and
    // verified (plan_safe_prune); a refusal is exit 3.
    std::string tmp_dir = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::vector<std::string> notes;
    std::vector<LogEntry> log = list_log(*store, "", f->store.db);
    PrunePlan plan = plan_safe_prune(*store, "", f->store.db, chain, policy, now_ms(), tmp_dir, &notes, log);
    for (const auto& n : notes) std::cerr << "prune: warning: " << n << "\n";
    uint64_t bytes = 0;
    for (const auto& e : plan.remove) bytes += e.size;
    for (const auto& e : plan.remove_log) bytes += e.size;
    size_t objects = plan.remove.size() + plan.remove_log.size();
    if (!f->dry_run && objects > 0) execute_prune(*store, plan);
    // Half-written objects of killed writers (local stores; see temp_files.h).
    uint64_t temp_removed = f->dry_run ? 0 : store->remove_stale_temp_files();
    if (f->store.json) {
      nlohmann::json rm = nlohmann::json::array();
      for (const auto& e : plan.remove) {
        rm.push_back({{"seq", e.seq}, {"kind", e.snapshot ? "snapshot" : "incremental"}, {"key", e.key},
                      {"size", e.size}, {"modified", format_time(e.modified_ms)}});
      }
      for (const auto& e : plan.remove_log) {
        rm.push_back({{"seq", e.base_seq}, {"kind", "log"}, {"index", e.index}, {"key", e.key},
                      {"size", e.size}, {"modified", format_time(e.modified_ms)}});
      }
      nlohmann::json j = {{"db", f->store.db},        {"dry_run", f->dry_run},
                          {"removed", rm},            {"bytes", bytes},
                          {"oldest_restorable_seq", plan.oldest_restorable_seq},
                          {"warnings", notes},
                          {"temp_files_removed", temp_removed}};
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    const char* verb = f->dry_run ? "would delete" : "deleted";
    for (const auto& e : plan.remove) {
      std::cout << verb << " " << (e.snapshot ? "snapshot   " : "incremental") << " seq " << e.seq << "  " << e.key
                << "  " << human_bytes(e.size) << "\n";
    }
    for (const auto& e : plan.remove_log) {
      std::cout << verb << " log         base " << e.base_seq << " index " << e.index << "  " << e.key << "  "
                << human_bytes(e.size) << "\n";
    }
    std::cout << (f->dry_run ? "dry run: " : "") << verb << " " << objects << " object"
              << (objects == 1 ? "" : "s") << " (" << human_bytes(bytes) << "); oldest restorable seq "
              << plan.oldest_restorable_seq << "\n";
    if (temp_removed) std::cout << "removed " << temp_removed << " stale temp file" << (temp_removed == 1 ? "" : "s") << "\n";
    return 0;
  };
}

}  // namespace duckblock::cli
