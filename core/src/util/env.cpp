#include "duckblock/env.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "duckblock/io.h"

namespace duckblock {

namespace {

// A file's bytes, or nullopt if it does not exist.
std::optional<std::vector<uint8_t>> read_whole(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return std::nullopt;
  return read_file(path);
}

// Replaces (or creates) `path` with `bytes`, synced: what the disk holds
// after the power loss.
bool put_back(const std::string& path, const std::vector<uint8_t>& bytes, bool create) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) return !create;  // removed since: nothing to put back
  ssize_t w = bytes.empty() ? 0 : ::pwrite(fd, bytes.data(), bytes.size(), 0);
  bool ok = w == ssize_t(bytes.size()) && ::ftruncate(fd, off_t(bytes.size())) == 0 && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) std::perror(("FaultyEnv::crash cannot put back " + path).c_str());
  return ok;
}

}  // namespace

int Env::open(const std::string& path, int flags, unsigned mode) {
  return ::open(path.c_str(), flags, static_cast<mode_t>(mode));
}
ssize_t Env::write(int fd, const void* buf, size_t n) { return ::write(fd, buf, n); }
ssize_t Env::pwrite(int fd, const void* buf, size_t n, int64_t offset) {
  return ::pwrite(fd, buf, n, static_cast<off_t>(offset));
}
int Env::fdatasync(int fd) { return ::fdatasync(fd); }
int Env::ftruncate(int fd, int64_t length) { return ::ftruncate(fd, static_cast<off_t>(length)); }
int Env::close(int fd) { return ::close(fd); }
int Env::rename(const std::string& from, const std::string& to) { return ::rename(from.c_str(), to.c_str()); }
int Env::link(const std::string& from, const std::string& to) { return ::link(from.c_str(), to.c_str()); }
int Env::fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  errno = err;
  return rc;
}

Env& Env::posix() {
  static Env env;
  return env;
}

bool FaultyEnv::roll(double rate) {
  if (!enabled_ || rate <= 0) return false;
  std::lock_guard l(mu_);
  return std::uniform_real_distribution<double>(0, 1)(rng_) < rate;
}

ssize_t FaultyEnv::plan_write(size_t n) {
  if (fail_with(rates_.enospc_on_write, ENOSPC) || fail_with(rates_.eio_on_write, EIO)) return -1;
  if (n > 1 && roll(rates_.short_write)) {
    short_writes_++;
    std::lock_guard l(mu_);
    return static_cast<ssize_t>(std::uniform_int_distribution<size_t>(1, n - 1)(rng_));
  }
  return static_cast<ssize_t>(n);
}

ssize_t FaultyEnv::write(int fd, const void* buf, size_t n) {
  if (dying()) return -1;
  ssize_t k = plan_write(n);
  if (k < 0) return k;
  remember(fd);
  return Env::write(fd, buf, static_cast<size_t>(k));
}

ssize_t FaultyEnv::pwrite(int fd, const void* buf, size_t n, int64_t offset) {
  if (dying()) return -1;
  ssize_t k = plan_write(n);
  if (k < 0) return k;
  remember(fd);
  return Env::pwrite(fd, buf, static_cast<size_t>(k), offset);
}

int FaultyEnv::fdatasync(int fd) {
  if (dying() || fail_with(rates_.eio_on_sync, EIO)) return -1;
  int rc = Env::fdatasync(fd);
  if (rc == 0) {
    std::lock_guard l(files_mu_);
    auto it = paths_.find(fd);
    if (it != paths_.end()) synced_.erase(it->second);  // its bytes are durable now
  }
  return rc;
}

int FaultyEnv::ftruncate(int fd, int64_t length) {
  if (dying()) return -1;
  remember(fd);
  return Env::ftruncate(fd, length);
}

