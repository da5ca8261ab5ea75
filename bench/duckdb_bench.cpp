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
//   duckdb_bench --scale checkpoint|rss|steps ...
//       scripts/bench_scale.sh's measurements on copies of such a database
//       (see "Modes for scripts/bench_scale.sh" below; --help lists them)
#include <sys/resource.h>

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
#include <stdexcept>
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

// The eight-step workload of issue 12 on a table `w` of `rows` rows: bulk
// load, updates, deletes, appends, a small table created and dropped.
std::vector<std::pair<std::string, std::string>> eight_steps(long rows, const std::string& table = "t") {
  std::string n = std::to_string(rows), w = table;
  return {
      {"bulk load", "CREATE TABLE " + w + " AS SELECT range AS id, random() AS v, 'customer-' || (range % 9973) AS name, "
                    "range % 100 AS grp FROM range(" + n + ")"},
      {"update 10% of rows", "UPDATE " + w + " SET v = v + 1 WHERE id % 10 = 3"},
      {"delete 5000 rows", "DELETE FROM " + w + " WHERE id BETWEEN " + std::to_string(rows / 2) + " AND " +
                               std::to_string(rows / 2 + 4999)},
      {"append 10% rows", "INSERT INTO " + w + " SELECT " + n + " + range, random(), 'new-' || range, 7 FROM range(" +
                              std::to_string(rows / 10) + ")"},
      {"create a small table", "CREATE TABLE small AS SELECT range AS k FROM range(100)"},
      {"update one row", "UPDATE " + w + " SET v = -1 WHERE id = 12345"},
      {"drop the small table", "DROP TABLE small"},
      {"update 100 rows", "UPDATE " + w + " SET grp = 0 WHERE id BETWEEN 1000 AND 1099"},
  };
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
  auto steps = eight_steps(rows);
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

// ---------------------------------------------------------------------------
// Modes for scripts/bench_scale.sh (--scale MODE), each on copies of a large
// database the script made (table t(id, v, name, grp), ids from 0), each
// printing `key=value` figures on one line for the script to parse.

std::shared_ptr<Replicator> scale_replicator(const std::string& dir, const std::string& tag, int compression,
                                             uint64_t snapshot_every) {
  ReplicatorOptions o;
  o.spool_dir = dir + "/spool-" + tag;
  o.compression = compression;
  o.snapshots.every_segments = snapshot_every;
  o.spool_first = true;  // as the extension's ATTACH
  return std::make_shared<Replicator>(make_local_store(dir + "/store-" + tag), o);
}

long table_rows(duckdb::Connection& con) {
  auto r = con.Query("SELECT max(id) + 1 FROM t");
  if (r->HasError()) throw std::runtime_error(r->GetError());
  return static_cast<long>(r->GetValue(0, 0).GetValue<int64_t>());
}

// A small update that stays in the WAL, so that CHECKPOINT does the work.
void update_100_rows(duckdb::Connection& con, long rows, int i) {
  long first = (static_cast<long>(i) * 7919 % (rows / 100)) * 100;
  run(con, "UPDATE t SET v = v + 1 WHERE id BETWEEN " + std::to_string(first) + " AND " + std::to_string(first + 99));
}

// Waits until no compaction is running or queued for `db`.
void wait_compactions(Replicator& rep, const std::string& db) {
  auto deadline = Clock::now() + std::chrono::minutes(30);
  while (rep.status(db).compacting_seq != 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  rep.sync(db, std::chrono::minutes(30));
}

// CHECKPOINT latency after a 100-row UPDATE, DuckDB alone (`plain_path`)
// and replicated (`captured_path`, a snapshot due every `every`), the two
// alternating (which goes first alternates too) so load hits both alike.
void scale_checkpoint(const std::string& dir, const std::string& plain_path, const std::string& captured_path,
                      int runs, uint64_t every) {
  duckdb::DuckDB plain(plain_path);
  auto rep = scale_replicator(dir, "ckpt", kDefaultCompressionLevel, every);
  auto captured = open_replicated(captured_path, rep, "ckpt");
  wait_compactions(*rep, "ckpt");  // the seq-0 snapshot of the whole file, before any timing
  duckdb::Connection c_off(plain), c_on(captured->db());
  long rows = table_rows(c_off);
  std::vector<double> off, on;
  for (int i = 0; i < runs; ++i) {
    for (int k = 0; k < 2; ++k) {
      bool on_side = (i + k) % 2 == 1;
      duckdb::Connection& c = on_side ? c_on : c_off;
      update_100_rows(c, rows, i);
      auto t0 = Clock::now();
      run(c, "CHECKPOINT");
      (on_side ? on : off).push_back(ms_since(t0));
    }
  }
  uint64_t compacted_during = rep->status("ckpt").last_compacted_seq;
  wait_compactions(*rep, "ckpt");
  const ReplicationStatus st = rep->status("ckpt");
  std::printf("off_p50=%.1f off_p99=%.1f off_max=%.1f on_p50=%.1f on_p99=%.1f on_max=%.1f "
              "last_compacted_during=%llu last_compacted=%llu coalesced=%llu segments=%llu\n",
              percentile(off, 50), percentile(off, 99), percentile(off, 100), percentile(on, 50),
              percentile(on, 99), percentile(on, 100), static_cast<unsigned long long>(compacted_during),
              static_cast<unsigned long long>(st.last_compacted_seq),
              static_cast<unsigned long long>(st.snapshots_coalesced),
              static_cast<unsigned long long>(captured->stats().segments));
}

// One process per side, since peak RSS is a process's: `checkpoints` small
// updates and a 1% update, one CHECKPOINT each, on DuckDB alone or
// replicated (opening it ships the seq-0 snapshot; a snapshot due every
// `every`, compacted in the background and waited for before the figure).
void scale_rss(const std::string& dir, const std::string& path, bool replicated, int checkpoints, uint64_t every) {
  std::shared_ptr<Replicator> rep;
  std::unique_ptr<duckdb_integration::ReplicatedDatabase> rdb;
  std::unique_ptr<duckdb::DuckDB> plain;
  if (replicated) {
    rep = scale_replicator(dir, "rss", kDefaultCompressionLevel, every);
    rdb = open_replicated(path, rep, "rss");
  } else {
    plain = std::make_unique<duckdb::DuckDB>(path);
  }
  {
    duckdb::Connection con(replicated ? rdb->db() : *plain);
    long rows = table_rows(con);
    for (int i = 0; i < checkpoints; ++i) {
      update_100_rows(con, rows, i);
      run(con, "CHECKPOINT");
    }
    run(con, "UPDATE t SET v = v + 1 WHERE id % 100 = 7");
    run(con, "CHECKPOINT");
  }
  if (rep) wait_compactions(*rep, "rss");
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("peak_rss_kib=%ld\n", ru.ru_maxrss);
}

// The eight steps (on a new table w of `rows` rows inside the large
// database) on two leaders, plain hadbp v1 and zstd, each step's CHECKPOINT
// and upload timed and its store growth measured; after each step restic
// backs up the zstd leader's file into `restic_repo` (initialized, with
// RESTIC_PASSWORD set, by the caller) and its growth is measured too.
// Row 0 is the first copy: duckblock's seq-0 snapshot, restic's first backup.
void scale_steps(const std::string& dir, const std::string& none_path, const std::string& zstd_path, long rows,
                 const std::string& restic_repo) {
  struct Leader {
    std::string tag, path;
    std::shared_ptr<Replicator> rep;
    std::unique_ptr<duckdb_integration::ReplicatedDatabase> db;
    std::unique_ptr<duckdb::Connection> con;
    uint64_t before = 0, pages = 0, page_bytes = 0;
  };
  Leader leaders[2];
  leaders[0].tag = "none", leaders[0].path = none_path;
  leaders[1].tag = "zstd", leaders[1].path = zstd_path;
  auto restic_backup = [&](double& secs) {
    uint64_t before = dir_bytes(restic_repo);
    auto t0 = Clock::now();
    std::string cmd = "restic -r '" + restic_repo + "' backup --quiet '" + zstd_path + "' >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("restic backup failed: " + cmd);
    secs = ms_since(t0) / 1000.0;
    return dir_bytes(restic_repo) - before;
  };
  auto print_row = [](const std::string& step, const uint64_t grew[2], const double secs[2], uint64_t restic,
                      double restic_s, const Leader& z) {
    std::printf("step=%s|none=%llu|none_s=%.2f|zstd=%llu|zstd_s=%.2f|restic=%llu|restic_s=%.2f|pages=%llu\n",
                step.c_str(), (unsigned long long)grew[0], secs[0], (unsigned long long)grew[1], secs[1],
                (unsigned long long)restic, restic_s, (unsigned long long)z.pages);
    std::fflush(stdout);
  };
  uint64_t grew[2];
  double secs[2], restic_s;
  for (int i = 0; i < 2; ++i) {
    auto& l = leaders[i];
    l.rep = scale_replicator(dir, "steps-" + l.tag, i == 0 ? 0 : kDefaultCompressionLevel, 100);
    CaptureOptions co;
    co.on_push = [&l](const PushEvent& ev) { l.pages += ev.result.pages; };
    auto t0 = Clock::now();
    l.db = open_replicated(l.path, l.rep, "steps", nullptr, co);
    l.rep->sync();
    secs[i] = ms_since(t0) / 1000.0;
    l.con = std::make_unique<duckdb::Connection>(l.db->db());
    grew[i] = l.before = dir_bytes(dir + "/store-steps-" + l.tag);
  }
  uint64_t restic = restic_backup(restic_s);
  print_row("first copy of the file", grew, secs, restic, restic_s, leaders[1]);
  for (auto& [name, sql] : eight_steps(rows, "w")) {
    for (int i = 0; i < 2; ++i) {
      auto& l = leaders[i];
      l.pages = 0;
      run(*l.con, sql);
      auto t0 = Clock::now();
      run(*l.con, "CHECKPOINT");
      l.rep->sync();
      secs[i] = ms_since(t0) / 1000.0;
      uint64_t now = dir_bytes(dir + "/store-steps-" + l.tag);
      grew[i] = now - l.before;
      l.before = now;
    }
    restic = restic_backup(restic_s);
    print_row(name, grew, secs, restic, restic_s, leaders[1]);
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
  std::string dir, only, make_db_path, scale, db_path, db2_path, restic_repo;
  long size_mb = 0;
  uint64_t every = 10;
  int checkpoints = 100, replicated = 1;
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
    else if (a == "--scale") scale = argv[i + 1];
    else if (a == "--db") db_path = argv[i + 1];
    else if (a == "--db2") db2_path = argv[i + 1];
    else if (a == "--every") every = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--checkpoints") checkpoints = std::atoi(argv[i + 1]);
    else if (a == "--replicated") replicated = std::atoi(argv[i + 1]);
    else if (a == "--restic-repo") restic_repo = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: duckdb_bench [--rows N] [--latency-runs N] [--lag-samples N] [--dir DIR] "
                           "[--only bytes|latency|lag|compression]\n"
                           "       duckdb_bench --make-db PATH --size-mb N\n"
                           "       duckdb_bench --scale checkpoint --db PLAIN --db2 CAPTURED [--latency-runs N] [--every N]\n"
                           "       duckdb_bench --scale rss --db PATH --replicated 0|1 [--checkpoints N] [--every N]\n"
                           "       duckdb_bench --scale steps --db PLAIN_V1_LEADER --db2 ZSTD_LEADER --restic-repo DIR "
                           "[--rows N]\n");
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
  if (!scale.empty()) {
    return bench::run_in_dir("duckdb_bench", dir, [&](const std::string& d) {
      if (scale == "checkpoint") scale_checkpoint(d, db_path, db2_path, latency_runs, every);
      else if (scale == "rss") scale_rss(d, db_path, replicated != 0, checkpoints, every);
      else if (scale == "steps") scale_steps(d, db_path, db2_path, rows, restic_repo);
      else throw std::runtime_error("unknown --scale mode " + scale);
    });
  }
  return bench::run_in_dir("duckblock-bench", dir, [&](const std::string& d) {
    if (only.empty() || only == "bytes") bytes_per_checkpoint(d, rows);
    if (only.empty() || only == "latency") checkpoint_latency(d, rows, latency_runs);
    if (only.empty() || only == "lag") follower_lag(d, lag_samples);
    if (only.empty() || only == "compression") compressed_vs_plain(d, rows);
  });
}
