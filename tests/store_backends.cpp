#include "store_backends.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "test_util.h"

namespace duckblock::test {

void (*prepare_s3_backend)() = nullptr;

std::vector<StoreBackend> all_store_backends() {
  static std::atomic<int> counter{0};
  std::vector<StoreBackend> out;
  out.push_back({"memory", [] { return make_memory_store(); }});
  out.push_back({"local", [] {
                   // Kept under the system temp dir; removed at process exit.
                   static TempDir root;
                   return make_local_store(root / ("store" + std::to_string(counter++)));
                 }});
  if (const char* url = std::getenv("DUCKBLOCK_TEST_S3_URL"); url && *url) {
    std::string base = url;
    if (base.back() != '/') base += '/';
    // Unique per run and store, so a shared bucket works as well as a fresh one.
    std::string run = std::to_string(::getpid()) + "-" +
                      std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000000);
    out.push_back({"s3", [base, run] {
                     if (prepare_s3_backend) prepare_s3_backend();
                     StoreOptions o;
                     if (const char* e = std::getenv("DUCKBLOCK_TEST_S3_ENDPOINT"); e && *e) o.endpoint = e;
                     if (const char* r = std::getenv("DUCKBLOCK_TEST_S3_REGION"); r && *r) o.region = r;
                     if (const char* p = std::getenv("DUCKBLOCK_TEST_S3_PATH_STYLE"); p && *p) {
                       o.path_style = std::string(p) != "0";
                     }
                     return open_store(base + "contract-" + run + "-" + std::to_string(counter++) + "/", o);
                   }});
  }
  return out;
}

}  // namespace duckblock::test
