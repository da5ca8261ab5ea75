#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "duckblock/chain.h"
#include "duckblock/key.h"
#include "duckblock/restore.h"
#include "duckblock/temp_files.h"
#include "duckblock/wal.h"

namespace duckblock::cli {

namespace {

struct Problem {
  uint64_t seq = 0;
  std::string key;
  std::string message;
};

// Rebuilds the file at `seq` in a temp file (restore checks it against the
// published digest before it would publish it) and removes it. Returns
// "verified", "absent" (no digest at that seq) or "mismatch" (a problem).
std::string deep_check(ObjectStore& store, const std::string& db, uint64_t seq, const std::string& dir,
                       std::vector<Problem>& problems) {
  std::string path = dir + "/" + temp_file_name(".duckblock-verify-", db);
  auto cleanup = [&] {
    for (const auto& p : {path, path + ".duckblock"}) ::unlink(p.c_str());
  };
  std::string result = "mismatch";
  try {
    RestoreOptions ro;
    ro.temp_dir = dir;
    result = restore(store, db, path, RestoreTarget{seq, {}}, ro).digest;
  } catch (const Error& e) {
    cleanup();
    if (e.kind() != ErrorKind::kCorruption && e.kind() != ErrorKind::kChainBroken) throw;
    problems.push_back({seq, digest_key("", db, seq), std::string("deep check of seq ") + std::to_string(seq) + ": " + e.what()});
    return result;
  }
  cleanup();
  return result;
}

}  // namespace

Runner add_verify(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "verify",
      "Walk a database's whole chain in the store: every object is downloaded and decoded, its checksum\n"
      "and header checked; each incremental must name the previous one's checksum, each snapshot the\n"
      "chain checksum at its seq (the seq-0 snapshot: chain.json's base checksum), with no gap a\n"
      "restore could not bridge. Every log segment (the commits after a checkpoint) is downloaded and\n"
      "decoded too: its base must be a checkpoint of the chain with the checksum it names, and the\n"
      "segments of one base must run 1, 2, 3, ... each naming the previous one's checksum.");
  struct Flags {
    StoreFlags store;
    std::string temp_dir;
    bool deep = false;
    std::optional<uint64_t> deep_seq;
  };
  auto f = std::make_shared<Flags>();
  add_store_flags(cmd, f->store, true, true);
  cmd->add_option("--temp-dir", f->temp_dir, "Where objects are downloaded to be checked (default: $TMPDIR or /tmp)");
  cmd->add_flag("--deep", f->deep,
                "Also rebuild the file at one point (the head, or --seq) in a temp file and check it against\n"
                "the chain's whole-file digest: catches a set of segments that verify one by one but do not\n"
                "give the leader's file");
  cmd->add_option("--seq", f->deep_seq, "The point --deep checks (default: the head)");
  cmd->footer(
      "Examples:\n"
      "  duckblock verify --store file:///backups/duckblock --db app\n"
      "  duckblock verify --store s3://my-bucket/dbs/ --db app --json\n"
      "Exit status: 0 the chain is sound, 3 a break (each one is listed; the error names the first),\n"
      "1 failed (store unreachable, I/O), 2 bad usage, 4 database not in the store.");
  return [f]() {
    resolve(f->store, true);
    validate_db_name(f->store.db);
    std::string tmp_dir = f->temp_dir;
    if (tmp_dir.empty()) tmp_dir = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    auto counting = std::make_shared<CountingStore>(open_store_for(f->store, StoreUse::kRead));
    auto store = counting;
    ChainListing chain = list_chain(*store, "", f->store.db);
    if (chain.empty()) {
      throw Error(ErrorKind::kNotFound, "the store " + store->url() + " has no database '" + f->store.db + "'");
    }
    std::vector<ChainEntry> all = chain.incrementals;
    all.insert(all.end(), chain.snapshots.begin(), chain.snapshots.end());
    std::stable_sort(all.begin(), all.end(), [](const ChainEntry& a, const ChainEntry& b) {
      return a.seq != b.seq ? a.seq < b.seq : (!a.snapshot && b.snapshot);
    });
    std::vector<LogEntry> log = list_log(*store, "", f->store.db);
    uint64_t total = 0;
    for (const auto& e : all) total += e.size;
    for (const auto& e : log) total += e.size;

    std::vector<Problem> problems;
    std::vector<std::string> notes;
    // The chain's identity: chain.json, or convention 1 (no marker) for a
    // store written before it.
    ChainIdentity id;
    try {
      id = read_chain_identity(*store, "", f->store.db);
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::kCorruption) throw;
      problems.push_back({0, chain_marker_key("", f->store.db), err.what()});
    }
    // The chain checksum at each seq, as far as the objects establish it:
    // at seq 0 the seq-0 snapshot's own checksum (chain.json's base
    // checksum; 0 in a convention-1 store), incremental n's trailer gives it
    // at n, and a snapshot at S whose incrementals S and S+1 are gone
    // vouches for S only in a convention-1 store.
    std::map<uint64_t, uint64_t> chain_at = {{0, id.base_checksum}};
    auto has_snapshot_at = [&](uint64_t seq) {
      return std::any_of(chain.snapshots.begin(), chain.snapshots.end(), [&](const ChainEntry& x) { return x.seq == seq; });
    };
    auto has_incremental_at = [&](uint64_t seq) {
      return std::any_of(chain.incrementals.begin(), chain.incrementals.end(),
                         [&](const ChainEntry& x) { return x.seq == seq; });
    };
    std::optional<uint32_t> page_size;
    uint64_t done = 0;
    Progress progress("verifying", total, f->store.quiet);
    progress.tick_from([counting] { return counting->bytes_down(); });
    // Downloads are named like restore's, so a killed verify's file is
    // removed by the next run (see temp_files.h).
    remove_stale_temp_files(tmp_dir, ".duckblock-dl-");
    std::string tmp = tmp_dir + "/" + temp_file_name(".duckblock-dl-", "verify");
    for (const auto& e : all) {
      SegmentSummary s;
      try {
        s = download_segment(*store, e, tmp);
        ::unlink(tmp.c_str());
      } catch (const Error& err) {
        ::unlink(tmp.c_str());
        if (err.kind() != ErrorKind::kCorruption && err.kind() != ErrorKind::kNotFound) throw;
        problems.push_back({e.seq, e.key, err.what()});
        done += e.size;
        progress.update(done);
        continue;
      }
      done += e.size;
      progress.update(done);
      auto fail = [&](const std::string& why) { problems.push_back({e.seq, e.key, "object " + e.key + ": " + why}); };
      if (page_size && s.header.page_size != *page_size) {
        fail("page size " + std::to_string(s.header.page_size) + " differs from the chain's " +
             std::to_string(*page_size));
      }
      if (!page_size) page_size = s.header.page_size;
      if (e.snapshot) {
        if (e.seq == 0) {
          if (s.header.prev_checksum != 0) {
            fail("a seq-0 snapshot names prev_checksum 0, it names " + checksum_hex(s.header.prev_checksum));
          } else if (id.convention == 2 && s.checksum != id.base_checksum) {
            fail("its checksum " + checksum_hex(s.checksum) + " is not the chain's base checksum " +
                 checksum_hex(id.base_checksum) + " (chain.json): another database's or chain's snapshot");
          }
          continue;
        }
        auto it = chain_at.find(e.seq);
        if (it == chain_at.end()) {
          if (id.convention == 2 && !has_incremental_at(e.seq + 1)) {
            fail("neither incremental " + std::to_string(e.seq) + " nor " + std::to_string(e.seq + 1) +
                 " is in the store to bind this snapshot to the chain");
          }
          chain_at[e.seq] = s.header.prev_checksum;  // the base of what follows (incremental S+1 checks it)
        } else if (it->second != s.header.prev_checksum) {
          fail("snapshot's prev_checksum " + checksum_hex(s.header.prev_checksum) + " is not the chain checksum " +
               checksum_hex(it->second) + " at seq " + std::to_string(e.seq));
        }
        continue;
      }
      auto it = chain_at.find(e.seq - 1);
      if (it == chain_at.end() && has_snapshot_at(e.seq)) {
        // The incremental a prune keeps under the oldest snapshot: it states
        // the chain checksum that snapshot must name (checked next).
        chain_at[e.seq] = s.checksum;
        continue;
      }
      if (it == chain_at.end()) {
        fail("nothing before it: incremental seq " + std::to_string(e.seq - 1) + " is missing or unreadable and there is no snapshot at seq " +
             std::to_string(e.seq - 1));
      } else if (it->second != s.header.prev_checksum) {
        fail("prev_checksum " + checksum_hex(s.header.prev_checksum) + " does not match the checksum " +
             checksum_hex(it->second) + " at seq " + std::to_string(e.seq - 1));
      }
      chain_at[e.seq] = s.checksum;
    }
    // The log of each base B: it continues the chain at checkpoint B (its
    // checksum there) and its segments form an unbroken chain of their own.
    std::map<uint64_t, std::vector<const LogEntry*>> by_base;
    for (const auto& e : log) by_base[e.base_seq].push_back(&e);
    uint64_t oldest_snapshot = chain.snapshots.empty() ? 0 : chain.snapshots.front().seq;
    for (const auto& base_entries : by_base) {
      // Not a structured binding: the lambda below captures base, which
      // clang 14 (the sanitizer build) does not allow for a binding.
      const uint64_t base = base_entries.first;
      const auto& entries = base_entries.second;
      auto at = chain_at.find(base);
      bool restorable = !chain.snapshots.empty() && base >= oldest_snapshot;
      bool known_base = at != chain_at.end() && base <= chain.head_seq() && (base > 0 || !chain.snapshots.empty());
      if (!restorable) {
        notes.push_back("the log of base seq " + std::to_string(base) +
                        " cannot be restored (no snapshot that old); `duckblock prune` removes it");
      }
      std::optional<uint64_t> prev;  // the checksum the next segment must name (unknown after a damaged one)
      if (known_base) prev = at->second;
      uint64_t expected = 1;
      for (const LogEntry* e : entries) {
        auto fail = [&](const std::string& why) {
          problems.push_back({base, e->key, "log segment " + std::to_string(e->index) + " of base seq " +
                                                std::to_string(base) + " (" + e->key + "): " + why});
        };
        if (e->index != expected) {
          problems.push_back({base, e->key, "the log of base seq " + std::to_string(base) + " has a gap: segment" +
                                                (e->index - expected == 1 ? " " : "s ") + std::to_string(expected) +
                                                (e->index - expected == 1 ? "" : ".." + std::to_string(e->index - 1)) +
                                                " missing before " + e->key});
          prev.reset();
        }
        expected = e->index + 1;
        LogSegment seg;
        try {
          seg = fetch_log_segment(*store, *e);
        } catch (const Error& err) {
          if (err.kind() != ErrorKind::kCorruption && err.kind() != ErrorKind::kNotFound) throw;
          problems.push_back({base, e->key, err.what()});
          done += e->size;
          progress.update(done);
          prev.reset();
          continue;
        }
        done += e->size;
        progress.update(done);
        if (known_base && seg.header.base_checksum != at->second) {
          fail("it names base checksum " + checksum_hex(seg.header.base_checksum) + ", the chain checksum at seq " +
               std::to_string(base) + " is " + checksum_hex(at->second) +
               ": the log of another checkpoint, chain or database");
        } else if (!known_base && restorable) {
          fail("no object of the chain states the checksum of checkpoint " + std::to_string(base) +
               " (head seq " + std::to_string(chain.head_seq()) + "): nothing to apply this log to");
        }
        if (prev && seg.header.prev_checksum != *prev) {
          fail("prev_checksum " + checksum_hex(seg.header.prev_checksum) + " does not name " +
               (e->index == 1 ? "its base checkpoint's checksum " : "the checksum of segment " +
                                                                       std::to_string(e->index - 1) + ", ") +
               checksum_hex(*prev));
        }
        prev = seg.checksum;
      }
    }
    progress.finish();
    std::string deep = f->deep ? deep_check(*store, f->store.db, f->deep_seq.value_or(chain.head_seq()), tmp_dir,
                                            problems)
                               : "";
    if (chain.snapshots.empty()) {
      problems.push_back({0, "", "'" + f->store.db + "' has no snapshot: nothing can be restored"});
    } else {
      uint64_t oldest = chain.snapshots.front().seq;
      if (!chain.incrementals.empty() && chain.incrementals.front().seq < oldest && oldest > 0) {
        notes.push_back("incrementals before seq " + std::to_string(oldest + 1) +
                        " cannot be restored (no snapshot that old); `duckblock prune` removes them");
      }
    }
    std::sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) { return a.seq < b.seq; });
    if (f->store.json) {
      nlohmann::json ps = nlohmann::json::array();
      for (const auto& p : problems) ps.push_back({{"seq", p.seq}, {"key", p.key}, {"message", p.message}});
      nlohmann::json j = {{"store", store->url()},
                          {"db", f->store.db},
                          {"ok", problems.empty()},
                          {"snapshots", chain.snapshots.size()},
                          {"incrementals", chain.incrementals.size()},
                          {"log_segments", log.size()},
                          {"head_seq", chain.head_seq()},
                          {"convention", id.convention},
                          {"lineage", id.lineage},
                          {"bytes", total},
                          {"problems", ps},
                          {"notes", notes}};
      if (f->deep) j["deep"] = {{"seq", f->deep_seq.value_or(chain.head_seq())}, {"digest", deep}};
      if (!problems.empty()) j["first_break"] = ps.front();
      std::cout << j.dump(2) << "\n";
    } else {
      for (const auto& p : problems) std::cout << "BROKEN seq " << p.seq << ": " << p.message << "\n";
      for (const auto& n : notes) std::cout << "note: " << n << "\n";
      if (f->deep) std::cout << "deep check: whole-file digest " << deep << "\n";
      if (problems.empty()) {
        std::cout << "ok: '" << f->store.db << "' in " << store->url() << ": " << chain.snapshots.size()
                  << " snapshot(s), " << chain.incrementals.size() << " incremental(s), " << log.size()
                  << " log segment(s), head seq "
                  << chain.head_seq() << ", " << human_bytes(total) << "; every checksum and link verified\n";
      }
    }
    if (!problems.empty()) {
      std::cerr << "duckblock verify: the chain of '" << f->store.db << "' is broken at seq " << problems.front().seq
                << ": " << problems.front().message << " (" << problems.size() << " problem"
                << (problems.size() == 1 ? "" : "s") << "; restore to a point before seq " << problems.front().seq
                << " still works if a snapshot precedes it)\n";
      return kExitCorrupt;
    }
    return 0;
  };
}

}  // namespace duckblock::cli
