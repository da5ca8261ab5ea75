// The page index's hashes on disk (SPOOL/DB/pages.idx), read and written in
// 4 KiB blocks through pread/pwrite with a cache of bounded size, so a
// leader's memory does not grow with its database (32 bytes a page would be
// 800 MB at 100 GB).
//
// Layout: two header slots (4 KiB each, at 0 and 4096; the valid one with
// the higher generation counts, so a torn header write leaves the other),
// then blocks of 127 SHA-256 entries (4064 bytes) and a trailer: the block's
// number (8 bytes) and the first 16 bytes of a SHA-256 of the block up to
// there. An all-zero block (never written: a hole) holds no entries. A
// block whose trailer does not verify counts as holding none: its pages
// ship again, never wrongly skipped. An all-zero entry means "no entry".
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "duckblock/env.h"
#include "duckblock/sha256.h"

namespace duckblock {

class PagedHashes {
 public:
  static constexpr size_t kBlockSize = 4096;
  static constexpr uint64_t kPerBlock = 127;
  static constexpr uint64_t kBlocksOffset = 2 * kBlockSize;

  struct Header {
    uint64_t generation = 0;
    uint32_t page_size = 0;
    uint64_t file_length = 0;
    uint64_t seq = 0;
    uint64_t chain_checksum = 0;
    // The whole-file digest (file_digest.h) of the entries at this
    // position, and how many pages below the file length had no entry. Kept
    // in a second sealed record of the slot that earlier readers ignore.
    // nullopt when not known: never saved, or invalidated because a block
    // went back to disk after this header (its entries may be of a later
    // seq than the header's, so the saved sum no longer describes them).
    struct Digest {
      std::array<uint8_t, 2048> lthash{};
      uint64_t missing = 0;
    };
    std::optional<Digest> digest;
  };

  // Opens (creating it with `mode` if missing) the file at `path`. The
  // cache holds at most `cache_blocks` blocks. Writes, syncs and the
  // truncation of clear() go through `env` (null: the real file system).
  PagedHashes(const std::string& path, uint32_t mode, size_t cache_blocks, Env* env = nullptr);
  ~PagedHashes();  // dirty blocks not flushed are dropped (see PageIndex)
  PagedHashes(const PagedHashes&) = delete;
  PagedHashes& operator=(const PagedHashes&) = delete;

  // The newest valid header, if any.
  std::optional<Header> read_header();
  // Writes the next header slot (generation + 1), after flush().
  void write_header(Header h, bool sync);
  // Empties the file: no header, no entries.
  void clear();

  Sha256Digest get(uint64_t id);
  // The entries of block `block` (kPerBlock of them).
  void get_block(uint64_t block, std::array<Sha256Digest, kPerBlock>& out);
  void put(uint64_t id, const Sha256Digest& digest);
  // Entries [from, to) become "no entry".
  void erase_range(uint64_t from, uint64_t to);
  // Every entry at or past this id is "no entry": past the file's last
  // block and every cached one. Bounds walks over a count that a header
  // claims, whatever it claims.
  uint64_t entries_end();
  // Writes every dirty block; with `sync`, then fdatasync.
  void flush(bool sync);
  // Blocks seen damaged (their entries dropped) since the file was opened.
  uint64_t damaged_blocks() const;

  size_t cached_bytes() const;  // the cache's block bytes now
  size_t cache_limit_bytes() const { return cache_blocks_ * kBlockSize; }
  const std::string& path() const { return path_; }

 private:
  struct Slot {
    std::unique_ptr<uint8_t[]> data;
    bool dirty = false;
    std::list<uint64_t>::iterator lru;
  };
  Slot& slot_locked(uint64_t block);
  void write_block_locked(uint64_t block, Slot& s);
  void evict_locked();
  void write_header_locked(const Header& h, bool sync);
  void invalidate_header_digest_locked();

  std::string path_;
  int fd_ = -1;
  size_t cache_blocks_;
  Env* env_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Slot> slots_;
  std::list<uint64_t> lru_;  // front: most recently used
  uint64_t generation_ = 0;
  // The newest header written or read, while it vouches for a digest: a
  // block write clears its digest first (invalidate_header_digest_locked).
  std::optional<Header> digest_header_;
  uint64_t damaged_blocks_ = 0;
};

}  // namespace duckblock
