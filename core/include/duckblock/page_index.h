// What the last shipped state of a file looked like, page by page, so a push
// ships only pages whose bytes changed. Each 4 KiB page is remembered by its
// SHA-256 (32 bytes: 8 MiB per GiB of file); a cheaper hash would let a
// crafted page collide with an old one and silently not ship.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/sha256.h"

namespace duckblock {

// What fstat says about a file: which file it is and when it last changed.
// A clean close records it (clean_close.h); st_ctime cannot be set by a
// user, so an equal stamp later means nobody wrote the file in between.
struct FileStamp {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

// Random access to the bytes of the file being replicated. The DuckDB layer
// reads through DuckDB's own file handle (closing a second descriptor would
// drop DuckDB's POSIX lock); the command line reads the file directly.
class PageReader {
 public:
  virtual ~PageReader() = default;
  // Reads up to n bytes at offset; returns fewer only at the end of the file.
  virtual size_t read_at(uint64_t offset, void* buf, size_t n) = 0;
  virtual uint64_t file_size() = 0;
  // Permission bits of the file read, if known: the leader's spool takes them.
  virtual std::optional<uint32_t> file_mode() { return std::nullopt; }
  // The file's stamp (fstat of the file read), if known. Without one, a
  // clean close proves nothing and add() always compares the whole file.
  virtual std::optional<FileStamp> stamp() { return std::nullopt; }
  // What the file's format knows about its state beyond bytes and stamp,
  // recorded at a clean close and compared at the next add() (the DuckDB
  // layer names its headers' iteration counters and the absence of a
  // .wal). nullopt: the state cannot be vouched for, so the whole file is
  // compared.
  virtual std::optional<std::string> evidence() { return std::string(); }
};

class FilePageReader final : public PageReader {
 public:
  explicit FilePageReader(const std::string& path);
  ~FilePageReader() override;
  FilePageReader(const FilePageReader&) = delete;
  FilePageReader& operator=(const FilePageReader&) = delete;
  size_t read_at(uint64_t offset, void* buf, size_t n) override;
  uint64_t file_size() override;
  std::optional<uint32_t> file_mode() override;
  std::optional<FileStamp> stamp() override;

 private:
  std::string path_;
  int fd_ = -1;
};

// Calls fn(page_id, bytes, len) for each id in `ids` (ascending, unique) that
// lies below `length`, reading runs of consecutive pages with large reads.
// The last page of the file may be short.
void read_pages(PageReader& reader, uint32_t page_size, uint64_t length, const std::vector<uint64_t>& ids,
                const std::function<void(uint64_t, const uint8_t*, size_t)>& fn);

class PageIndex {
 public:
  explicit PageIndex(uint32_t page_size = 4096) : page_size_(page_size) {}

  uint32_t page_size() const { return page_size_; }
  uint64_t file_length() const { return file_length_; }
  uint64_t page_count() const { return hashes_.size(); }

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
  // threads, so `reader.read_at` must allow concurrent calls.
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
  // Records one page's bytes as shipped (when the caller already has them).
  void set(uint64_t page_id, const uint8_t* data, size_t len);
  void set_hash(uint64_t page_id, const Sha256Digest& digest);
  void set_length(uint64_t file_length);

  // Atomic save (durable unless told otherwise: see write_file_atomic) and
  // load. The file ends in a SHA-256 of its content; load returns nullopt
  // for a missing, torn or damaged file.
  void save(const std::string& path, bool durable = true, uint32_t mode = 0644) const;
  static std::optional<PageIndex> load(const std::string& path);

 private:
  uint32_t page_size_;
  uint64_t file_length_ = 0;
  uint64_t seq_ = 0;
  uint64_t chain_checksum_ = 0;
  std::vector<Sha256Digest> hashes_;
};

}  // namespace duckblock
