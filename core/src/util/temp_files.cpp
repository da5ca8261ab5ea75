#include "duckblock/temp_files.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <set>

namespace duckblock {

namespace {

// 8 hex digits of FNV-1a over the host name.
const std::string& host_tag() {
  static const std::string tag = [] {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    uint32_t h = 2166136261u;
    for (const char* p = host; *p; ++p) {
      h ^= static_cast<unsigned char>(*p);
      h *= 16777619u;
    }
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", h);
    return std::string(buf);
  }();
  return tag;
}

bool process_exists(long pid) {
  if (pid <= 0) return false;
  if (pid == ::getpid()) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// The pid in "<host>-<pid>-..." if the host is this one; -1 otherwise.
long our_pid_in(const std::string& rest) {
  const std::string& tag = host_tag();
  if (rest.size() < tag.size() + 3 || rest.compare(0, tag.size(), tag) != 0 || rest[tag.size()] != '-') return -1;
  size_t start = tag.size() + 1;
  size_t end = rest.find('-', start);
  if (end == std::string::npos || end == start || end - start > 10) return -1;
  long pid = 0;
  for (size_t i = start; i < end; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return -1;
    pid = pid * 10 + (rest[i] - '0');
  }
  return pid;
}

}  // namespace

std::string temp_file_name(const std::string& prefix, const std::string& what) {
  static std::atomic<uint64_t> n{0};
  return prefix + host_tag() + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "-" + what;
}

size_t remove_stale_temp_files(const std::string& dir, const std::string& prefix, std::chrono::seconds max_age) {
  DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
  if (!d) return 0;
  size_t removed = 0;
  std::time_t now = std::time(nullptr);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string path = dir + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    long pid = our_pid_in(name.substr(prefix.size()));
    bool stale = pid > 0 ? !process_exists(pid) : now - st.st_mtime >= max_age.count();
    if (stale && ::unlink(path.c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

void remove_stale_temp_files_once(const std::string& dir, const std::string& prefix) {
  static std::mutex mu;
  static std::set<std::string> done;
  {
    std::lock_guard l(mu);
    if (!done.insert(dir + '\0' + prefix).second) return;
  }
  remove_stale_temp_files(dir, prefix);
}

}  // namespace duckblock
