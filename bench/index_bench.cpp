// index_bench: a leader's peak resident memory (VmHWM) over a large file
// whose page index exists, so that the page index's share shows: a sparse
// file of --gb GiB (no disk used) with a few pages of data. Each phase runs
// in a process of its own (fork), so each peak is its own:
//   setup     first add(): the snapshot and the index of the whole file,
//             then a clean close;
//   idle      a process that only makes a Replicator (the baseline);
//   clean     add() after the clean close (the index is opened, not
//             compared), 16 changed pages pushed;
//   full      add() with no clean-close record (after a kill): the whole
//             file hashed against the index, then 16 changed pages pushed.
//
//   index_bench [--gb N] [--dir DIR]
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "duckblock/replicator.h"
#include "duckblock/store.h"

namespace {

using namespace duckblock;

long vm_hwm_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

void write_pages(const std::string& path, uint64_t pages, int count, uint64_t seed, std::vector<uint64_t>* ids) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) std::exit(1);
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> page(4096);
  for (int i = 0; i < count; ++i) {
    for (auto& b : page) b = uint8_t(rng());
    uint64_t id = rng() % pages;
    if (::pwrite(fd, page.data(), page.size(), off_t(id * 4096)) != 4096) std::exit(1);
    if (ids) ids->push_back(id);
  }
  ::close(fd);
}

// Runs `fn` in a child process and waits for it.
template <typename Fn>
void phase(const char* name, Fn fn) {
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      auto t0 = std::chrono::steady_clock::now();
      fn();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("  %-6s peak RSS %7.1f MiB   %6.1f s\n", name, static_cast<double>(vm_hwm_kib()) / 1024.0, s);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", name, e.what());
      std::fflush(nullptr);
      ::_exit(1);
    }
    std::fflush(nullptr);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "phase %s failed\n", name);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t gb = 20;
  std::string dir = "/tmp/duckblock-index-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--gb") gb = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: index_bench [--gb N] [--dir DIR]\n");
      return 2;
    }
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/store");
  const std::string path = dir + "/sparse.db";
  const uint64_t pages = (gb << 30) / 4096;
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || ::ftruncate(fd, off_t(gb << 30)) != 0) return 1;
    ::close(fd);
  }
  write_pages(path, pages, 64, 1, nullptr);
  ReplicatorOptions o;
  o.spool_dir = dir + "/spool";
  auto make = [&] { return Replicator(std::shared_ptr<ObjectStore>(make_local_store(dir + "/store")), o); };
  std::printf("sparse file of %llu GiB (%llu pages), index of %llu MiB in memory at 32 B a page\n",
              static_cast<unsigned long long>(gb), static_cast<unsigned long long>(pages),
              static_cast<unsigned long long>(pages * 32 >> 20));
  phase("setup", [&] {
    auto rep = make();
    FilePageReader reader(path);
    rep.add("db", reader);
    rep.sync();
    if (!rep.record_clean_close("db", reader)) throw std::runtime_error("no clean close");
  });
  phase("idle", [&] { auto rep = make(); });
  auto run = [&](uint64_t seed) {
    auto rep = make();
    FilePageReader reader(path);
    rep.add("db", reader);
    std::vector<uint64_t> ids;
    write_pages(path, pages, 16, seed, &ids);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    rep.push_checkpoint("db", reader, &ids);
    rep.sync();
    if (!rep.record_clean_close("db", reader)) throw std::runtime_error("no clean close");
  };
  phase("clean", [&] { run(2); });
  std::filesystem::remove(o.spool_dir + "/db/clean.json");
  phase("full", [&] { run(3); });
  return 0;
}
