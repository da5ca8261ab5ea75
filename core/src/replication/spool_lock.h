// One writer per spool directory of a database. Two pushes on one spool at
// once (overlapping cron jobs, two leaders started on one machine) would
// interleave their segments and state; the second one must fail at once.
//
// The lock is flock(LOCK_EX) on `<dir>/lock`: the kernel drops it when the
// holder exits, however it exits (kill -9 included), so a stale lock file is
// never an obstacle. flock locks belong to the open file description, so two
// Replicators in one process conflict as well. The holder writes its pid,
// host and start time into the file, which the refusal quotes.
#pragma once

#include <string>

namespace duckblock {

class SpoolLock {
 public:
  // Takes the lock or throws Error(kLocked) naming `dir` and the holder.
  // `what` names the locked thing in that message ("the spool of 'db'").
  SpoolLock(const std::string& dir, const std::string& what);
  ~SpoolLock();
  SpoolLock(const SpoolLock&) = delete;
  SpoolLock& operator=(const SpoolLock&) = delete;

  // "pid 123 on host since 2026-...Z": what a holder wrote, or "" if unknown.
  static std::string holder(const std::string& dir);
  static std::string path_in(const std::string& dir) { return dir + "/lock"; }

 private:
  int fd_ = -1;
};

}  // namespace duckblock
