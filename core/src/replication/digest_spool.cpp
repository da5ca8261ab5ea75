#include "digest_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/key.h"
#include "duckblock/store.h"

namespace duckblock {

std::string spooled_digest_path(const std::string& incr_dir, uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.digest", static_cast<unsigned long long>(seq));
  return incr_dir + "/" + name;
}

void spool_digest(const std::string& incr_dir, uint32_t mode, const DigestRecord& record, bool durable, Env& env) {
  std::string text = encode_digest_record(record);
  write_file_atomic(spooled_digest_path(incr_dir, record.seq),
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), durable,
                    mode, &env);
}

void sync_spooled_digest(const std::string& incr_dir, uint64_t seq, Env& env) {
  const std::string path = spooled_digest_path(incr_dir, seq);
  int fd = env.open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == ENOENT) return;  // none for this seq (an index with gaps)
    throw_errno("cannot open " + path);
  }
  int rc = env.fdatasync(fd);
  int err = errno;
  env.close(fd);
  if (rc != 0) throw_errno("cannot sync " + path, err);
}

void unspool_digest(const std::string& incr_dir, uint64_t seq) {
  ::unlink(spooled_digest_path(incr_dir, seq).c_str());
}

void drop_stale_digests(const std::string& incr_dir, std::optional<uint64_t> uploaded, uint64_t head) {
  DIR* d = ::opendir(incr_dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 23 && name.compare(16, 12, ".digest.tmp.") == 0) {
      ::unlink((incr_dir + "/" + name).c_str());  // a write a crash cut short
      continue;
    }
    if (name.size() != 23 || name.substr(16) != ".digest" || name.find_first_not_of("0123456789abcdef") != 16) continue;
    uint64_t seq = std::stoull(name.substr(0, 16), nullptr, 16);
    if (seq > head || (uploaded && seq <= *uploaded)) ::unlink((incr_dir + "/" + name).c_str());
  }
  ::closedir(d);
}

bool publish_spooled_digest(ObjectStore& store, const std::string& prefix, const std::string& db,
                            const std::string& incr_dir, uint64_t seq) {
  std::string text;
  try {
    auto bytes = read_file(spooled_digest_path(incr_dir, seq));
    text.assign(bytes.begin(), bytes.end());
  } catch (const Error&) {
    return false;  // none spooled (a push whose index had gaps, or lost in a crash)
  }
  try {
    if (decode_digest_record(text).seq != seq) return false;
  } catch (const Error&) {
    return false;  // torn by a crash: not published
  }
  const std::string key = digest_key(prefix, db, seq);
  MemorySource src(text);
  try {
    store.put_if_absent(key, src);
    return true;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kAlreadyExists) throw;
  }
  // Our segment `seq` is in the store (the caller publishes only then), so
  // the record of the file after it is ours. Another object at the key is
  // one a server killed mid-upload cut short, or left by an earlier attempt
  // at this seq: replaced, or readers would refuse the point.
  VectorSink there;
  store.get(key, there);
  if (std::string(there.data().begin(), there.data().end()) != text) {
    MemorySource again(text);
    store.put(key, again);
  }
  return true;
}

}  // namespace duckblock
