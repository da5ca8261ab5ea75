// Replaced by the S3 backend (core/src/store/s3/) once it lands.
#include "duckblock/error.h"
#include "duckblock/store.h"

namespace duckblock {
std::unique_ptr<ObjectStore> make_s3_store_from_url(const std::string& url, const StoreOptions&) {
  throw Error(ErrorKind::kUnsupported, "s3 store not built in: " + url);
}
}  // namespace duckblock
