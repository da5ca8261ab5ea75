// Checks the leader makes before it trusts its spool or the store
// (internal to the core; replicator.cpp uses them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/chain.h"
#include "duckblock/store.h"

namespace duckblock {

// Throws Error(kCorruption) unless the spooled segment at `path` decodes,
// its checksum verifies and its header holds `seq`: the uploader calls it
// right before sending, so a damaged spool file never reaches the store.
void verify_spooled_segment(const std::string& path, uint64_t seq);

// What is already under a key our segment was to be put at.
enum class ExistingObject {
  kSame,         // our segment, byte for byte in checksum and header
  kForeign,      // a sound segment that is not ours: another leader's
  kDamagedOurs,  // damaged, and provably ours (a prefix of our bytes, or no segment at all)
  kDamaged,      // damaged, and not provably ours
};
struct ExistingVerdict {
  ExistingObject what = ExistingObject::kSame;
  std::string detail;  // why, for messages
};
ExistingVerdict judge_existing_object(ObjectStore& store, const std::string& key, const std::string& our_path);

// Before a leader appends: the store's chain must be the one its spool
// recorded (same lineage) and must still hold, at `uploaded_seq`, the object
// it uploaded there, whose chain checksum is `checksum_at_uploaded` (when
// known). Throws Error(kChainBroken) for a rebuilt or rewritten chain and
// Error(kCorruption) for a damaged head object.
void check_store_holds_our_head(ObjectStore& store, const std::string& prefix, const std::string& db,
                                const ChainListing& chain, const ChainIdentity& store_id,
                                const std::string& our_lineage, uint64_t uploaded_seq,
                                std::optional<uint64_t> checksum_at_uploaded, const std::string& spool_dir);

}  // namespace duckblock
