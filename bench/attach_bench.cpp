// attach_bench: how long opening a replicated DuckDB takes (open_replicated,
// what ATTACH 'duckblock:...' runs) on a large file, beside DuckDB alone:
//   - after a clean close: the spool's proof holds (clean_close.h), so the
//     leader reads only the proof's pages;
//   - with no proof (after kill -9, or before the clean-close record
//     existed): the leader hashes the whole file against its page index.
// The database (--rows rows of a three-column table, about 39 bytes a row
// on disk) is built once in --dir and kept between runs, unless --db names
// one (scripts/bench_scale.sh: a copy of its database). The last line holds
// the p50s as key=value for scripts.
//
//   attach_bench [--rows N] [--runs N] [--dir DIR] [--db PATH]
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.h"
#include "duckblock/duckdb_capture.h"

namespace {

using namespace duckblock;
using bench::Clock;
using bench::ms_since;
using bench::percentile;
using bench::run;

void print(const char* what, const std::vector<double>& ms) {
  std::printf("  %-34s p50 %8.1f ms   min %8.1f   max %8.1f   (%zu runs)\n", what, percentile(ms, 50),
              percentile(ms, 0), percentile(ms, 100), ms.size());
}

}  // namespace

int main(int argc, char** argv) {
  long rows = 20000000;
  int runs = 5;
  std::string dir = "/tmp/duckblock-attach-bench", db_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rows") rows = std::atol(argv[i + 1]);
    else if (a == "--runs") runs = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--db") db_path = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: attach_bench [--rows N] [--runs N] [--dir DIR] [--db PATH]\n");
      return 2;
    }
  }
  try {
    std::filesystem::create_directories(dir);
    const std::string path = db_path.empty() ? dir + "/big-" + std::to_string(rows) + ".duckdb" : db_path;
    if (!std::filesystem::exists(path)) {
      std::printf("building %s (%ld rows)...\n", path.c_str(), rows);
      duckdb::DuckDB db(path);
      duckdb::Connection con(db);
      run(con, "CREATE TABLE t AS SELECT range AS id, (random() * 1000000)::BIGINT AS v, md5(range::VARCHAR) AS s "
               "FROM range(" + std::to_string(rows) + ")");
      run(con, "CHECKPOINT");
    }
    const std::string work = dir + "/run";
    std::filesystem::remove_all(work);
    std::filesystem::create_directories(work + "/store");
    std::printf("file: %.0f MB\n", static_cast<double>(std::filesystem::file_size(path)) / 1e6);

    std::vector<double> plain, clean, full;
    for (int i = 0; i < runs; ++i) {
      auto t0 = Clock::now();
      { duckdb::DuckDB db(path); }
      plain.push_back(ms_since(t0));
    }
    ReplicatorOptions o;
    o.spool_dir = work + "/spool";
    auto rep = std::make_shared<Replicator>(make_local_store(work + "/store"), o);
    {
      auto t0 = Clock::now();
      auto db = duckdb_integration::open_replicated(path, rep, "big");
      std::printf("first open (ships the whole file as the snapshot): %.0f ms\n", ms_since(t0));
    }
    rep->sync();
    const std::string record = o.spool_dir + "/big/clean.json";
    for (int i = 0; i < 2 * runs; ++i) {
      // Alternating, so both see the same machine (and page cache) noise.
      bool with_proof = i % 2 == 0;
      if (!with_proof) std::filesystem::remove(record);  // as a kill -9 leaves it: no record
      auto t0 = Clock::now();
      auto db = duckdb_integration::open_replicated(path, rep, "big");
      double ms = ms_since(t0);
      bool compared = rep->status("big").full_compare_at_add;
      if (compared == with_proof) {
        std::fprintf(stderr, "run %d: expected %s comparison\n", i, with_proof ? "no" : "a whole-file");
        return 1;
      }
      (with_proof ? clean : full).push_back(ms);
      db->close();
      if (!db->stats().clean_close) {
        std::fprintf(stderr, "run %d: the close was not clean: %s\n", i, db->stats().last_error.value_or("").c_str());
        return 1;
      }
    }
    std::printf("open time (page cache warm):\n");
    print("DuckDB alone", plain);
    print("replicated, after a clean close", clean);
    print("replicated, no proof (after kill)", full);
    std::printf("plain_p50=%.1f clean_p50=%.1f clean_max=%.1f kill_p50=%.1f kill_max=%.1f\n", percentile(plain, 50),
                percentile(clean, 50), percentile(clean, 100), percentile(full, 50), percentile(full, 100));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attach_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
