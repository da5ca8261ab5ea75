#include "spool_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <string>

#include "duckblock/error.h"
#include "duckblock/io.h"

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

}  // namespace

SpoolLock::SpoolLock(const std::string& dir, const std::string& what) {
  std::string path = path_in(dir);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw_errno("cannot open the lock file " + path);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) throw_errno("cannot lock " + path, err);
    std::string who = holder(dir);
    throw Error(ErrorKind::kLocked,
                what + " (" + dir + ") is in use by another writer" + (who.empty() ? "" : " (" + who + ")") +
                    ": only one push, snapshot or leader may use a spool at a time. Wait for it to finish, or "
                    "give this one its own --spool DIR");
  }
  // Who holds it, for the message a second writer prints. Written after
  // taking the lock; a reader that races this sees a partial line at worst.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string line = "pid " + std::to_string(::getpid()) + " on " + host + " since " + now_utc() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    (void)!::pwrite(fd_, line.data(), line.size(), 0);
  }
}

SpoolLock::~SpoolLock() {
  if (fd_ < 0) return;
  // Emptied before unlocking, so a later reader does not name a finished
  // process as the holder.
  (void)!::ftruncate(fd_, 0);
  ::close(fd_);  // releases the flock
}

std::string SpoolLock::holder(const std::string& dir) {
  std::string text;
  try {
    auto bytes = read_file(path_in(dir));
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

}  // namespace duckblock
