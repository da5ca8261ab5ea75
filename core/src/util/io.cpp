#include "duckblock/io.h"

#include "duckblock/env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "duckblock/error.h"

namespace duckblock {

namespace {
constexpr size_t kIoBuffer = 1 << 20;
constexpr size_t kReadBuffer = 64 << 10;  // FileSource: reads smaller than this are buffered
constexpr uint64_t kWritebackChunk = 8 << 20;  // FileSink: start writeback this often
}

void ByteSource::read_exact(void* buf, size_t n, const char* what) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t got = 0;
  while (got < n) {
    size_t r = read(p + got, n - got);
    if (r == 0) {
      throw Error(ErrorKind::kCorruption,
                  std::string("unexpected end of data in ") + what + ": needed " +
                      std::to_string(n) + " bytes, have " + std::to_string(got));
    }
    got += r;
  }
}

size_t MemorySource::read(void* buf, size_t n) {
  size_t k = std::min(n, data_.size() - pos_);
  if (k) std::memcpy(buf, data_.data() + pos_, k);
  pos_ += k;
  return k;
}

void VectorSink::write(const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  data_.insert(data_.end(), p, p + n);
}

FileSource::FileSource(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_errno("cannot open " + path);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    int e = errno;
    ::close(fd_);
    throw_errno("cannot stat " + path, e);
  }
  end_ = static_cast<uint64_t>(st.st_size);
  mode_ = static_cast<uint32_t>(st.st_mode & 07777);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
}

FileSource::FileSource(const std::string& path, uint64_t offset, uint64_t length)
    : FileSource(path) {
  pos_ = std::min(offset, end_);
  end_ = pos_ + std::min(length, end_ - pos_);  // no overflow for length = UINT64_MAX
}

FileSource::~FileSource() {
  if (fd_ >= 0) ::close(fd_);
}

size_t FileSource::read(void* buf, size_t n) {
  if (n == 0) return 0;
  auto* out = static_cast<uint8_t*>(buf);
  size_t done = 0;
  if (buf_pos_ < buf_len_) {
    done = std::min(n, buf_len_ - buf_pos_);
    std::memcpy(out, buf_.data() + buf_pos_, done);
    buf_pos_ += done;
    if (done == n) return done;
  }
  size_t want = n - done;
  if (want >= kReadBuffer) return done + read_direct(out + done, want);
  if (buf_.empty()) buf_.resize(kReadBuffer);
  buf_len_ = read_direct(buf_.data(), kReadBuffer);
  size_t k = std::min(want, buf_len_);
  std::memcpy(out + done, buf_.data(), k);
  buf_pos_ = k;
  return done + k;
}

size_t FileSource::read_direct(uint8_t* buf, size_t n) {
  n = static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, buf + got, n - got, static_cast<off_t>(pos_ + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + path_);
    }
    if (r == 0) break;  // the file shrank under us: report a short stream
    got += static_cast<size_t>(r);
  }
  pos_ += got;
  if (got < n) end_ = pos_;
  return got;
}

FileSink::FileSink(const std::string& path, uint32_t mode, Env* env)
    : path_(path), env_(env ? env : &Env::posix()) {
  fd_ = env_->open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 0777);
  if (fd_ < 0) throw_errno("cannot create " + path);
  buf_.reserve(kIoBuffer);
}

FileSink::~FileSink() {
  if (fd_ >= 0) env_->close(fd_);  // unflushed data is dropped: close() reports errors
}

