#include "duckblock/error.h"
#include "duckblock/store.h"

namespace duckblock {

// Set by the S3 backend when it is linked in (see core/src/store/s3/).
std::unique_ptr<ObjectStore> make_s3_store_from_url(const std::string& url,
                                                    const StoreOptions& options);

std::unique_ptr<ObjectStore> open_store(const std::string& url, const StoreOptions& options) {
  auto starts = [&](const char* p) { return url.rfind(p, 0) == 0; };
  if (starts("file://")) {
    std::string path = url.substr(7);
    if (path.empty() || path.front() != '/') {
      throw Error(ErrorKind::kInvalidArgument,
                  "file URL needs an absolute path, like file:///var/backups/db (got '" + url + "')");
    }
    // "." and ".." would make two spellings of one store (and a path that
    // leaves the directory the user meant); control bytes are never meant.
    for (size_t start = 0; start < path.size();) {
      size_t end = path.find('/', start);
      if (end == std::string::npos) end = path.size();
      std::string seg = path.substr(start, end - start);
      if (seg == "." || seg == "..") {
        throw Error(ErrorKind::kInvalidArgument, "file URL '" + url + "' has a '" + seg +
                                                     "' path segment: give the store directory's plain absolute path");
      }
      start = end + 1;
    }
    for (char ch : path) {
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
        throw Error(ErrorKind::kInvalidArgument, "file URL has a control character in its path");
      }
    }
    return make_local_store(path);
  }
  if (starts("memory://")) return make_memory_store(url.substr(9));
  if (starts("s3://")) return make_s3_store_from_url(url, options);
  throw Error(ErrorKind::kInvalidArgument,
              "unknown store URL '" + url + "': use file:///path, s3://bucket/prefix/ or memory://name");
}

std::vector<uint8_t> get_bytes(ObjectStore& store, const std::string& key,
                               std::optional<ByteRange> range) {
  VectorSink sink;
  store.get(key, sink, range);
  return std::move(sink.data());
}

std::optional<std::vector<uint8_t>> get_bytes_if_exists(ObjectStore& store, const std::string& key) {
  try {
    return get_bytes(store, key);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kNotFound) return std::nullopt;
    throw;
  }
}

namespace {

class BoundedSink final : public ByteSink {
 public:
  BoundedSink(const std::string& key, size_t max) : key_(key), max_(max) {}
  void write(const void* buf, size_t n) override {
    if (n > max_ - data_.size()) {
      throw Error(ErrorKind::kCorruption, "the object " + key_ + " is damaged: longer than the " +
                                              std::to_string(max_) + " bytes any such record takes");
    }
    auto* p = static_cast<const uint8_t*>(buf);
    data_.insert(data_.end(), p, p + n);
  }
  std::vector<uint8_t>& data() { return data_; }

 private:
  const std::string& key_;
  size_t max_;
  std::vector<uint8_t> data_;
};

}  // namespace

std::optional<std::vector<uint8_t>> get_record_if_exists(ObjectStore& store, const std::string& key,
                                                         size_t max_bytes) {
  BoundedSink sink(key, max_bytes);
  try {
    store.get(key, sink, std::nullopt);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kNotFound) return std::nullopt;
    throw;
  }
  return std::move(sink.data());
}

void put_bytes(ObjectStore& store, const std::string& key, std::span<const uint8_t> data) {
  MemorySource src(data);
  store.put(key, src);
}

}  // namespace duckblock
