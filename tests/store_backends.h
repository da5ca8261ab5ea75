// The backends every store test body runs against. Add a backend here and it
// passes the whole contract or the suite fails.
#pragma once

#include <functional>
#include <ostream>
#include <memory>
#include <string>
#include <vector>

#include "duckblock/store.h"

namespace duckblock::test {

struct StoreBackend {
  std::string name;
  // Returns a store over a fresh, empty namespace (directory, bucket prefix).
  std::function<std::unique_ptr<ObjectStore>()> make;
};

std::vector<StoreBackend> all_store_backends();

// The "s3" backend is listed when DUCKBLOCK_TEST_S3_URL is set (with
// DUCKBLOCK_TEST_S3_ENDPOINT, DUCKBLOCK_TEST_S3_REGION and
// DUCKBLOCK_TEST_S3_PATH_STYLE=0|1 for non-AWS servers; credentials from the
// usual AWS variables). Each store gets a fresh prefix under that URL. A test
// binary that launches its own server sets this hook, run before each s3
// store is made, to start it on first use.
extern void (*prepare_s3_backend)();

// Forwards everything to another store; tests override the writes.
class WrappedStore : public ObjectStore {
 public:
  explicit WrappedStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}
  void put(const std::string& k, ByteSource& d) override { inner_->put(k, d); }
  void put_if_absent(const std::string& k, ByteSource& d) override { inner_->put_if_absent(k, d); }
  void get(const std::string& k, ByteSink& o, std::optional<ByteRange> r) override { inner_->get(k, o, r); }
  std::optional<ObjectInfo> head(const std::string& k) override { return inner_->head(k); }
  std::vector<ObjectInfo> list(const std::string& p, const std::string& s) override { return inner_->list(p, s); }
  void remove(const std::vector<std::string>& k) override { inner_->remove(k); }
  std::string url() const override { return inner_->url(); }

 protected:
  std::shared_ptr<ObjectStore> inner_;
};

}  // namespace duckblock::test

namespace duckblock::test {
// Keeps gtest from dumping the struct's bytes in test names and logs.
inline void PrintTo(const StoreBackend& b, std::ostream* os) { *os << b.name; }
}  // namespace duckblock::test
