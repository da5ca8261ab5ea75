// Chain identity and snapshot binding (docs/FORMAT.md, "Chain identity").
//
// A chain written by this version carries a marker object beside its
// segments, {prefix}{db}/chain.json, written before the seq-0 snapshot:
//   {"hadbp_chain": 2, "lineage": "<32 hex>", "base_checksum": "<16 hex>"}
// "lineage" is random, made when the chain starts, and recorded by pushers
// (spool state) and followers (replica journal): a database deleted and
// rebuilt by another leader has another lineage and is never taken for
// ours. "base_checksum" is the seq-0 snapshot's own checksum, which is the
// chain checksum at 0 (incremental 1 names it as its prev_checksum). A store
// without the marker was written before: convention 1, where incremental 1
// chains from 0.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/apply.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"

namespace duckblock {

struct ChainIdentity {
  int convention = 1;          // 1: before chain.json; 2: with it
  std::string lineage;         // "" for convention 1
  uint64_t base_checksum = 0;  // the chain checksum at seq 0
  bool operator==(const ChainIdentity&) const = default;
};

std::string chain_marker_key(const std::string& prefix, const std::string& db);

// The identity the store declares for `db`: its marker, or convention 1 if
// there is none. Throws Error(kCorruption) for a marker that does not parse.
ChainIdentity read_chain_identity(ObjectStore& store, const std::string& prefix, const std::string& db);

// Writes the marker with put-if-absent. If one is there already it must be
// this identity, else Error(kFenced): another leader started this database.
void write_chain_identity(ObjectStore& store, const std::string& prefix, const std::string& db,
                          const ChainIdentity& id);

// A fresh random lineage (32 hex digits).
std::string new_lineage();

// The chain checksum at `seq` as the store's objects state it: the trailer
// of incremental `seq`, else the prev_checksum of incremental seq+1, else
// (seq 0) the identity's base checksum. nullopt if none of them is there.
// Reads at most 40 bytes per object (ranged GETs): no download.
std::optional<uint64_t> stated_chain_checksum(ObjectStore& store, const ChainListing& chain,
                                              const ChainIdentity& id, uint64_t seq);

// Checks that a downloaded, verified snapshot belongs to this chain at its
// seq and returns the position restoring it gives. A snapshot at S > 0 must
// name the chain checksum at S (stated by incremental S or S+1); the one at
// 0 must have prev_checksum 0 and, in a convention-2 chain, the marker's
// base checksum. So a snapshot of another database, chain or seq, or an
// incremental copied under a snapshot key, is refused: Error(kChainBroken).
ChainPosition bind_snapshot(ObjectStore& store, const ChainListing& chain, const ChainIdentity& id,
                            const ChainEntry& entry, const SegmentSummary& summary);

// The error for a lineage that is not the one recorded locally.
[[noreturn]] void throw_lineage_mismatch(const std::string& db, const std::string& store_lineage,
                                         const std::string& ours, const std::string& what_to_do);

}  // namespace duckblock
