// duckdb_bench: what replicating a real DuckDB costs (scripts/bench_duckdb.sh).
//
//  1. Bytes shipped per checkpoint on the workload of the design notes (a
//     2-million-row table, then delete 5000 rows / update one row / drop a
//     one-row table, one CHECKPOINT each), beside the bytes DuckDB wrote,
//     what shipping the 256 KiB-aligned pages it wrote would have sent, and
//     the 4 KiB pages whose bytes actually changed.
//  2. CHECKPOINT latency with capture on and off (two databases, same data,
//     checkpoints interleaved so both see the same machine noise).
//  3. Follower lag after a small checkpoint with a 1 s poll interval: from
//     the moment CHECKPOINT returns on the leader until the follower's file
//     holds that checkpoint (local-directory store).
//
//  4. Bytes shipped, compressed (zstd, the default) and plain, on an
//     eight-step workload like the demo's (bulk load, updates, deletes,
//     appends, a dropped table), one CHECKPOINT each: two leaders run the
//     same SQL, and each step's figure is what its store grew by.
//
//   duckdb_bench [--rows N] [--latency-runs N] [--lag-samples N] [--dir DIR]
//                [--only bytes|latency|lag|compression]
//   duckdb_bench --make-db PATH --size-mb N
//       builds a DuckDB database of about N MB from SQL (range(), random()),
//       plain DuckDB without capture, for scripts/bench_scale.sh
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "duckblock/duckdb_capture.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"

namespace {

using namespace duckblock;
using duckdb_integration::CaptureOptions;
using duckdb_integration::open_replicated;
using duckdb_integration::PushEvent;
using bench::Clock;
using bench::ms_since;
using bench::percentile;
using bench::run;

std::shared_ptr<Replicator> make_replicator(std::shared_ptr<ObjectStore> store, const std::string& spool,
                                            int compression = kDefaultCompressionLevel) {
  ReplicatorOptions o;
  o.spool_dir = spool;
  o.compression = compression;
  return std::make_shared<Replicator>(std::move(store), o);
}

std::string kb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f KB", static_cast<double>(bytes) / 1000.0);
  return buf;
}

// ---------------------------------------------------------------------------

void bytes_per_checkpoint(const std::string& dir, long rows) {
  std::printf("== bytes shipped per checkpoint (%ld-row table; local-directory store)\n", rows);
  std::shared_ptr<ObjectStore> store = make_local_store(dir + "/store1");
  auto rep = make_replicator(store, dir + "/spool1");

  struct Row {
    std::string step;
    uint64_t wrote = 0, aligned = 0, changed = 0, shipped = 0, encoded = 0, pushes = 0;
  };
  std::vector<Row> rows_out;
  Row* current = nullptr;
  std::vector<uint8_t> before;  // the file as of the previous push
  CaptureOptions co;
  co.on_push = [&](const PushEvent& ev) {
    std::vector<uint8_t> now(ev.file_length);
    ev.reader->read_at(0, now.data(), now.size());
    if (current) {
      // 4 KiB pages whose bytes differ from the previous push (pages past
      // the old end count as changed; a shorter file changes no page).
      uint64_t changed = 0;
      for (uint64_t off = 0; off < now.size(); off += 4096) {
        size_t n = std::min<uint64_t>(4096, now.size() - off);
        if (off + n > before.size() || std::memcmp(&now[off], &before[off], n) != 0) changed += n;
      }
      // The 256 KiB-aligned pages the written 4 KiB pages fall in.
      uint64_t aligned = 0, last = UINT64_MAX;
      for (uint64_t p : *ev.candidates) {
        if (p / 64 != last) aligned += 262144;
        last = p / 64;
      }
      current->wrote += ev.bytes_written;
      current->aligned += aligned;
      current->changed += changed;
      current->shipped += ev.result.data_bytes;
      current->encoded += ev.result.encoded_bytes;
      current->pushes += 1;
    }
    before = std::move(now);
  };
  auto db = open_replicated(dir + "/leader.duckdb", rep, "bench", nullptr, co);
  {
    duckdb::Connection con(db->db());
    run(con, "CREATE TABLE t AS SELECT range AS id, random() AS v FROM range(" + std::to_string(rows) + ")");
    run(con, "CREATE TABLE one AS SELECT 1 AS x");
    run(con, "CHECKPOINT");  // its push leaves the file's bytes in `before`
    std::vector<std::pair<std::string, std::string>> steps = {
        {"delete 5000 rows", "DELETE FROM t WHERE id BETWEEN 1000000 AND 1004999"},
        {"update one row", "UPDATE t SET v = -1 WHERE id = 123456"},
        {"drop a one-row table", "DROP TABLE one"},
    };
    for (auto& [name, sql] : steps) {
      rows_out.push_back({name});
      current = &rows_out.back();
      run(con, sql);
      run(con, "CHECKPOINT");
      current = nullptr;
    }
  }
  db.reset();
  rep->sync();
  std::printf("| checkpoint after | DuckDB wrote | 256 KiB-aligned pages | 4 KiB pages changed | duckblock shipped (pages / segment) | shipped / changed |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (auto& r : rows_out) {
    std::printf("| %s | %s | %s | %s | %s / %s | %.2fx |\n", r.step.c_str(), kb(r.wrote).c_str(), kb(r.aligned).c_str(),
                kb(r.changed).c_str(), kb(r.shipped).c_str(), kb(r.encoded).c_str(),
                r.changed ? static_cast<double>(r.shipped) / static_cast<double>(r.changed) : 0.0);
  }
  std::printf("(file: %s; pushes per checkpoint: %llu/%llu/%llu)\n\n",
              kb(std::filesystem::file_size(dir + "/leader.duckdb")).c_str(),
              static_cast<unsigned long long>(rows_out[0].pushes), static_cast<unsigned long long>(rows_out[1].pushes),
              static_cast<unsigned long long>(rows_out[2].pushes));
}

