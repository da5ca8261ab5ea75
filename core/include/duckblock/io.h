// Streams of bytes: the format, the stores and apply exchange data through
// these two interfaces so a segment of any size moves in bounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace duckblock {

class Env;

// A readable stream. read() returns how many bytes it put in `buf` (at most
// `n`), and 0 only at the end of the stream. Errors throw duckblock::Error.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(void* buf, size_t n) = 0;
  // Bytes left to read, when known. Decoders use it to reject a header that
  // claims more than the stream holds before allocating anything.
  virtual std::optional<uint64_t> remaining() const { return std::nullopt; }
  // Permission bits of the file behind the stream, if there is one: a copy
  // written elsewhere (a local store's object) takes them.
  virtual std::optional<uint32_t> file_mode() const { return std::nullopt; }
  // Reads exactly n bytes or throws Error(kCorruption) naming `what`.
  void read_exact(void* buf, size_t n, const char* what);
};

// A writable stream. write() takes all of `n` bytes or throws.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* buf, size_t n) = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const uint8_t> data) : data_(data) {}
  explicit MemorySource(std::string_view s)
      : data_(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}
  size_t read(void* buf, size_t n) override;
  std::optional<uint64_t> remaining() const override { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

class VectorSink final : public ByteSink {
 public:
  void write(const void* buf, size_t n) override;
  std::vector<uint8_t>& data() { return data_; }

 private:
  std::vector<uint8_t> data_;
};

// Discards everything (for verify-only passes).
class NullSink final : public ByteSink {
 public:
  void write(const void*, size_t n) override { written += n; }
  uint64_t written = 0;
};

// A file opened for reading, optionally a byte range of it. Small reads (a
// segment's 12-byte page headers, 4 KiB pages) are served from a 64 KiB
// buffer, so they do not cost a system call each; large reads go straight to
// the caller's memory.
class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  FileSource(const std::string& path, uint64_t offset, uint64_t length);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  size_t read(void* buf, size_t n) override;
  std::optional<uint64_t> remaining() const override {
    return end_ - pos_ + (buf_len_ - buf_pos_);
  }
  uint64_t size() const { return end_; }
  std::optional<uint32_t> file_mode() const override { return mode_; }

 private:
  size_t read_direct(uint8_t* buf, size_t n);

  std::string path_;
  int fd_ = -1;
  uint32_t mode_ = 0;
  uint64_t pos_ = 0;  // file offset of the next byte not yet in the buffer
  uint64_t end_ = 0;
  std::vector<uint8_t> buf_;  // allocated on the first small read
  size_t buf_pos_ = 0;
  size_t buf_len_ = 0;
};

// A file written sequentially with large writes. sync() makes it durable.
// Every 8 MiB it asks the kernel to start writing the new data out, so the
// disk works while the caller computes and sync() has little left to do,
// and waits for the 8 MiB before that: at most 16 MiB are in flight.
class FileSink final : public ByteSink {
 public:
  // Creates or truncates `path`; a new file gets `mode` (less the umask).
  // Writes go through `env` (default: Env::posix(); see env.h).
  explicit FileSink(const std::string& path, uint32_t mode = 0644, Env* env = nullptr);
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;
  void write(const void* buf, size_t n) override;
  void flush();
  void sync();   // flush + fdatasync
  void close();  // flush + close; idempotent
  uint64_t bytes_written() const { return written_; }

 private:
  void write_out(const uint8_t* p, size_t n);

  std::string path_;
  Env* env_;
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  uint64_t written_ = 0;
  uint64_t on_file_ = 0;        // bytes handed to the kernel
  uint64_t writeback_from_ = 0;  // start of the range not yet sent to the disk
  uint64_t waited_to_ = 0;       // everything before it is on the disk
};

// Copies a source to a sink through fixed buffers; returns bytes copied.
// Past the first 1 MiB it reads `from` on a helper thread while the calling
// thread writes `to`, so reading (or encoding) and writing overlap: `from`
// and `to` must not share unsynchronised state. One read at a time; `to` is
// only written from the calling thread. Memory: 2 MiB whatever the length.
uint64_t copy_stream(ByteSource& from, ByteSink& to);

// Whole-file helpers for small files and tests.
std::vector<uint8_t> read_file(const std::string& path);
// Durable and atomic: temp file, fsync, rename, fsync of the directory.
// Replaces `path` with `data` through a temp file and rename, so a reader
// sees the old or the new content, never a mix. With `durable`, the data and
// the rename are fsynced before it returns; without, a crash may leave the
// old content, the new, or (on some file systems) an empty or torn file, so
// only use that for data that carries its own checksum and can be rebuilt.
// `mode`: the new file's permissions (less the umask). `env`: the file
// system it is written through (null: Env::posix()).
void write_file_atomic(const std::string& path, std::span<const uint8_t> data, bool durable = true,
                       uint32_t mode = 0644, Env* env = nullptr);
// Makes the names created, renamed or linked in `dir` durable; through
// `env` (null: Env::posix()). Throws Error(kIO).
void fsync_dir(const std::string& dir, Env* env = nullptr);
// Creates `dir` and its missing parents, each new name made durable (the
// parent's fsync). Throws Error(kIO) if a path component is not a directory.
void make_directories(const std::string& dir);
std::string dirname_of(const std::string& path);
// Throws Error(kLocked) if another process holds a write lock (fcntl, as a
// read-write DuckDB does) on the file at `path`: replacing or writing the
// file under it would lose what it writes next. `doing` says what would
// ("replace it"). A missing file, or locks unsupported here, pass.
void refuse_if_open_for_writing(const std::string& path, const std::string& doing);
// Milliseconds since the Unix epoch (the system clock): segment and status
// timestamps, object modification times.
int64_t wall_clock_ms();

}  // namespace duckblock
