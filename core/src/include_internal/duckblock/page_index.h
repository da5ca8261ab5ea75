// What the last shipped state of a file looked like, page by page, so a push
// ships only pages whose bytes changed. Each 4 KiB page is remembered by its
// SHA-256 (32 bytes: 8 MiB per GiB of file, kept on disk); a cheaper hash
// would let a crafted page collide with an old one and silently not ship.
// Internal to the core (not installed): the leader's page index. What a
// program gives the Replicator to read its file is page_reader.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "duckblock/env.h"
#include "duckblock/file_digest.h"
#include "duckblock/page_reader.h"
#include "duckblock/sha256.h"

namespace duckblock {

class PagedHashes;

// The index lives in a file of the spool (pages.idx), read and written in
// 4 KiB blocks through a cache of bounded size (kDefaultCacheBytes), so a
// leader's memory does not grow with its database. The file is a cache:
// a damaged block counts as no entries (its pages ship again), a damaged
// header as an empty index (every page ships).
//
// Crash safety: the header names a position S (seq, chain checksum) and is
// written only after every entry block is on disk (fdatasync between), at
// save(). Between saves, blocks are written back with entries of durable
// pushes only (a push still queued for the spooler stays in memory, see
// set_pending), so every entry on disk is the page's hash at some seq
// between S and the spool's head, or no entry. Replaying the segments after
// S (Replicator's load_index) then gives exactly the head's index.
class PageIndex {
 public:
  static constexpr size_t kDefaultCacheBytes = 16u << 20;

  // An index bound to no file: no entries, every page differs. open()
  // binds one.
  explicit PageIndex(uint32_t page_size = 4096);
  ~PageIndex();
  PageIndex(PageIndex&&) noexcept;
  PageIndex& operator=(PageIndex&&) noexcept;

  // The index in the file at `path` (created with `mode` if missing), at
  // the position its header names; `found` is false (and the index and file
  // empty) if there is no valid header of this page size. A pages.idx of
  // the earlier in-memory format (whole-file digest) is converted. Writes
  // go through `env` (null: the real file system).
  static PageIndex open(const std::string& path, uint32_t page_size, uint32_t mode, bool* found = nullptr,
                        size_t cache_bytes = kDefaultCacheBytes, Env* env = nullptr);
  // No entries, position 0, the file emptied.
  void clear();

  uint32_t page_size() const { return page_size_; }
  uint64_t file_length() const { return file_length_; }
  uint64_t page_count() const { return count_; }

  // The chain position the index describes: the file looked like this right
  // after segment `seq` (whose checksum is `chain_checksum`). Saved with it,
  // so a leader that restarts with an older index can replay the segments
  // after it instead of trusting a stale hash (a page changed A->B->A while
  // the index still said A would otherwise never ship).
  uint64_t seq() const { return seq_; }
  uint64_t chain_checksum() const { return chain_checksum_; }
  void set_position(uint64_t seq, uint64_t chain_checksum) {
    seq_ = seq;
    chain_checksum_ = chain_checksum;
  }

  // Pages among `candidates` (all pages of the file if null) whose bytes in
  // `reader` differ from the index, in ascending order, plus every page past
  // the indexed length. Does not change the index. Large diffs hash on two
  // threads, so `reader.read_at` must allow concurrent calls. A whole-file
  // diff holds no list of the file's pages: its memory is the changed ones.
  struct Diff {
    std::vector<uint64_t> changed;
    std::vector<Sha256Digest> digests;  // of the changed pages, in the same order
    // With keep_data: the changed pages' bytes back to back, page i at
    // i * page_size (only the file's last page can be short, and it is last).
    std::vector<uint8_t> data;
    uint64_t file_length = 0;
    bool length_changed = false;
  };
  Diff diff(PageReader& reader, const std::vector<uint64_t>* candidates, bool keep_data = false) const;

  // Records the bytes of `pages` as shipped and the file's new length.
  void update(PageReader& reader, const std::vector<uint64_t>& pages, uint64_t file_length);
  // Records every page of the file as shipped (in bounded memory).
  void update_all(PageReader& reader);
  // Records one page's bytes as shipped (when the caller already has them).
  void set(uint64_t page_id, const uint8_t* data, size_t len);
  void set_hash(uint64_t page_id, const Sha256Digest& digest);
  // A page of push `seq`, not yet durable in the spool: seen by diff() at
  // once, written to the file only by settle() once seq is durable (a crash
  // before then must not leave an entry of a seq the spool never had).
  void set_pending(uint64_t page_id, const Sha256Digest& digest, uint64_t seq);
  void settle(uint64_t durable_seq);
  void set_length(uint64_t file_length);

  // Writes every entry (every pending push must be durable by now), syncs
  // them, then writes the header at the current position; with `durable`,
  // syncs that too. Requires a bound index.
  void save(bool durable);

  // The whole-file digest (file_digest.h) of the file the index describes:
  // kept up to date by every change of an entry (the old entry's element
  // out, the new one's in), saved in the header, and recomputed from the
  // entries (a scan of pages.idx, 32 bytes a page) only when the saved one
  // cannot be trusted (a crash between saves, a damaged block). nullopt if
  // some page below the file length has no entry (a damaged block whose
  // pages did not ship again): the file's digest is then not known.
  std::optional<FileDigest> file_digest();
  // Entries scanned by recomputations so far (tests and figures).
  uint64_t digest_pages_scanned() const { return digest_pages_scanned_; }

  // The cache's bytes now, and its bound.
  size_t cached_bytes() const;
  size_t cache_limit_bytes() const;

 private:
  Sha256Digest expected(uint64_t id) const;  // all zero: no entry
  void grow_to(uint64_t count);
  // The digest's bookkeeping when page `id` (< count_) changes entry.
  void account_entry(uint64_t id, const Sha256Digest& old_entry, const Sha256Digest& new_entry);
  void recompute_digest();

  uint32_t page_size_;
  uint64_t file_length_ = 0;
  uint64_t seq_ = 0;
  uint64_t chain_checksum_ = 0;
  uint64_t count_ = 0;  // ids below it may have entries
  std::unique_ptr<PagedHashes> store_;  // null: bound to no file
  // Pages of pushes not yet durable: id -> (digest, seq).
  std::unordered_map<uint64_t, std::pair<Sha256Digest, uint64_t>> pending_;
  // Sum of the elements of every entry below count_, and how many ids below
  // count_ have none. Exact while digest_known_; damaged_seen_ is the
  // store's damaged-block count it was exact for.
  FileDigest digest_;
  uint64_t missing_ = 0;
  bool digest_known_ = true;
  uint64_t damaged_seen_ = 0;
  uint64_t digest_pages_scanned_ = 0;
};

}  // namespace duckblock