// ---------------------------------------------------------------------------

void checkpoint_latency(const std::string& dir, long rows, int runs) {
  std::printf("== CHECKPOINT latency, capture off vs on (%ld-row table, %d checkpoints each, interleaved)\n", rows,
              runs);
  duckdb::DuckDB plain(dir + "/plain.duckdb");
  std::shared_ptr<ObjectStore> store = make_local_store(dir + "/store2");
  auto rep = make_replicator(store, dir + "/spool2");
  // Time inside the push (diff, segment write, fsyncs): the part of the
  // CHECKPOINT that capture adds.
  std::vector<double> push_ms;
  Clock::time_point push_start;
  CaptureOptions co;
  co.before_push = [&] { push_start = Clock::now(); };
  co.on_push = [&](const PushEvent& ev) {
    if (ev.result.seq != 0) push_ms.push_back(ms_since(push_start));
  };
  auto captured = open_replicated(dir + "/captured.duckdb", rep, "lat", nullptr, co);
  duckdb::Connection c_off(plain), c_on(captured->db());
  for (auto* c : {&c_off, &c_on}) {
    run(*c, "CREATE TABLE t AS SELECT range AS id, random() AS v FROM range(" + std::to_string(rows) + ")");
    run(*c, "CHECKPOINT");
  }
  std::vector<double> off, on;
  for (int i = 0; i < runs; ++i) {
    for (auto* c : {&c_off, &c_on}) {
      // 100 neighbouring rows: small enough to stay in the WAL (a large
      // UPDATE makes DuckDB checkpoint at its COMMIT, leaving CHECKPOINT
      // nothing to do), so CHECKPOINT does the whole work being timed.
      long first = (static_cast<long>(i) * 7919 % (rows / 100)) * 100;
      run(*c, "UPDATE t SET v = v + 1 WHERE id BETWEEN " + std::to_string(first) + " AND " + std::to_string(first + 99));
      auto t0 = Clock::now();
      run(*c, "CHECKPOINT");
      (c == &c_off ? off : on).push_back(ms_since(t0));
    }
  }
  rep->sync();
  std::printf("| capture | p50 | p90 | max |\n|---|---|---|---|\n");
  std::printf("| off | %.1f ms | %.1f ms | %.1f ms |\n", percentile(off, 50), percentile(off, 90), percentile(off, 100));
  std::printf("| on  | %.1f ms | %.1f ms | %.1f ms |\n", percentile(on, 50), percentile(on, 90), percentile(on, 100));
  std::printf("| push alone | %.1f ms | %.1f ms | %.1f ms |\n", percentile(push_ms, 50), percentile(push_ms, 90),
              percentile(push_ms, 100));
  std::printf("on/off at p50: %.2fx (segments shipped: %llu)\n\n", percentile(on, 50) / percentile(off, 50),
              static_cast<unsigned long long>(captured->stats().segments));
}

// ---------------------------------------------------------------------------

