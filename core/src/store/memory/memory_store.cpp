// In-memory store: for tests and for the memory:// URL. Stores opened with the
// same name share their objects (within the process), like one bucket.
#include <chrono>
#include <map>
#include <mutex>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/store.h"

namespace duckblock {

namespace {

struct Bucket {
  std::mutex mu;
  std::map<std::string, std::pair<std::vector<uint8_t>, int64_t>> objects;
};

std::vector<uint8_t> drain(ByteSource& data) {
  VectorSink sink;
  copy_stream(data, sink);
  return std::move(sink.data());
}

class MemoryStore final : public ObjectStore {
 public:
  MemoryStore(std::shared_ptr<Bucket> b, std::string name) : b_(std::move(b)), name_(std::move(name)) {}

  void put(const std::string& key, ByteSource& data) override {
    auto bytes = drain(data);  // read before locking: the source may be slow
    std::lock_guard lock(b_->mu);
    b_->objects[key] = {std::move(bytes), wall_clock_ms()};
  }

  void put_if_absent(const std::string& key, ByteSource& data) override {
    auto bytes = drain(data);
    std::lock_guard lock(b_->mu);
    if (b_->objects.count(key)) {
      throw Error(ErrorKind::kAlreadyExists, "object already exists: " + key);
    }
    b_->objects[key] = {std::move(bytes), wall_clock_ms()};
  }

  void get(const std::string& key, ByteSink& out, std::optional<ByteRange> range) override {
    std::vector<uint8_t> copy;
    {
      std::lock_guard lock(b_->mu);
      auto it = b_->objects.find(key);
      if (it == b_->objects.end()) throw Error(ErrorKind::kNotFound, "no such object: " + key);
      const auto& v = it->second.first;
      uint64_t off = range ? std::min<uint64_t>(range->offset, v.size()) : 0;
      uint64_t len = range ? std::min<uint64_t>(range->length, v.size() - off) : v.size();
      copy.assign(v.begin() + off, v.begin() + off + len);
    }
    if (!copy.empty()) out.write(copy.data(), copy.size());
  }

  std::optional<ObjectInfo> head(const std::string& key) override {
    std::lock_guard lock(b_->mu);
    auto it = b_->objects.find(key);
    if (it == b_->objects.end()) return std::nullopt;
    return ObjectInfo{key, it->second.first.size(), it->second.second, std::nullopt};
  }

  std::vector<ObjectInfo> list(const std::string& prefix, const std::string& start_after) override {
    std::lock_guard lock(b_->mu);
    std::vector<ObjectInfo> out;
    // Keys with the prefix form one contiguous run in sorted order.
    for (auto it = b_->objects.lower_bound(std::max(prefix, start_after)); it != b_->objects.end();
         ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      if (it->first <= start_after) continue;
      out.push_back({it->first, it->second.first.size(), it->second.second, std::nullopt});
    }
    return out;
  }

  void remove(const std::vector<std::string>& keys) override {
    std::lock_guard lock(b_->mu);
    for (const auto& k : keys) b_->objects.erase(k);
  }

  std::string url() const override { return "memory://" + name_; }

 private:
  std::shared_ptr<Bucket> b_;
  std::string name_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_memory_store(const std::string& name) {
  static std::mutex registry_mu;
  static std::map<std::string, std::weak_ptr<Bucket>> registry;
  std::shared_ptr<Bucket> bucket;
  if (name.empty()) {
    bucket = std::make_shared<Bucket>();
  } else {
    std::lock_guard lock(registry_mu);
    bucket = registry[name].lock();
    if (!bucket) {
      bucket = std::make_shared<Bucket>();
      registry[name] = bucket;
    }
  }
  return std::make_unique<MemoryStore>(bucket, name);
}

}  // namespace duckblock
