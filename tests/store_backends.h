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

}  // namespace duckblock::test

namespace duckblock::test {
// Keeps gtest from dumping the struct's bytes in test names and logs.
inline void PrintTo(const StoreBackend& b, std::ostream* os) { *os << b.name; }
}  // namespace duckblock::test