void follower_lag(const std::string& dir, int samples) {
  std::printf("== follower lag after a small checkpoint (poll interval 1 s, local-directory store, %d samples)\n",
              samples);
  std::shared_ptr<ObjectStore> store = make_local_store(dir + "/store3");
  auto rep = make_replicator(store, dir + "/spool3");
  auto db = open_replicated(dir + "/lag.duckdb", rep, "lag");
  duckdb::Connection con(db->db());
  run(con, "CREATE TABLE t AS SELECT range AS id, random() AS v FROM range(100000)");
  run(con, "CHECKPOINT");
  rep->sync();

  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, Clock::time_point> applied_at;
  FollowerOptions fo;
  fo.poll_interval = std::chrono::milliseconds(1000);
  fo.hooks.after_apply = [&](const ReplicaFiles&, const FollowerPoll& p) {
    std::lock_guard l(mu);
    applied_at[p.position.seq] = Clock::now();
    cv.notify_all();
  };
  Follower follower(store, "lag", dir + "/follower.duckdb", fo);
  follower.poll_once();
  follower.start();

  std::mt19937 rng(42);
  std::vector<double> lags;
  for (int i = 0; i < samples; ++i) {
    // A random phase against the follower's polls.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 999)(rng)));
    run(con, "UPDATE t SET v = " + std::to_string(i) + " WHERE id = " + std::to_string(i));
    run(con, "CHECKPOINT");
    auto t0 = Clock::now();
    uint64_t seq = db->stats().last_seq;
    std::unique_lock l(mu);
    bool ok = cv.wait_for(l, std::chrono::seconds(30), [&] {
      return !applied_at.empty() && applied_at.rbegin()->first >= seq;
    });
    if (!ok) {
      std::fprintf(stderr, "follower did not reach seq %llu: %s\n", static_cast<unsigned long long>(seq),
                   follower.last_error().value_or("no error").c_str());
      std::exit(1);
    }
    auto it = applied_at.lower_bound(seq);
    lags.push_back(std::chrono::duration<double, std::milli>(it->second - t0).count());
  }
  follower.stop();
  std::printf("| p50 | p90 | p99 | max |\n|---|---|---|---|\n");
  std::printf("| %.0f ms | %.0f ms | %.0f ms | %.0f ms |\n\n", percentile(lags, 50), percentile(lags, 90),
              percentile(lags, 99), percentile(lags, 100));
}

// ---------------------------------------------------------------------------

uint64_t dir_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

void compressed_vs_plain(const std::string& dir, long rows) {
  std::printf("== bytes shipped per checkpoint, zstd:%d vs plain hadbp v1 (%ld-row bulk load; local-directory "
              "stores; one CHECKPOINT per step)\n",
              kDefaultCompressionLevel, rows);
  struct Leader {
    std::string name;
    std::string store_dir;
    std::shared_ptr<Replicator> rep;
    std::unique_ptr<duckdb_integration::ReplicatedDatabase> db;
    std::unique_ptr<duckdb::Connection> con;
    uint64_t before = 0;
  };
  std::vector<Leader> leaders(2);
  for (int i = 0; i < 2; ++i) {
    auto& l = leaders[i];
    int level = i == 0 ? 0 : kDefaultCompressionLevel;
    l.name = compression_name(level);
    l.store_dir = dir + "/cstore-" + l.name;
    l.rep = make_replicator(make_local_store(l.store_dir), dir + "/cspool-" + l.name, level);
    l.db = open_replicated(dir + "/leader-" + l.name + ".duckdb", l.rep, "bench");
    l.con = std::make_unique<duckdb::Connection>(l.db->db());
    l.rep->sync();
    l.before = dir_bytes(l.store_dir);
  }
  std::string n = std::to_string(rows);
  std::vector<std::pair<std::string, std::string>> steps = {
      {"bulk load", "CREATE TABLE t AS SELECT range AS id, random() AS v, 'customer-' || (range % 9973) AS name, "
                    "range % 100 AS grp FROM range(" + n + ")"},
      {"update 10% of rows", "UPDATE t SET v = v + 1 WHERE id % 10 = 3"},
      {"delete 5000 rows", "DELETE FROM t WHERE id BETWEEN " + std::to_string(rows / 2) + " AND " +
                               std::to_string(rows / 2 + 4999)},
      {"append 10% rows", "INSERT INTO t SELECT " + n + " + range, random(), 'new-' || range, 7 FROM range(" +
                              std::to_string(rows / 10) + ")"},
      {"create a small table", "CREATE TABLE small AS SELECT range AS k FROM range(100)"},
      {"update one row", "UPDATE t SET v = -1 WHERE id = 12345"},
      {"drop the small table", "DROP TABLE small"},
      {"update 100 rows", "UPDATE t SET grp = 0 WHERE id BETWEEN 1000 AND 1099"},
  };
  std::printf("| step | plain v1 | zstd | plain / zstd |\n|---|---|---|---|\n");
  uint64_t total[2] = {0, 0};
  for (auto& [name, sql] : steps) {
    uint64_t grew[2];
    for (int i = 0; i < 2; ++i) {
      auto& l = leaders[i];
      run(*l.con, sql);
      run(*l.con, "CHECKPOINT");
      l.rep->sync();
      uint64_t now = dir_bytes(l.store_dir);
      grew[i] = now - l.before;
      total[i] += grew[i];
      l.before = now;
    }
    std::printf("| %s | %s | %s | %.1fx |\n", name.c_str(), kb(grew[0]).c_str(), kb(grew[1]).c_str(),
                grew[1] ? static_cast<double>(grew[0]) / static_cast<double>(grew[1]) : 0.0);
  }
  std::printf("| total | %s | %s | %.1fx |\n", kb(total[0]).c_str(), kb(total[1]).c_str(),
              total[1] ? static_cast<double>(total[0]) / static_cast<double>(total[1]) : 0.0);
  std::printf("(file: %s; the leader's file stays as %s for segment_bench --file)\n\n",
              kb(std::filesystem::file_size(dir + "/leader-none.duckdb")).c_str(),
              (dir + "/leader-none.duckdb").c_str());
  for (auto& l : leaders) {
    l.con.reset();
    l.db.reset();
  }
}

