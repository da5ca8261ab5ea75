// Pruning never leaves the store unable to restore a point inside the
// retention window: it keeps the newest snapshot at or before the window's
// start (and every later snapshot and incremental), plus older snapshots up
// to min_snapshots. Times are the store's object times.
#include <algorithm>

#include "duckblock/restore.h"

namespace duckblock {

PrunePlan plan_prune(const ChainListing& chain, const RetentionPolicy& policy, int64_t now_ms) {
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
    if (e.seq <= oldest_kept) plan.remove.push_back(e);
  }
  for (int i = 0; i < keep_from; ++i) plan.remove.push_back(chain.snapshots[i]);
  return plan;
}

void execute_prune(ObjectStore& store, const PrunePlan& plan) {
  // Incrementals first, then snapshots, oldest first: a crash part-way
  // leaves only objects nothing needs, never a kept point without its base.
  std::vector<std::string> incrementals, snapshots;
  for (const auto& e : plan.remove) (e.snapshot ? snapshots : incrementals).push_back(e.key);
  for (size_t i = 0; i < incrementals.size(); i += 1000) {
    store.remove({incrementals.begin() + i, incrementals.begin() + std::min(incrementals.size(), i + 1000)});
  }
  for (size_t i = 0; i < snapshots.size(); i += 1000) {
    store.remove({snapshots.begin() + i, snapshots.begin() + std::min(snapshots.size(), i + 1000)});
  }
}

}  // namespace duckblock
