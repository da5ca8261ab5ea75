// Local-directory store (file:// URLs). Keys map to files under the root.
// Every write is durable and atomic: the bytes go to a temp file in the
// target directory, which is fsynced, then renamed (put) or hard-linked
// (put_if_absent: link() fails with EEXIST, so exactly one writer wins), and
// the directory is fsynced so the new name survives a power loss.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <random>

#include "duckblock/env.h"
#include "duckblock/error.h"
#include "duckblock/store.h"
#include "duckblock/temp_files.h"

namespace duckblock {

namespace {

// Temp files start with this, and list() never shows them.
constexpr const char* kTempPrefix = ".duckblock-tmp-";

void check_key(const std::string& key) {
  bool bad = key.empty() || key.front() == '/' || key.back() == '/';
  size_t start = 0;
  while (!bad && start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string part = key.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.rfind(kTempPrefix, 0) == 0) bad = true;
    start = end + 1;
  }
  if (bad || key.find('\0') != std::string::npos) {
    throw Error(ErrorKind::kInvalidArgument, "invalid object key '" + key + "'");
  }
}

std::string random_suffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000);
}

class LocalStore final : public ObjectStore {
 public:
  LocalStore(std::string root, Env* env) : root_(std::move(root)), env_(env ? env : &Env::posix()) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    make_directories(root_);
  }

  void put(const std::string& key, ByteSource& data) override {
    std::string path = path_of(key);
    std::string tmp = write_temp(path, data);
    if (env_->rename(tmp, path) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      throw_errno("cannot rename into " + path, e);
    }
    fsync_dir(dirname_of(path), env_);
  }

  void put_if_absent(const std::string& key, ByteSource& data) override {
    std::string path = path_of(key);
    if (::access(path.c_str(), F_OK) == 0) {
      throw Error(ErrorKind::kAlreadyExists, "object already exists: " + key);
    }
    std::string tmp = write_temp(path, data);
    int rc = env_->link(tmp, path);
    int e = errno;
    ::unlink(tmp.c_str());
    if (rc != 0) {
      if (e == EEXIST) throw Error(ErrorKind::kAlreadyExists, "object already exists: " + key);
      throw_errno("cannot link into " + path, e);
    }
    fsync_dir(dirname_of(path), env_);
  }

  void get(const std::string& key, ByteSink& out, std::optional<ByteRange> range) override {
    std::string path = path_of(key);
    try {
      FileSource src = range ? FileSource(path, range->offset, range->length) : FileSource(path);
      copy_stream(src, out);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kNotFound) throw Error(ErrorKind::kNotFound, "no such object: " + key);
      throw;
    }
  }

  std::optional<ObjectInfo> head(const std::string& key) override {
    struct stat st {};
    std::string path = path_of(key);
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      throw_errno("cannot stat " + path);
    }
    if (!S_ISREG(st.st_mode)) return std::nullopt;
    return ObjectInfo{key, static_cast<uint64_t>(st.st_size), mtime_ms(st), uint32_t(st.st_mode & 0777)};
  }

  std::vector<ObjectInfo> list(const std::string& prefix, const std::string& start_after) override {
    // Walk only the directory that holds the prefix's last complete component.
    std::string dir_part = prefix.substr(0, prefix.rfind('/') == std::string::npos ? 0 : prefix.rfind('/') + 1);
    std::vector<ObjectInfo> out;
    walk(dir_part, prefix, start_after, out);
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  void remove(const std::vector<std::string>& keys) override {
    std::vector<std::string> dirs;
    for (const auto& key : keys) {
      std::string path = path_of(key);
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot delete " + path);
      dirs.push_back(dirname_of(path));
    }
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    for (const auto& d : dirs) {
      if (::access(d.c_str(), F_OK) == 0) fsync_dir(d);
    }
  }

  std::string url() const override { return "file://" + root_; }

  uint64_t remove_stale_temp_files() override { return sweep(root_); }

 private:
  static int64_t mtime_ms(const struct stat& st) {
    return int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000;
  }

  std::string path_of(const std::string& key) const {
    check_key(key);
    return root_ + "/" + key;
  }

  std::string write_temp(const std::string& path, ByteSource& data) {
    std::string dir = dirname_of(path);
    make_directories(dir);
    // A killed writer's temp files are removed by the next one to write here.
    remove_stale_temp_files_once(dir, kTempPrefix);
    std::string tmp = dir + "/" + temp_file_name(kTempPrefix, random_suffix());
    try {
      // An object copied from a file (a spooled segment) keeps its mode,
      // which is the database file's: see README "Permissions".
      FileSink sink(tmp, data.file_mode().value_or(0644), env_);
      copy_stream(data, sink);
      sink.sync();
      sink.close();
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
    return tmp;
  }

  // Stale temp files in `dir` and below.
  uint64_t sweep(const std::string& dir) {
    uint64_t n = duckblock::remove_stale_temp_files(dir, kTempPrefix);
    DIR* d = ::opendir(dir.c_str());
    if (!d) return n;
    std::vector<std::string> subdirs;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      struct stat st {};
      if (::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) subdirs.push_back(dir + "/" + name);
    }
    ::closedir(d);
    for (const auto& sub : subdirs) n += sweep(sub);
    return n;
  }

  void walk(const std::string& rel_dir, const std::string& prefix, const std::string& start_after,
            std::vector<ObjectInfo>& out) {
    std::string dir = rel_dir.empty() ? root_ : root_ + "/" + rel_dir;
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT || errno == ENOTDIR) return;
      throw_errno("cannot list " + dir);
    }
    std::vector<std::pair<std::string, bool>> entries;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == ".." || name.rfind(kTempPrefix, 0) == 0) continue;
      entries.push_back({name, false});
    }
    ::closedir(d);
    for (auto& [name, _] : entries) {
      std::string key = rel_dir + name;
      struct stat st {};
      if (::stat((dir + "/" + name).c_str(), &st) != 0) continue;  // deleted meanwhile
      if (S_ISDIR(st.st_mode)) {
        std::string sub = key + "/";
        // Descend only where keys with the prefix can be.
        if (sub.compare(0, std::min(sub.size(), prefix.size()), prefix, 0,
                        std::min(sub.size(), prefix.size())) == 0) {
          walk(sub, prefix, start_after, out);
        }
      } else if (S_ISREG(st.st_mode) && key.compare(0, prefix.size(), prefix) == 0 &&
                 key > start_after) {
        out.push_back({key, static_cast<uint64_t>(st.st_size), mtime_ms(st), uint32_t(st.st_mode & 0777)});
      }
    }
  }

  std::string root_;
  Env* env_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_local_store(const std::string& directory, Env* env) {
  return std::make_unique<LocalStore>(directory, env);
}

}  // namespace duckblock
