// Proof that a file is exactly what the leader last shipped, recorded at a
// clean close so the next add() can skip comparing the whole file with the
// page index (docs/ARCHITECTURE.md, "Clean close"). The record holds the
// chain position it vouches for, the file's stamp (device, inode, size,
// st_mtime and st_ctime in nanoseconds), a SHA-256 of its first pages and the
// format's own evidence (PageReader::evidence). add() consumes it: it is
// removed durably before the file is compared, so a crash after that open
// can never reuse it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "duckblock/page_index.h"
#include "duckblock/sha256.h"

namespace duckblock {

struct CleanClose {
  uint64_t seq = 0;             // the chain head (and the page index's position) at the close
  uint64_t chain_checksum = 0;
  FileStamp stamp;
  Sha256Digest head_digest{};   // of the file's first kProofPages pages
  std::string evidence;         // PageReader::evidence() at the close
  int64_t taken_ns = 0;         // CLOCK_REALTIME when the stamp was taken
};

// Pages at the start of the file hashed into the proof: DuckDB's main header
// and both database headers lie in the first three.
constexpr uint64_t kProofPages = 4;

// The file's proof as it is now, or nullopt if `reader` cannot give one
// (no stamp, no evidence). With `settle`, waits (a few milliseconds at most)
// until the file's st_ctime is older than the clock by more than the
// kernel's timestamp granularity, so any later write gets a different
// st_ctime; nullopt if the file changed meanwhile.
std::optional<CleanClose> take_proof(PageReader& reader, uint32_t page_size, bool settle);

// True if the file `reader` reads still matches `rec`'s stamp, first pages
// and evidence.
bool proof_holds(const CleanClose& rec, PageReader& reader, uint32_t page_size);

// The record in `dir` (clean.json). write_clean_close makes it durable;
// take_clean_close reads it and removes it durably (nullopt if there was
// none or it is unreadable: either way the whole file is compared).
void write_clean_close(const std::string& dir, const CleanClose& rec, uint32_t mode);
std::optional<CleanClose> take_clean_close(const std::string& dir);
// Removes the record, durably, if there is one (a push after the close).
void drop_clean_close(const std::string& dir);

}  // namespace duckblock
