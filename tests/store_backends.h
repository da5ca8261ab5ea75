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

}  // namespace duckblock::test

namespace duckblock::test {
// Keeps gtest from dumping the struct's bytes in test names and logs.
inline void PrintTo(const StoreBackend& b, std::ostream* os) { *os << b.name; }
}  // namespace duckblock::test
