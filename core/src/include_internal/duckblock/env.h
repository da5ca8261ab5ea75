// The file-system calls through which the local store, the spool, apply and
// restore write (a replica's journal included), so a
// test can make them fail (LevelDB's Env idea). Env::posix() is the real
// thing and the default everywhere; FaultyEnv injects, with a seeded
// generator, ENOSPC and EIO on write, EIO on fdatasync, short writes, and
// EIO on rename/link, so tests can drive thousands of failures through the
// real code and check that each is reported and none leaves a wrong result.
// It also simulates a crash (die_after, then crash): from a chosen call on,
// nothing more reaches the disk, and crash() then drops every byte written
// through it since that file's last fdatasync, as a power loss would.
// The leader's metadata (state.json, pages.idx, spooled digests) and the
// directory fsyncs after renames go through it too. (Not routed through
// it: creates of directories, unlinks and reads.)
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

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
  // fsync of a directory: makes the names created, renamed or linked in it
  // durable.
  virtual int fsync_dir(const std::string& dir);

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
  int open(const std::string& path, int flags, unsigned mode) override;
  ssize_t write(int fd, const void* buf, size_t n) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, int64_t offset) override;
  int fdatasync(int fd) override;
  int ftruncate(int fd, int64_t length) override;
  int close(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int link(const std::string& from, const std::string& to) override;
  int fsync_dir(const std::string& dir) override;

  uint64_t faults() const { return faults_; }            // errors injected
  uint64_t short_writes() const { return short_writes_; }  // short counts returned
  void set_enabled(bool on) { enabled_ = on; }

  // The crash model. After `calls` more calls that change a file (write,
  // pwrite, ftruncate, fdatasync, rename, link, fsync_dir), the process is
  // "dead": every such call fails with EIO and changes nothing. crash() is
  // the power loss: every rename and link made through this Env whose
  // directory was not fsynced since is undone, newest first (the file goes
  // back to its old name, and a file the rename replaced comes back); then
  // each file written through this Env since its last successful fdatasync
  // gets back the bytes it had then (a file created since holds nothing),
  // and the Env lives again. What it does not model: creates and unlinks
  // are kept as they are, and files written around it count as durable.
  void die_after(uint64_t calls);
  bool dead() const { return dead_; }
  // Counts a call made around the Env (a test's store standing for the
  // process's uploads) toward die_after; true once dead.
  bool step() { return dying(); }
  // Files that held unsynced bytes at the moments of death, summed: the
  // deaths that fell inside a write-to-sync window (whatever the code then
  // did about them, such as removing a temp file).
  uint64_t unsynced_at_death() const { return unsynced_at_death_; }
  // Returns how many files lost unsynced bytes.
  size_t crash();
  // Renames and links undone by crash() so far.
  uint64_t names_undone() const { return names_undone_; }

 private:
  bool roll(double rate);
  bool fail_with(double rate, int err);  // rolls; on a hit counts it and sets errno
  // Returns -1 (errno set) for an injected failure, else how many of `n`
  // bytes to write (n, or fewer for a short write).
  ssize_t plan_write(size_t n);

  // The crash model: true if the call must fail (dead), counting it down.
  bool dying();
  // Before a change to fd's file: keeps the file's bytes as of its last
  // sync, once per sync interval.
  void remember(int fd);

  std::mutex mu_;
  std::mt19937_64 rng_;
  FaultRates rates_;
  std::atomic<bool> enabled_{true};
  std::atomic<uint64_t> faults_{0}, short_writes_{0};
  std::mutex files_mu_;
  std::map<int, std::string> paths_;                   // open fds
  std::map<std::string, std::vector<uint8_t>> synced_;  // path -> bytes at its last sync, while unsynced
  // Renames and links whose directory has not been fsynced since, oldest
  // first; `replaced`: the bytes a rename replaced at `to`, if it existed.
  struct PendingName {
    std::string from, to;
    bool is_link = false;
    std::optional<std::vector<uint8_t>> replaced;
  };
  std::vector<PendingName> pending_names_;
  uint64_t names_undone_ = 0;
  std::optional<uint64_t> calls_left_;
  std::atomic<bool> dead_{false};
  std::atomic<uint64_t> unsynced_at_death_{0};
};

}  // namespace duckblock
