// The stores the DuckDB end-to-end tests go through: a local directory
// always, and S3 when the test environment names a server
// (tests/store_backends.cpp). "s3" is among them under ctest, where the
// s3rver fixture names the server (run by hand, the test server helper
// starts one).
#pragma once

#include <vector>

#include "store_backends.h"

namespace duckblock::test {

inline std::vector<StoreBackend> e2e_backends() {
  std::vector<StoreBackend> out;
  for (auto& b : all_store_backends()) {
    if (b.name != "memory") out.push_back(b);
  }
  return out;
}

}  // namespace duckblock::test