static void write_all(Env& env, int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = env.write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void FileSink::write_out(const uint8_t* p, size_t n) {
  write_all(*env_, fd_, p, n, path_);
  on_file_ += n;
#ifdef SYNC_FILE_RANGE_WRITE
  // Start writeback of what accumulated: a large file then reaches the disk
  // while we produce the rest, instead of all at sync(). First wait for the
  // range started before it: at most two chunks are in flight, so a writer
  // of gigabytes (a compaction beside a running DuckDB) goes at the disk's
  // pace without queueing more than that ahead of another process's fsync,
  // and its dirty pages never pile up to the kernel's thresholds. Only
  // hints, so failures are ignored; sync() reports real errors.
  if (on_file_ - writeback_from_ >= kWritebackChunk) {
    if (writeback_from_ > waited_to_) {
      ::sync_file_range(fd_, static_cast<off_t>(waited_to_), static_cast<off_t>(writeback_from_ - waited_to_),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      waited_to_ = writeback_from_;
    }
    ::sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                      static_cast<off_t>(on_file_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
    writeback_from_ = on_file_;
  }
#endif
}

void FileSink::write(const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  written_ += n;
  if (buf_.size() + n > kIoBuffer) {
    flush();
    if (n >= kIoBuffer) {
      write_out(p, n);
      return;
    }
  }
  buf_.insert(buf_.end(), p, p + n);
}

void FileSink::flush() {
  if (!buf_.empty()) {
    write_out(buf_.data(), buf_.size());
    buf_.clear();
  }
}

void FileSink::sync() {
  flush();
  if (env_->fdatasync(fd_) != 0) throw_errno("cannot sync " + path_);
}

void FileSink::close() {
  if (fd_ < 0) return;
  flush();
  int fd = fd_;
  fd_ = -1;
  if (env_->close(fd) != 0) throw_errno("cannot close " + path_);
}

namespace {

// copy_stream for long streams: a second thread reads (and, for an encoding
// source, hashes) the next buffer while this one writes the last, so a
// snapshot costs about max(encode, write) rather than their sum. Two buffers
// circulate; the reader never touches `from` concurrently with anyone else,
// and errors on either side end both and are rethrown here.
uint64_t copy_pipelined(ByteSource& from, ByteSink& to, std::vector<uint8_t> first, size_t first_len) {
  struct Buffer {
    std::vector<uint8_t> data;
    size_t len = 0;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Buffer> full, empty;
  bool eof = false, stop = false;
  std::exception_ptr read_error;
  full.push_back({std::move(first), first_len});
  empty.push_back({std::vector<uint8_t>(kIoBuffer), 0});

  std::thread reader([&] {
    try {
      for (;;) {
        Buffer b;
        {
          std::unique_lock l(mu);
          cv.wait(l, [&] { return stop || !empty.empty(); });
          if (stop) return;
          b = std::move(empty.front());
          empty.pop_front();
        }
        b.len = from.read(b.data.data(), b.data.size());
        std::lock_guard l(mu);
        if (b.len == 0) {
          eof = true;
        } else {
          full.push_back(std::move(b));
        }
        cv.notify_all();
        if (eof) return;
      }
    } catch (...) {
      std::lock_guard l(mu);
      read_error = std::current_exception();
      eof = true;
      cv.notify_all();
    }
  });

  uint64_t total = 0;
  try {
    for (;;) {
      Buffer b;
      {
        std::unique_lock l(mu);
        cv.wait(l, [&] { return eof || !full.empty(); });
        if (full.empty()) break;  // eof, and everything read is written
        b = std::move(full.front());
        full.pop_front();
      }
      to.write(b.data.data(), b.len);
      total += b.len;
      std::lock_guard l(mu);
      empty.push_back(std::move(b));
      cv.notify_all();
    }
  } catch (...) {
    {
      std::lock_guard l(mu);
      stop = true;
      cv.notify_all();
    }
    reader.join();
    throw;
  }
  reader.join();
  if (read_error) std::rethrow_exception(read_error);
  return total;
}

}  // namespace

uint64_t copy_stream(ByteSource& from, ByteSink& to) {
  std::vector<uint8_t> buf(kIoBuffer);
  size_t n = from.read(buf.data(), buf.size());
  if (n == buf.size() && from.remaining() != std::optional<uint64_t>(0)) {
    return copy_pipelined(from, to, std::move(buf), n);
  }
  uint64_t total = 0;
  while (n != 0) {  // short streams: no thread
    to.write(buf.data(), n);
    total += n;
    n = from.read(buf.data(), buf.size());
  }
  return total;
}

std::vector<uint8_t> read_file(const std::string& path) {
  FileSource src(path);
  std::vector<uint8_t> out(src.size());
  src.read_exact(out.data(), out.size(), path.c_str());
  return out;
}

std::string dirname_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void refuse_if_open_for_writing(const std::string& path, const std::string& doing) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct flock fl {};
  fl.l_type = F_RDLCK;  // conflicts only with another process's write lock
  fl.l_whence = SEEK_SET;
  const bool asked = ::fcntl(fd, F_GETLK, &fl) == 0;
  ::close(fd);
  if (asked && fl.l_type != F_UNLCK) {
    throw Error(ErrorKind::kLocked, path + " is open for writing in another process (pid " + std::to_string(fl.l_pid) +
                                        ", a running DuckDB?): to " + doing + " now would lose what it writes next. " +
                                        "Stop that process first");
  }
}

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void make_directories(const std::string& dir) {
  if (dir.empty() || dir == "/") return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(ErrorKind::kIO, dir + " exists and is not a directory");
    return;
  }
  std::string parent = dirname_of(dir);
  make_directories(parent);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("cannot create directory " + dir);
  fsync_dir(parent);  // the new directory's name must be durable too
}

void fsync_dir(const std::string& dir, Env* env) {
  if ((env ? *env : Env::posix()).fsync_dir(dir) != 0) throw_errno("cannot sync directory " + dir);
}

void write_file_atomic(const std::string& path, std::span<const uint8_t> data, bool durable, uint32_t mode,
                       Env* env) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // a leftover would keep its old mode
  try {
    FileSink sink(tmp, mode, env);
    sink.write(data.data(), data.size());
    if (durable) sink.sync();
    sink.close();
    if ((env ? *env : Env::posix()).rename(tmp, path) != 0) throw_errno("cannot rename to " + path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (durable) fsync_dir(dirname_of(path), env);
}

}  // namespace duckblock
