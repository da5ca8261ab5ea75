// Snapshots by compaction (docs/ARCHITECTURE.md, "Snapshots by compaction").
//
// The snapshot at seq S is built from the newest snapshot at or before S and
// the incrementals after it up to S, never from the live file: every input
// stores its pages sorted by page id, so a streaming k-way merge by page id
// writes the new snapshot in bounded memory (per input one page and a read
// buffer, one zstd window for the base: compressed incrementals are decoded
// to plain temporary copies first, one at a time; no segment and no copy of
// the file in memory or on disk). For each page the newest input wins, and the inputs'
// file-length records are honoured as an applier honours them: a shrink drops
// pages past the new length or cuts the last one short, a growth reads as
// zeros where nothing was written.
//
// The result is the snapshot a leader would have made from the file at S,
// byte for byte except created_ms: seq S, prev_checksum the chain checksum at
// S, every page of the file in order (the last one short if the file is), no
// file-length record. Every input is verified before the merge starts
// (checksum, trailer, seq, and that each continues the previous: the base
// snapshot's binding) and again while it streams; any defect discards the
// output and keeps its kind (kCorruption, kChainBroken).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/chain.h"
#include "duckblock/format.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"

namespace duckblock {

struct CompactProgress {
  uint64_t pages_done = 0, pages_total = 0;
  uint32_t page_size = 0;
};

struct CompactOptions {
  // Output compression: 0 plain hadbp v1, 1..19 zstd level.
  int compression = kDefaultCompressionLevel;
  // The output's created_ms (default: the system clock).
  std::function<int64_t()> now_ms;
  // Polled between pages: true stops the merge with Error(kRetryable); the
  // output is discarded.
  std::function<bool()> cancelled;
  std::function<void(const CompactProgress&)> progress;
  uint32_t file_mode = 0600;  // the output's (it holds the database's pages)
};

// One verified local copy of an input segment.
struct CompactInput {
  std::string path;
  SegmentSummary summary;  // from verify_segment / download_segment
};

struct CompactResult {
  uint64_t seq = 0;
  uint64_t base_seq = 0;         // the snapshot the merge started from
  uint64_t incrementals = 0;     // merged on top of it
  uint64_t checksum = 0;         // the new snapshot's trailer checksum
  uint64_t prev_checksum = 0;    // the chain checksum at seq
  uint64_t encoded_bytes = 0;
  uint64_t pages = 0;
  uint64_t file_length = 0;      // the file the snapshot restores
  std::vector<std::string> skipped;  // newer bases not used, each with why
};

// The merge: `base` is a snapshot at B, `incrementals` are B+1..S in order
// (at least one). `chain_at_base` is the chain checksum at B (for B > 0 the
// snapshot's prev_checksum; at 0, 0 in a convention-1 chain and the
// snapshot's own checksum in convention 2: see compact_chain_at_base). Writes
// `out_path` durably (a temp file in its directory, fsync, rename, directory
// fsync) only if every input verifies; nothing is left at out_path or in the
// temp file otherwise. `temp_prefix` names the temp file (so the caller's
// stale-file cleanup finds it after a kill -9).
CompactResult compact_segments(const CompactInput& base, const std::vector<CompactInput>& incrementals,
                               uint64_t chain_at_base, const std::string& out_path, const std::string& temp_prefix,
                               const CompactOptions& options = {});

// The chain checksum at a snapshot's seq, checking a seq-0 snapshot against
// the chain's identity (Error(kChainBroken) if it is not this chain's).
uint64_t compact_chain_at_base(const SegmentSummary& base, const ChainIdentity& id);

// Where compact_snapshot finds its inputs: the store, and a leader's spool
// (seq -> path) tried first. A spool file is hard-linked into work_dir (it
// must be on the spool's file system), so the uploader may delete it
// meanwhile; one already gone is taken from the store.
struct CompactSources {
  ObjectStore* store = nullptr;
  std::string prefix, db;
  ChainIdentity id;
  std::map<uint64_t, std::string> spool_snapshots, spool_incrementals;
  std::string work_dir;
  std::string temp_prefix = ".duckblock-compact-";
};

// Builds the snapshot at `seq` into `out_path` from the newest snapshot
// before it that verifies and belongs to the chain (a damaged or foreign one
// is skipped for an older one, noted in the result's `skipped`) and the
// incrementals after it. Store inputs are downloaded and verified as restore
// does (download_segment, bind_snapshot). Errors: kNotFound (no snapshot
// before seq, or incremental `seq` missing), kChainBroken (a gap),
// kCorruption (a damaged incremental), kRetryable (the store).
CompactResult compact_snapshot(const CompactSources& sources, uint64_t seq, const std::string& out_path,
                               const CompactOptions& options = {});

}  // namespace duckblock
