#include "store_backends.h"

#include <atomic>
#include <filesystem>

#include "test_util.h"

namespace duckblock::test {

std::vector<StoreBackend> all_store_backends() {
  static std::atomic<int> counter{0};
  std::vector<StoreBackend> out;
  out.push_back({"memory", [] { return make_memory_store(); }});
  out.push_back({"local", [] {
                   // Kept under the system temp dir; removed at process exit.
                   static TempDir root;
                   return make_local_store(root / ("store" + std::to_string(counter++)));
                 }});
  return out;
}

}  // namespace duckblock::test
