#include "duckblock/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "duckblock/error.h"

namespace duckblock {

namespace {
constexpr size_t kIoBuffer = 1 << 20;
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
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
}

FileSource::FileSource(const std::string& path, uint64_t offset, uint64_t length)
    : FileSource(path) {
  pos_ = std::min(offset, end_);
  end_ = std::min(end_, pos_ + length);
}

FileSource::~FileSource() {
  if (fd_ >= 0) ::close(fd_);
}

size_t FileSource::read(void* buf, size_t n) {
  n = static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, static_cast<uint8_t*>(buf) + got, n - got,
                        static_cast<off_t>(pos_ + got));
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

FileSink::FileSink(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_errno("cannot create " + path);
  buf_.reserve(kIoBuffer);
}

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);  // unflushed data is dropped: close() reports errors
}

static void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void FileSink::write(const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  written_ += n;
  if (buf_.size() + n > kIoBuffer) {
    flush();
    if (n >= kIoBuffer) {
      write_all(fd_, p, n, path_);
      return;
    }
  }
  buf_.insert(buf_.end(), p, p + n);
}

void FileSink::flush() {
  if (!buf_.empty()) {
    write_all(fd_, buf_.data(), buf_.size(), path_);
    buf_.clear();
  }
}

void FileSink::sync() {
  flush();
  if (::fdatasync(fd_) != 0) throw_errno("cannot sync " + path_);
}

void FileSink::close() {
  if (fd_ < 0) return;
  flush();
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_errno("cannot close " + path_);
}

uint64_t copy_stream(ByteSource& from, ByteSink& to) {
  std::vector<uint8_t> buf(kIoBuffer);
  uint64_t total = 0;
  for (;;) {
    size_t n = from.read(buf.data(), buf.size());
    if (n == 0) return total;
    to.write(buf.data(), n);
    total += n;
  }
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

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open directory " + dir);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) throw_errno("cannot sync directory " + dir, e);
}

void write_file_atomic(const std::string& path, std::span<const uint8_t> data) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    FileSink sink(tmp);
    sink.write(data.data(), data.size());
    sink.sync();
    sink.close();
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot rename to " + path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(dirname_of(path));
}

}  // namespace duckblock