// Appends 5-million-row batches (integers, random doubles, strings of 9973
// distinct values) until the checkpointed file reaches `mb` MB; built under
// another name and renamed, so a killed build is never taken for a cached one.
int make_db(const std::string& path, long mb) {
  std::string tmp = path + ".building";
  std::filesystem::remove(tmp);
  std::filesystem::remove(tmp + ".wal");
  {
    duckdb::DuckDB db(tmp);
    duckdb::Connection con(db);
    run(con, "CREATE TABLE t (id BIGINT, v DOUBLE, name VARCHAR, grp INTEGER)");
    const long batch = 5000000;
    for (long start = 0;; start += batch) {
      run(con, "INSERT INTO t SELECT range, random(), 'customer-' || (range % 9973), range % 100 FROM range(" +
                   std::to_string(start) + ", " + std::to_string(start + batch) + ")");
      run(con, "CHECKPOINT");
      if (std::filesystem::file_size(tmp) >= static_cast<uintmax_t>(mb) * 1000000) break;
    }
  }
  std::filesystem::rename(tmp, path);
  std::printf("%s: %ju bytes\n", path.c_str(), static_cast<uintmax_t>(std::filesystem::file_size(path)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  long rows = 2000000;
  int latency_runs = 30, lag_samples = 40;
  std::string dir, only, make_db_path;
  long size_mb = 0;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 == argc) a = "--help";  // every option takes a value
    if (a == "--rows") rows = std::atol(argv[i + 1]);
    else if (a == "--latency-runs") latency_runs = std::atoi(argv[i + 1]);
    else if (a == "--lag-samples") lag_samples = std::atoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--only") only = argv[i + 1];
    else if (a == "--make-db") make_db_path = argv[i + 1];
    else if (a == "--size-mb") size_mb = std::atol(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: duckdb_bench [--rows N] [--latency-runs N] [--lag-samples N] [--dir DIR] "
                           "[--only bytes|latency|lag|compression]\n"
                           "       duckdb_bench --make-db PATH --size-mb N\n");
      return 2;
    }
  }
  if (!make_db_path.empty()) {
    if (size_mb <= 0) {
      std::fprintf(stderr, "duckdb_bench: --make-db needs --size-mb N\n");
      return 2;
    }
    try {
      return make_db(make_db_path, size_mb);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "duckdb_bench: %s\n", e.what());
      return 1;
    }
  }
  return bench::run_in_dir("duckblock-bench", dir, [&](const std::string& d) {
    if (only.empty() || only == "bytes") bytes_per_checkpoint(d, rows);
    if (only.empty() || only == "latency") checkpoint_latency(d, rows, latency_runs);
    if (only.empty() || only == "lag") follower_lag(d, lag_samples);
    if (only.empty() || only == "compression") compressed_vs_plain(d, rows);
  });
}
