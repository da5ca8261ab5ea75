// How the Replicator reads the file it replicates: a PageReader (the DuckDB
// layer reads through DuckDB's own handle; FilePageReader reads a file
// directly), and the file's stamp a clean close records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

struct stat;

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
// The same for every page below `length`, holding no list of them (memory
// does not grow with the file).
void read_all_pages(PageReader& reader, uint32_t page_size, uint64_t length,
                    const std::function<void(uint64_t, const uint8_t*, size_t)>& fn);
// The same for the pages [first, end) only (those below `length`).
void read_page_range(PageReader& reader, uint32_t page_size, uint64_t length, uint64_t first, uint64_t end,
                     const std::function<void(uint64_t, const uint8_t*, size_t)>& fn);

// The stamp fstat's result gives.
FileStamp stamp_of(const struct stat& st);

}  // namespace duckblock
