// The exclusive locks: SpoolLock (spool_lock.h, one writer per spool) and
// TargetLock (restore.h, one restore or follow per target file) share one
// mechanism, flock on a lock file that names its holder.
#include "spool_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <functional>
#include <string>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/restore.h"

namespace duckblock {

namespace {

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string holder_of(const std::string& lock_path) {
  std::string text;
  try {
    auto bytes = read_file(lock_path);
    text.assign(bytes.begin(), bytes.end());
  } catch (const Error&) {
    return "";
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  // Only printable text goes into an error message.
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (text.size() > 200) text.resize(200);
  return text;
}

// Takes flock(LOCK_EX) on `path` (created if missing) and writes the
// holder's line into it, or throws Error(kLocked) with refusal(holder).
int lock_or_refuse(const std::string& path, const std::function<std::string(const std::string&)>& refusal) {
  int fd = -1;
  for (int attempt = 0;; ++attempt) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("cannot open the lock file " + path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err != EWOULDBLOCK) throw_errno("cannot lock " + path, err);
      std::string who = holder_of(path);
      throw Error(ErrorKind::kLocked, refusal(who.empty() ? "" : " (" + who + ")"));
    }
    // A holder that removes the file as it lets go (TargetLock) may have
    // done so between our open and our flock: then we hold a lock on a
    // name nobody else sees. Only a lock on the file at `path` counts.
    struct stat at {}, held {};
    if (::stat(path.c_str(), &at) == 0 && ::fstat(fd, &held) == 0 && at.st_ino == held.st_ino &&
        at.st_dev == held.st_dev) {
      break;
    }
    ::close(fd);
    if (attempt == 10) throw Error(ErrorKind::kLocked, refusal(""));
  }
  // Who holds it, for the message a second writer prints. Written after
  // taking the lock; a reader that races this sees a partial line at worst.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string line = "pid " + std::to_string(::getpid()) + " on " + host + " since " + now_utc() + "\n";
  if (::ftruncate(fd, 0) == 0) {
    (void)!::pwrite(fd, line.data(), line.size(), 0);
  }
  return fd;
}

void unlock(int fd) {
  if (fd < 0) return;
  // Emptied before unlocking, so a later reader does not name a finished
  // process as the holder.
  (void)!::ftruncate(fd, 0);
  ::close(fd);  // releases the flock
}

}  // namespace


SpoolLock::SpoolLock(const std::string& dir, const std::string& what)
    : fd_(lock_or_refuse(path_in(dir), [&](const std::string& who) {
        return what + " (" + dir + ") is in use by another writer" + who +
               ": only one push, snapshot or leader may use a spool at a time. Wait for it to finish, or "
               "give this one its own --spool DIR";
      })) {}

SpoolLock::~SpoolLock() { unlock(fd_); }

std::string SpoolLock::holder(const std::string& dir) { return holder_of(path_in(dir)); }

TargetLock::TargetLock(const std::string& target_path)
    : path_(target_path + ".duckblock-lock"), fd_(lock_or_refuse(path_, [&](const std::string& who) {
        return target_path + " is being restored or followed by another duckblock" + who +
               ": two at once would interleave their writes. Wait for it to finish, or give this one "
               "another target";
      })) {}

// Removed while still held, so that no other run can take a lock on it
// (see lock_or_refuse) and nothing is left beside the target.
TargetLock::~TargetLock() {
  if (fd_ >= 0) ::unlink(path_.c_str());
  unlock(fd_);
}

}  // namespace duckblock
