// Pruning never leaves the store unable to restore a point inside the
// retention window: it keeps the newest snapshot at or before the window's
// start (and every later snapshot and incremental), plus older snapshots up
// to min_snapshots. Times are the store's object times.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "duckblock/chain.h"
#include "duckblock/error.h"
#include "duckblock/restore.h"

namespace duckblock {

namespace {

// Incremental S of the oldest kept snapshot at S is what states the chain
// checksum the snapshot must name (chain.h, bind_snapshot), unless
// incremental S+1 does. So it goes only if S+1 is there.
bool incremental_removable(const ChainListing& chain, const ChainEntry& e, uint64_t base) {
  if (e.seq < base) return true;
  if (e.seq > base) return false;
  return std::any_of(chain.incrementals.begin(), chain.incrementals.end(),
                     [&](const ChainEntry& x) { return x.seq == base + 1; });
}

// The whole-file digests of the points no kept object can restore: those
// before the oldest restorable seq. A removed entry's key names the prefix
// and database ({prefix}{db}/{gen}/{seq}.hadbp).
std::vector<std::string> digests_of(const PrunePlan& plan) {
  std::vector<std::string> keys;
  for (const auto& e : plan.remove) {
    if (e.seq >= plan.oldest_restorable_seq) continue;
    constexpr size_t kTail = 1 + 4 + 1 + 16 + 6;
    if (e.key.size() <= kTail) continue;
    char seq[20];
    std::snprintf(seq, sizeof seq, "%016llx", static_cast<unsigned long long>(e.seq));
    keys.push_back(e.key.substr(0, e.key.size() - kTail) + "/digest/" + seq + ".json");
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

// The log of base B is needed by the points between checkpoints B and B+1;
// once the oldest kept snapshot is newer than B none of them is restorable.
void plan_log(PrunePlan& plan, const std::vector<LogEntry>& log) {
  plan.remove_log.clear();
  for (const auto& e : log) {
    if (e.base_seq < plan.oldest_restorable_seq) plan.remove_log.push_back(e);
  }
}

}  // namespace

PrunePlan plan_prune(const ChainListing& chain, const RetentionPolicy& policy, int64_t now_ms,
                     const std::vector<LogEntry>& log) {
  PrunePlan plan;
  if (chain.snapshots.empty()) return plan;  // nothing to restore from: keep all
  if (policy.window.count() <= 0) {
    plan.oldest_restorable_seq = chain.snapshots.front().seq;
    return plan;
  }
  int64_t cutoff = now_ms - policy.window.count();
  // The state at the cutoff is the last point created at or before it.
  uint64_t cutoff_seq = 0;
  bool any_before = false;
  for (const auto& e : chain.incrementals) {
    if (e.modified_ms <= cutoff) {
      cutoff_seq = e.seq;
      any_before = true;
    }
  }
  for (const auto& s : chain.snapshots) {
    if (s.modified_ms <= cutoff && s.seq >= cutoff_seq) {
      cutoff_seq = s.seq;
      any_before = true;
    }
  }
  if (!any_before) {
    plan.oldest_restorable_seq = chain.snapshots.front().seq;
    return plan;  // everything is inside the window
  }
  // Index of the newest snapshot at or before cutoff_seq.
  int keep_from = -1;
  for (size_t i = 0; i < chain.snapshots.size(); ++i) {
    if (chain.snapshots[i].seq <= cutoff_seq) keep_from = static_cast<int>(i);
  }
  if (keep_from < 0) keep_from = 0;
  int newest = static_cast<int>(chain.snapshots.size()) - 1;
  int min_keep = static_cast<int>(std::max<uint64_t>(policy.min_snapshots, 1));
  keep_from = std::min(keep_from, std::max(0, newest - min_keep + 1));
  uint64_t oldest_kept = chain.snapshots[keep_from].seq;
  plan.oldest_restorable_seq = oldest_kept;
  for (const auto& e : chain.incrementals) {
    if (incremental_removable(chain, e, oldest_kept)) plan.remove.push_back(e);
  }
  for (int i = 0; i < keep_from; ++i) plan.remove.push_back(chain.snapshots[i]);
  plan_log(plan, log);
  return plan;
}

namespace {

// In requests of at most 1000 keys (S3's DeleteObjects limit).
void remove_in_batches(ObjectStore& store, const std::vector<std::string>& keys) {
  for (size_t i = 0; i < keys.size(); i += 1000) {
    store.remove({keys.begin() + i, keys.begin() + std::min(keys.size(), i + 1000)});
  }
}

}  // namespace

void execute_prune(ObjectStore& store, const PrunePlan& plan) {
  // Log segments, then incrementals, then snapshots, oldest first: a crash
  // part-way leaves only objects nothing needs, never a kept point without
  // its base.
  std::vector<std::string> logs;
  for (const auto& e : plan.remove_log) logs.push_back(e.key);
  remove_in_batches(store, logs);
  std::vector<std::string> incrementals, snapshots;
  for (const auto& e : plan.remove) (e.snapshot ? snapshots : incrementals).push_back(e.key);
  remove_in_batches(store, incrementals);
  remove_in_batches(store, snapshots);
  // Last: a crash before leaves digests of points nothing restores, which
  // nothing reads.
  remove_in_batches(store, digests_of(plan));
}

}  // namespace duckblock

namespace duckblock {

namespace {

std::string verify_temp(const std::string& dir) {
  static std::atomic<uint64_t> n{0};
  return dir + "/.duckblock-prune-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// Downloads, verifies and binds one snapshot; returns the position it gives.
ChainPosition check_snapshot(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                             const ChainEntry& snap, const std::string& dir) {
  std::string tmp = verify_temp(dir);
  SegmentSummary s = download_segment(store, snap, tmp);  // removes tmp on failure
  ::unlink(tmp.c_str());
  return bind_snapshot(store, chain, id, snap, s);
}

// Downloads and verifies every incremental after `from`, each linked to the
// one before.
void check_incrementals(ObjectStore& store, const ChainListing& chain, ChainPosition from, const std::string& dir) {
  uint64_t last = from.seq;
  for (const auto& e : chain.incrementals) last = std::max(last, e.seq);
  for (uint64_t seq = from.seq + 1; seq <= last; ++seq) {
    auto it = std::find_if(chain.incrementals.begin(), chain.incrementals.end(),
                           [&](const ChainEntry& e) { return e.seq == seq; });
    if (it == chain.incrementals.end()) {
      throw Error(ErrorKind::kChainBroken, "incremental seq " + std::to_string(seq) + " is missing");
    }
    std::string tmp = verify_temp(dir);
    SegmentSummary s = download_segment(store, *it, tmp);
    ::unlink(tmp.c_str());
    ApplyOptions opt;
    check_continues(s, from, opt);
    from = {seq, s.checksum};
  }
}

bool recoverable(const Error& e) {
  return e.kind() == ErrorKind::kCorruption || e.kind() == ErrorKind::kChainBroken ||
         e.kind() == ErrorKind::kNotFound;
}

}  // namespace

PrunePlan plan_safe_prune(ObjectStore& store, const std::string& prefix, const std::string& db,
                          const ChainListing& chain, const RetentionPolicy& policy, int64_t now_ms,
                          const std::string& temp_dir, std::vector<std::string>* notes,
                          const std::vector<LogEntry>& log) {
  PrunePlan plan = plan_prune(chain, policy, now_ms, log);
  if (plan.remove.empty() && plan.remove_log.empty()) return plan;
  ChainIdentity id = read_chain_identity(store, prefix, db);
  // The snapshot every point in the window is restored from (directly, or
  // through the incrementals after it), and the older ones it can fall back
  // to, newest first.
  std::vector<const ChainEntry*> bases;
  for (auto it = chain.snapshots.rbegin(); it != chain.snapshots.rend(); ++it) {
    if (it->seq <= plan.oldest_restorable_seq) bases.push_back(&*it);
  }
  std::string damage;
  for (const ChainEntry* base : bases) {
    ChainPosition pos;
    try {
      pos = check_snapshot(store, chain, id, *base, temp_dir);
    } catch (const Error& e) {
      if (!recoverable(e)) throw;
      if (notes) notes->push_back("snapshot at seq " + std::to_string(base->seq) + " cannot be restored: " + e.what());
      if (damage.empty()) damage = e.what();
      continue;
    }
    try {
      check_incrementals(store, chain, pos, temp_dir);
    } catch (const Error& e) {
      if (!recoverable(e)) throw;
      throw Error(e.kind(), "prune deleted nothing: a point inside the window is not restorable through objects "
                            "that verify (" + std::string(e.what()) + "); `duckblock verify` lists the damage");
    }
    if (base->seq == plan.oldest_restorable_seq) return plan;
    // Fall back: keep this older snapshot and everything after it.
    PrunePlan safer;
    safer.oldest_restorable_seq = base->seq;
    for (const auto& e : plan.remove) {
      if (e.snapshot ? e.seq < base->seq : incremental_removable(chain, e, base->seq)) safer.remove.push_back(e);
    }
    plan_log(safer, plan.remove_log);
    if (notes) {
      notes->push_back("kept the snapshot at seq " + std::to_string(base->seq) +
                       " and the incrementals after it: the newer snapshot the window would rely on is damaged");
    }
    return safer;
  }
  throw Error(ErrorKind::kCorruption, "prune deleted nothing: no snapshot at or before seq " +
                                          std::to_string(plan.oldest_restorable_seq) +
                                          " verifies, so the window's oldest points rely on damaged objects (" +
                                          damage + "); `duckblock verify` lists the damage");
}

}  // namespace duckblock
