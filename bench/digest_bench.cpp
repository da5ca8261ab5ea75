// digest_bench: what the whole-file digest (file_digest.h) costs.
//   - one element (add or remove of a page) against a SHA-256 of the 4 KiB
//     page the page index hashes anyway;
//   - a recompute from pages.idx (after a crash between saves), per GiB of
//     database (32 bytes of index a page);
//   - a reader's check: the digest of a file, per GiB, against a SHA-256 of it.
// Usage: digest_bench [DIR] [MiB of file, default 256]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "duckblock/file_digest.h"
#include "duckblock/io.h"
#include "duckblock/page_index.h"

using namespace duckblock;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/tmp";
  uint64_t mib = argc > 2 ? std::stoull(argv[2]) : 256;
  constexpr uint32_t kPage = 4096;
  std::vector<uint8_t> page(kPage);
  std::mt19937_64 rng(1);
  for (auto& b : page) b = uint8_t(rng());

  constexpr int kElements = 200000;
  FileDigest d;
  Sha256Digest h = page_hash(page.data(), page.size());
  auto t = std::chrono::steady_clock::now();
  for (int i = 0; i < kElements; ++i) d.add_page(uint64_t(i), h);
  double element_us = seconds_since(t) / kElements * 1e6;
  t = std::chrono::steady_clock::now();
  for (int i = 0; i < kElements; ++i) h = page_hash(page.data(), page.size());
  double sha_us = seconds_since(t) / kElements * 1e6;
  std::printf("element (add or remove one page): %.2f us; SHA-256 of the 4 KiB page: %.2f us\n", element_us, sha_us);
  std::printf("a changed page costs the leader two elements: %.2f us\n", 2 * element_us);

  const std::string file = dir + "/digest_bench.file", idx = dir + "/digest_bench.idx";
  {
    FileSink sink(file, 0600);
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t i = 0; i < mib; ++i) {
      for (auto& b : buf) b = uint8_t(rng());
      sink.write(buf.data(), buf.size());
    }
    sink.close();
  }
  ::unlink(idx.c_str());
  {
    PageIndex index = PageIndex::open(idx, kPage, 0600);
    FilePageReader reader(file);
    index.update_all(reader);
    index.save(true);
  }
  t = std::chrono::steady_clock::now();
  std::optional<FileDigest> saved;
  {
    PageIndex index = PageIndex::open(idx, kPage, 0600);
    saved = index.file_digest();
    std::printf("open with a saved digest: %.4f s (%llu entries scanned)\n", seconds_since(t),
                static_cast<unsigned long long>(index.digest_pages_scanned()));
  }
  {
    // The digest records of both header slots damaged (as a header written
    // without one, after a crash between saves): recomputed from pages.idx.
    int fd = ::open(idx.c_str(), O_RDWR);
    for (off_t off : {off_t(100), off_t(4096 + 100)}) {
      uint8_t b = 0;
      if (::pread(fd, &b, 1, off) == 1) {
        b ^= 1;
        if (::pwrite(fd, &b, 1, off) != 1) return 2;
      }
    }
    ::close(fd);
  }
  {
    t = std::chrono::steady_clock::now();
    PageIndex index = PageIndex::open(idx, kPage, 0600);
    auto again = index.file_digest();
    double s = seconds_since(t);
    double index_gib = double(index.digest_pages_scanned()) * 32 / (1u << 30);
    double db_gib = double(mib) / 1024;
    std::printf("recompute from pages.idx: %.3f s for %llu entries (%.1f MiB of index): %.2f s per GiB of database\n",
                s, static_cast<unsigned long long>(index.digest_pages_scanned()), index_gib * 1024, s / db_gib);
    if (!again || !saved || !(*again == *saved)) std::printf("recomputed digest differs from the saved one!\n");
  }
  t = std::chrono::steady_clock::now();
  FileDigest whole = digest_of_file(file, kPage);
  double file_s = seconds_since(t);
  t = std::chrono::steady_clock::now();
  {
    FileSource src(file);
    Sha256 sh;
    std::vector<uint8_t> buf(1 << 20);
    for (size_t n; (n = src.read(buf.data(), buf.size())) > 0;) sh.update(buf.data(), n);
    sh.finish();
  }
  double sha_file_s = seconds_since(t);
  double gib = double(mib) / 1024;
  std::printf("digest of a %llu MiB file: %.3f s (%.2f s/GiB); SHA-256 of it: %.3f s (%.2f s/GiB)\n",
              static_cast<unsigned long long>(mib), file_s, file_s / gib, sha_file_s, sha_file_s / gib);
  std::printf("the index's digest equals the file's: %s\n", saved && *saved == whole ? "yes" : "NO");
  ::unlink(file.c_str());
  ::unlink(idx.c_str());
  return saved && *saved == whole ? 0 : 1;
}
