// The file-system calls through which the local store and apply write, so a
// test can make them fail (LevelDB's Env idea). Env::posix() is the real
// thing and the default everywhere; FaultyEnv injects, with a seeded
// generator, ENOSPC and EIO on write, EIO on fdatasync, short writes, and
// EIO on rename/link, so tests can drive thousands of failures through the
// real code and check that each is reported and none leaves a wrong result.
// (Not routed through it: directory fsyncs, reads, and small metadata files
// written with write_file_atomic such as a replica's journal.)
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>

namespace duckblock {

class Env {
 public:
  virtual ~Env() = default;
  // Each behaves as the POSIX call of the same name: -1 (or a short count)
  // with errno set on failure.
  virtual int open(const std::string& path, int flags, unsigned mode);
  virtual ssize_t write(int fd, const void* buf, size_t n);
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, int64_t offset);
  virtual int fdatasync(int fd);
  virtual int ftruncate(int fd, int64_t length);
  virtual int close(int fd);
  virtual int rename(const std::string& from, const std::string& to);
  virtual int link(const std::string& from, const std::string& to);

  static Env& posix();
};

struct FaultRates {
  double enospc_on_write = 0;  // write/pwrite fails with ENOSPC, nothing written
  double eio_on_write = 0;     // write/pwrite fails with EIO, nothing written
  double short_write = 0;      // write/pwrite writes only part (a legal short count)
  double eio_on_sync = 0;      // fdatasync fails with EIO
  double eio_on_rename = 0;    // rename/link fails with EIO, nothing renamed
};

class FaultyEnv final : public Env {
 public:
  FaultyEnv(uint64_t seed, FaultRates rates) : rng_(seed), rates_(rates) {}
  ssize_t write(int fd, const void* buf, size_t n) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, int64_t offset) override;
  int fdatasync(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int link(const std::string& from, const std::string& to) override;

  uint64_t faults() const { return faults_; }            // errors injected
  uint64_t short_writes() const { return short_writes_; }  // short counts returned
  void set_enabled(bool on) { enabled_ = on; }

 private:
  bool roll(double rate);
  bool fail_with(double rate, int err);  // rolls; on a hit counts it and sets errno
  // Returns -1 (errno set) for an injected failure, else how many of `n`
  // bytes to write (n, or fewer for a short write).
  ssize_t plan_write(size_t n);

  std::mutex mu_;
  std::mt19937_64 rng_;
  FaultRates rates_;
  std::atomic<bool> enabled_{true};
  std::atomic<uint64_t> faults_{0}, short_writes_{0};
};

}  // namespace duckblock