int FaultyEnv::open(const std::string& path, int flags, unsigned mode) {
  if ((flags & O_TRUNC) && dying()) return -1;
  int fd = Env::open(path, flags & ~O_TRUNC, mode);
  if (fd < 0) return fd;
  {
    std::lock_guard l(files_mu_);
    paths_[fd] = path;
  }
  if (flags & O_TRUNC) {
    remember(fd);  // the truncation is a change like any other
    if (Env::ftruncate(fd, 0) != 0) {
      int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
  }
  return fd;
}

int FaultyEnv::close(int fd) {
  {
    std::lock_guard l(files_mu_);
    paths_.erase(fd);
  }
  return Env::close(fd);
}

void FaultyEnv::remember(int fd) {
  std::lock_guard l(files_mu_);
  auto it = paths_.find(fd);
  if (it == paths_.end() || synced_.count(it->second)) return;
  // The bytes it has now are the ones of its last sync: every write since
  // went through remember() first. (A file not yet known here is taken as
  // synced as it is.)
  synced_[it->second] = read_whole(it->second).value_or(std::vector<uint8_t>{});
}

bool FaultyEnv::dying() {
  std::lock_guard l(files_mu_);
  if (dead_) {
    errno = EIO;
    return true;
  }
  if (!calls_left_) return false;
  if (*calls_left_ == 0) {
    dead_ = true;
    unsynced_at_death_ += synced_.size();
    errno = EIO;
    return true;
  }
  --*calls_left_;
  return false;
}

void FaultyEnv::die_after(uint64_t calls) {
  std::lock_guard l(files_mu_);
  calls_left_ = calls;
}

size_t FaultyEnv::crash() {
  std::lock_guard l(files_mu_);
  size_t lost = 0;
  // Names first, newest first: a rename undone takes its unsynced bytes
  // back to the old name.
  for (auto it = pending_names_.rbegin(); it != pending_names_.rend(); ++it) {
    if (it->is_link) {
      ::unlink(it->to.c_str());
    } else if (::rename(it->to.c_str(), it->from.c_str()) == 0) {
      if (auto s = synced_.find(it->to); s != synced_.end()) {
        synced_[it->from] = std::move(s->second);
        synced_.erase(s);
      }
      if (it->replaced) put_back(it->to, *it->replaced, true);
    }
    ++names_undone_;
  }
  pending_names_.clear();
  for (const auto& [path, bytes] : synced_) {
    if (::access(path.c_str(), F_OK) != 0) continue;  // removed since: nothing to lose
    put_back(path, bytes, false);
    ++lost;
  }
  synced_.clear();
  calls_left_.reset();
  dead_ = false;
  return lost;
}

bool FaultyEnv::fail_with(double rate, int err) {
  if (!roll(rate)) return false;
  faults_++;
  errno = err;
  return true;
}

int FaultyEnv::rename(const std::string& from, const std::string& to) {
  if (dying() || fail_with(rates_.eio_on_rename, EIO)) return -1;
  // What a power loss before the directory's fsync would bring back at `to`:
  // its bytes as of their last sync.
  std::optional<std::vector<uint8_t>> replaced;
  {
    std::lock_guard l(files_mu_);
    auto s = synced_.find(to);
    replaced = s != synced_.end() ? std::optional(s->second) : read_whole(to);
  }
  int rc = Env::rename(from, to);
  if (rc == 0) {
    // The unsynced bytes move with the file; the one replaced is gone.
    std::lock_guard l(files_mu_);
    pending_names_.push_back({from, to, false, std::move(replaced)});
    synced_.erase(to);
    if (auto it = synced_.find(from); it != synced_.end()) {
      synced_[to] = std::move(it->second);
      synced_.erase(from);
    }
    for (auto& [fd, path] : paths_) {
      if (path == from) path = to;
    }
  }
  return rc;
}

int FaultyEnv::link(const std::string& from, const std::string& to) {
  if (dying() || fail_with(rates_.eio_on_rename, EIO)) return -1;
  // The new name shares the inode: putting back `from` at a crash puts
  // back both.
  int rc = Env::link(from, to);
  if (rc == 0) {
    std::lock_guard l(files_mu_);
    pending_names_.push_back({from, to, true, std::nullopt});
  }
  return rc;
}

int FaultyEnv::fsync_dir(const std::string& dir) {
  if (dying() || fail_with(rates_.eio_on_sync, EIO)) return -1;
  int rc = Env::fsync_dir(dir);
  if (rc == 0) {
    std::lock_guard l(files_mu_);
    std::erase_if(pending_names_, [&](const PendingName& p) { return dirname_of(p.to) == dir; });
  }
  return rc;
}

}  // namespace duckblock
