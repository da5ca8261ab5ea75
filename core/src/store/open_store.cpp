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

void put_bytes(ObjectStore& store, const std::string& key, std::span<const uint8_t> data) {
  MemorySource src(data);
  store.put(key, src);
}

}  // namespace duckblock
