#include "duckblock/env.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace duckblock {

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
  ssize_t k = plan_write(n);
  return k < 0 ? k : Env::write(fd, buf, static_cast<size_t>(k));
}

ssize_t FaultyEnv::pwrite(int fd, const void* buf, size_t n, int64_t offset) {
  ssize_t k = plan_write(n);
  return k < 0 ? k : Env::pwrite(fd, buf, static_cast<size_t>(k), offset);
}

int FaultyEnv::fdatasync(int fd) { return fail_with(rates_.eio_on_sync, EIO) ? -1 : Env::fdatasync(fd); }

bool FaultyEnv::fail_with(double rate, int err) {
  if (!roll(rate)) return false;
  faults_++;
  errno = err;
  return true;
}

int FaultyEnv::rename(const std::string& from, const std::string& to) {
  return fail_with(rates_.eio_on_rename, EIO) ? -1 : Env::rename(from, to);
}

int FaultyEnv::link(const std::string& from, const std::string& to) {
  return fail_with(rates_.eio_on_rename, EIO) ? -1 : Env::link(from, to);
}

}  // namespace duckblock
