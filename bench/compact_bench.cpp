// compact_bench: what a checkpoint at which a snapshot is due costs the
// leader, now that the snapshot is compacted in the background, beside what
// writing the snapshot from the file costs the caller (the old checkpoint
// path; Replicator::snapshot_now still does exactly that), on one file in
// one run. Also how long the background compaction takes.
//
//   compact_bench [--mb N] [--checkpoints N] [--every N] [--pages N] [--dir DIR]
//
// The file: N MiB of pages that are half random bytes and half zeros (zstd
// halves them, like a real database's pages). Each checkpoint rewrites
// --pages random pages (default 16) and pushes them as candidates, as the
// extension does. Each compaction's peak resident memory above the
// process's before it is printed too (VmHWM reset through
// /proc/self/clear_refs): with --every 100 one compaction merges 100
// incrementals.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/page_reader.h"
#include "duckblock/replicator.h"
#include "duckblock/store.h"

using namespace duckblock;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Resident-set figures of this process from /proc/self/status, in KiB.
uint64_t status_kib(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t v = 0;
  size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') v = std::strtoull(line + n + 1, nullptr, 10);
  }
  std::fclose(f);
  return v;
}

// Resets VmHWM to the current RSS (Linux: "5" to clear_refs).
void reset_peak_rss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return;
  std::fputs("5", f);
  std::fclose(f);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void fill_page(std::mt19937_64& rng, uint8_t* p) {
  for (size_t i = 0; i < 2048; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
  std::memset(p + 2048, 0, 2048);
}

int run(const std::string& dir, uint64_t mb, int checkpoints, uint64_t every, int pages_per_checkpoint) {
  const std::string path = dir + "/db.bin";
  std::mt19937_64 rng(1);
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<uint8_t> chunk(1 << 20);
    for (uint64_t m = 0; m < mb; ++m) {
      for (size_t off = 0; off < chunk.size(); off += 4096) fill_page(rng, chunk.data() + off);
      if (::write(fd, chunk.data(), chunk.size()) != ssize_t(chunk.size())) return 1;
    }
    ::fsync(fd);
    ::close(fd);
  }
  const uint64_t pages = mb * 256;
  ReplicatorOptions o;
  o.spool_dir = dir + "/spool";
  o.snapshots.every_segments = every;
  o.snapshots.every_bytes = 0;
  Replicator rep(std::shared_ptr<ObjectStore>(make_local_store(dir + "/store")), o);
  FilePageReader reader(path);
  auto t_add = Clock::now();
  rep.add("db", reader);
  rep.sync("db", std::chrono::minutes(10));
  std::printf("== %llu MiB file, snapshot every %llu checkpoints, %d pages changed per checkpoint\n",
              (unsigned long long)mb, (unsigned long long)every, pages_per_checkpoint);
  std::printf("(add with the seq-0 snapshot from the file and its upload: %.0f ms)\n\n", ms_since(t_add));

  int fd = ::open(path.c_str(), O_WRONLY);
  auto touch = [&](std::vector<uint64_t>& ids) {
    std::vector<uint8_t> page(4096);
    ids.clear();
    for (int k = 0; k < pages_per_checkpoint; ++k) ids.push_back(rng() % pages);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (uint64_t id : ids) {
      fill_page(rng, page.data());
      if (::pwrite(fd, page.data(), 4096, off_t(id * 4096)) != 4096) std::exit(1);
    }
  };
  std::vector<double> plain, due, compaction, compaction_rss_mib;
  std::vector<uint64_t> ids;
  for (int i = 0; i < checkpoints; ++i) {
    touch(ids);
    uint64_t rss_before_kib = status_kib("VmRSS");
    reset_peak_rss();
    auto t0 = Clock::now();
    PushResult r = rep.push_checkpoint("db", reader, &ids);
    double ms = ms_since(t0);
    (r.snapshot ? due : plain).push_back(ms);
    if (r.snapshot) {
      // Time to the compacted snapshot (the next checkpoint waits for it
      // here only so that each compaction is timed alone).
      auto tc = Clock::now();
      uint64_t want = r.seq;
      std::thread([&rep, tc, want, &compaction] {
        while (rep.status("db").last_compacted_seq < want) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        compaction.push_back(ms_since(tc));
      }).join();
      uint64_t peak_kib = status_kib("VmHWM");
      compaction_rss_mib.push_back(static_cast<double>(peak_kib > rss_before_kib ? peak_kib - rss_before_kib : 0) /
                                   1024.0);
    }
  }
  rep.sync("db", std::chrono::minutes(10));
  // The old path: the whole file read and written as a snapshot by the
  // caller, as a due checkpoint did before compaction.
  std::vector<double> old_way;
  for (int i = 0; i < 3; ++i) {
    touch(ids);
    auto t0 = Clock::now();
    rep.snapshot_now("db", reader);
    old_way.push_back(ms_since(t0));
  }
  rep.sync("db", std::chrono::minutes(10));
  ::close(fd);
  std::printf("| checkpoint | n | p50 ms | max ms |\n|---|---|---|---|\n");
  std::printf("| no snapshot due | %zu | %.1f | %.1f |\n", plain.size(), percentile(plain, 50), percentile(plain, 100));
  std::printf("| snapshot due, compacted in the background (now) | %zu | %.1f | %.1f |\n", due.size(),
              percentile(due, 50), percentile(due, 100));
  std::printf("| snapshot written from the file by the caller (before; snapshot_now) | %zu | %.1f | %.1f |\n",
              old_way.size(), percentile(old_way, 50), percentile(old_way, 100));
  std::printf("\nbackground compaction of each due snapshot (due checkpoint to snapshot spooled): p50 %.0f ms, max %.0f ms\n",
              percentile(compaction, 50), percentile(compaction, 100));
  std::printf("peak RSS of each compaction above the process's before it (%llu inputs each): p50 %.1f MiB, max %.1f MiB\n",
              (unsigned long long)every, percentile(compaction_rss_mib, 50), percentile(compaction_rss_mib, 100));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mb = 512, every = 10;
  int checkpoints = 20, pages_per_checkpoint = 16;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mb") mb = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--checkpoints") checkpoints = std::atoi(argv[i + 1]);
    else if (a == "--every") every = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--pages") pages_per_checkpoint = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: compact_bench [--mb N] [--checkpoints N] [--every N] [--pages N] [--dir DIR]\n");
      return 2;
    }
  }
  bool own = dir.empty();
  if (own) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "compact_bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return 1;
    dir = tmpl;
  }
  std::filesystem::create_directories(dir);
  int rc = 1;
  try {
    rc = run(dir, mb, checkpoints, every, pages_per_checkpoint);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compact_bench: %s\n", e.what());
  }
  if (own) std::filesystem::remove_all(dir);
  return rc;
}
