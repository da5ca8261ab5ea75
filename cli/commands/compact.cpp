#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/chain.h"
#include "duckblock/compact.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/temp_files.h"

namespace duckblock::cli {

Runner add_compact(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compact",
      "Build the snapshot at seq N (default: the head) of a store's database from the newest snapshot\n"
      "before it and the incrementals after that, and upload it: a streaming merge by page id, in\n"
      "bounded memory, that needs no copy of the database file. For stores whose leader does not\n"
      "compact (a leader running duckblock compacts its own snapshots in the background).");
  struct Flags {
    StoreFlags store;
    std::optional<uint64_t> seq;
    std::string compression;
    bool force = false;
  };
  auto f = std::make_shared<Flags>();
  add_store_flags(cmd, f->store, true, true);
  cmd->add_option("--seq", f->seq, "The snapshot's seq: an incremental's (default: the chain's head)")
      ->check(whole_number());
  cmd->add_option("--compression", f->compression,
                  "none (plain hadbp v1), zstd or zstd:LEVEL (1..19) (default: $DUCKBLOCK_COMPRESSION, the config "
                  "file's \"compression\", else zstd:3)");
  cmd->add_flag("--force", f->force, "Replace a snapshot at N that is damaged or not this chain's (never a sound one)");
  cmd->footer(
      "Examples:\n"
      "  duckblock compact --store file:///backups/duckblock --db app\n"
      "  duckblock compact --store s3://my-bucket/dbs/ --db app --seq 120 --json\n"
      "Every input is downloaded and verified as restore does (checksums, chain, the base snapshot's binding);\n"
      "a damaged or foreign base snapshot is skipped for an older one. Temporary files go to $TMPDIR.\n"
      "Exit status: 0 uploaded, 1 failed, 2 bad usage, 3 an input is damaged or the chain broken (nothing\n"
      "uploaded), or the snapshot at N is damaged (--force replaces it), 4 database, seq or a snapshot before\n"
      "it not in the store, 5 the store already has a sound snapshot at N, 7 store unreachable.");
  return [f]() {
    resolve(f->store, true);
    validate_db_name(f->store.db);
    const int level = resolve_compression(f->compression);
    auto store = open_store_for(f->store, StoreUse::kWrite);
    const std::string& db = f->store.db;
    ChainListing chain = list_chain(*store, "", db);
    if (chain.empty()) throw Error(ErrorKind::kNotFound, "the store " + store->url() + " has no database '" + db + "'");
    const uint64_t seq = f->seq.value_or(chain.head_seq());
    if (seq == 0) {
      throw Error(ErrorKind::kInvalidArgument, "the snapshot at seq 0 starts the chain; it is never compacted");
    }
    if (seq > chain.head_seq()) {
      throw Error(ErrorKind::kNotFound, "seq " + std::to_string(seq) + " is past the chain's head " +
                                            std::to_string(chain.head_seq()));
    }
    ChainIdentity id = read_chain_identity(*store, "", db);
    std::string tmp_dir = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    const std::string prefix = ".duckblock-compact-";
    remove_stale_temp_files(tmp_dir, prefix);  // left by a run that was killed
    std::string out = tmp_dir + "/" + temp_file_name(prefix, "snapshot-" + std::to_string(seq));
    struct Remove {
      std::string path;
      ~Remove() { ::unlink(path.c_str()); }
    } remove_out{out};

    // A snapshot already at seq: a sound one is kept; a damaged or foreign
    // one is replaced only on request.
    bool replace = false;
    for (const auto& e : chain.snapshots) {
      if (e.seq != seq) continue;
      try {
        SegmentSummary s = download_segment(*store, e, out);
        bind_snapshot(*store, chain, id, e, s);
      } catch (const Error& err) {
        if (err.kind() != ErrorKind::kCorruption && err.kind() != ErrorKind::kChainBroken) throw;
        if (!f->force) {
          throw Error(err.kind(), "the store's snapshot at seq " + std::to_string(seq) + " is unusable (" + err.what() +
                                      "); --force replaces it with a compacted one");
        }
        replace = true;
        break;
      }
      throw Error(ErrorKind::kAlreadyExists, "the store already has a sound snapshot of '" + db + "' at seq " +
                                                 std::to_string(seq) + " (" + e.key + ")");
    }

    CompactSources src;
    src.store = store.get();
    src.db = db;
    src.id = id;
    src.work_dir = tmp_dir;
    src.temp_prefix = prefix;
    CompactOptions o;
    o.compression = level;
    Progress progress("compacting", 0, f->store.quiet);
    o.progress = [&](const CompactProgress& p) {
      progress.set_total(p.pages_total * p.page_size);
      progress.update(p.pages_done * p.page_size);
    };
    CompactResult r = compact_snapshot(src, seq, out, o);
    progress.finish();
    for (const auto& s : r.skipped) std::cerr << "compact: warning: " << s << "\n";

    std::string key = format_key("", {db, kSnapshotGeneration, seq});
    FileSource upload(out);
    if (replace) {
      store->put(key, upload);
    } else {
      store->put_if_absent(key, upload);  // a snapshot made meanwhile stays: exit 5
    }
    if (f->store.json) {
      nlohmann::json j = {{"db", db},
                          {"seq", r.seq},
                          {"key", key},
                          {"base_seq", r.base_seq},
                          {"incrementals", r.incrementals},
                          {"bytes", r.encoded_bytes},
                          {"pages", r.pages},
                          {"file_length", r.file_length},
                          {"checksum", checksum_hex(r.checksum)},
                          {"replaced", replace},
                          {"skipped_snapshots", r.skipped}};
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::cout << "compacted the snapshot at seq " << r.seq << " from the snapshot at seq " << r.base_seq << " and "
              << r.incrementals << " incremental" << (r.incrementals == 1 ? "" : "s") << ": " << key << "  "
              << human_bytes(r.encoded_bytes) << " (" << human_bytes(r.file_length) << " file)"
              << (replace ? ", replacing a damaged one" : "") << "\n";
    return 0;
  };
}

}  // namespace duckblock::cli
