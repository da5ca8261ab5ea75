// log_bench: what shipping every commit costs (scripts/bench_log.sh;
// docs/PERFORMANCE.md, "Every commit: the log").
//
//  1. Single-row commit latency (autocommit INSERT, no CHECKPOINT) without
//     capture, with capture in interval mode, and in commit mode on the
//     local-directory store and, given --s3-endpoint, on S3 (s3rver).
//  2. A steady stream of --rate commits/s for --stream-seconds (interval
//     mode, local store): log bytes shipped (log_bytes_shipped) against the
//     bytes DuckDB wrote to its WAL, and PUTs per minute (the objects the
//     store holds afterwards: each log segment and chain segment is one PUT).
//  3. Follower visibility lag: a commit on the leader (interval mode, 1 s),
//     until a Follower with log_path polling every 1 s holds it (its
//     log position covers the leader's WAL length after the commit).
//
//   log_bench [--commits N] [--rate N] [--stream-seconds N] [--lag-samples N]
//             [--s3-endpoint URL --bucket B] [--dir DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "duckblock/duckdb_capture.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"

namespace {

using namespace duckblock;
using duckdb_integration::open_replicated;
using bench::Clock;
using bench::ms_since;
using bench::percentile;
using bench::run;

std::shared_ptr<Replicator> make_replicator(std::shared_ptr<ObjectStore> store, const std::string& spool,
                                            LogSyncMode mode) {
  ReplicatorOptions o;
  o.spool_dir = spool;
  o.log_sync_mode = mode;
  o.log_interval = std::chrono::milliseconds(1000);
  return std::make_shared<Replicator>(std::move(store), o);
}

uint64_t file_size_or_0(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// Waits until the replicator has no committed log bytes left to upload.
void drain(Replicator& rep, const std::string& db) {
  rep.sync();
  for (int i = 0; i < 3000 && rep.status(db).log_pending_bytes > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A captured database on its own local-directory store in interval mode
// (1 s) with an empty table t, checkpointed and in the store.
struct Leader {
  Leader(const std::string& dir, const std::string& name)
      : store(make_local_store(dir + "/store-" + name)),
        rep(make_replicator(store, dir + "/spool-" + name, LogSyncMode::kInterval)),
        path(dir + "/" + name + ".duckdb"),
        name(name),
        db(open_replicated(path, rep, name)),
        con(db->db()) {
    run(con, "CREATE TABLE t (id INTEGER, v VARCHAR)");
    run(con, "CHECKPOINT");
    drain(*rep, name);
  }
  std::shared_ptr<ObjectStore> store;
  std::shared_ptr<Replicator> rep;
  std::string path, name;
  std::unique_ptr<duckdb_integration::ReplicatedDatabase> db;
  duckdb::Connection con;
};

std::string insert_sql(int i) {
  return "INSERT INTO t VALUES (" + std::to_string(i) + ", 'row " + std::to_string(i) + "')";
}

struct Latency {
  std::string name;
  std::vector<double> ms;
};

void print_latency(const std::vector<Latency>& rows) {
  double base = percentile(rows.front().ms, 50), base99 = percentile(rows.front().ms, 99);
  std::printf("| capture | p50 | p99 | p50 vs off | p99 vs off | added at p50 |\n|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    double p50 = percentile(r.ms, 50), p99 = percentile(r.ms, 99);
    std::printf("| %s | %.3f ms | %.3f ms | %.2fx | %.2fx | %+.3f ms |\n", r.name.c_str(), p50, p99, p50 / base,
                p99 / base99, p50 - base);
  }
  std::printf("\n");
}

void latency(const std::string& dir, int commits, std::shared_ptr<ObjectStore> s3) {
  std::printf("== single-row commit latency (%d autocommit INSERTs each, no CHECKPOINT, configurations interleaved in a random order)\n",
              commits);
  struct Config {
    std::string name;
    LogSyncMode mode;
    std::shared_ptr<ObjectStore> store;  // null: capture off
  };
  std::vector<Config> configs = {
      {"off", LogSyncMode::kInterval, nullptr},
      {"interval (1 s), local", LogSyncMode::kInterval, make_local_store(dir + "/store-int")},
      {"commit, local", LogSyncMode::kCommit, make_local_store(dir + "/store-com")},
  };
  if (s3) configs.push_back({"interval (1 s), s3rver", LogSyncMode::kInterval, s3});
  if (s3) configs.push_back({"commit, s3rver", LogSyncMode::kCommit, s3});
  // Every configuration open at once and each commit of round i made in all
  // of them in turn, so they share the machine's noise (and the background
  // uploads of the others).
  struct Open {
    std::shared_ptr<Replicator> rep;
    std::unique_ptr<duckdb_integration::ReplicatedDatabase> captured;
    std::unique_ptr<duckdb::DuckDB> plain;
    std::unique_ptr<duckdb::Connection> con;
    std::string tag;
  };
  std::vector<Open> open(configs.size());
  for (size_t n = 0; n < configs.size(); ++n) {
    auto& o = open[n];
    o.tag = "lat" + std::to_string(n);
    std::string path = dir + "/" + o.tag + ".duckdb";
    if (configs[n].store) {
      o.rep = make_replicator(configs[n].store, dir + "/spool-" + o.tag, configs[n].mode);
      o.captured = open_replicated(path, o.rep, o.tag);
      o.con = std::make_unique<duckdb::Connection>(o.captured->db());
    } else {
      o.plain = std::make_unique<duckdb::DuckDB>(path);
      o.con = std::make_unique<duckdb::Connection>(*o.plain);
    }
    run(*o.con, "CREATE TABLE t (id INTEGER, v VARCHAR)");
    run(*o.con, "CHECKPOINT");
  }
  std::vector<Latency> rows;
  for (const auto& c : configs) rows.push_back({c.name, {}});
  // The order changes every round: a configuration that runs right after
  // another's upload (a local store's fsyncs, s3rver's CPU) is not always
  // the same one.
  std::mt19937 rng(7);
  std::vector<size_t> order(open.size());
  for (size_t n = 0; n < order.size(); ++n) order[n] = n;
  for (int i = 0; i < commits; ++i) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t n : order) {
      auto t0 = Clock::now();
      run(*open[n].con, insert_sql(i));
      rows[n].ms.push_back(ms_since(t0));
    }
  }
  for (auto& o : open) {
    if (o.rep) drain(*o.rep, o.tag);
  }
  print_latency(rows);
}

void stream(const std::string& dir, int rate, int seconds) {
  std::printf("== a steady stream of %d commits/s for %d s (interval mode 1 s, local-directory store)\n", rate,
              seconds);
  Leader leader(dir, "stream");
  auto& store = leader.store;
  auto& rep = leader.rep;
  auto& con = leader.con;
  const std::string& path = leader.path;
  size_t chain_before = [&] {
    auto c = list_chain(*store, "", "stream");
    return c.snapshots.size() + c.incrementals.size();
  }();
  size_t log_before = list_log(*store, "", "stream").size();
  uint64_t shipped_before = rep->status("stream").log_bytes_shipped;
  uint64_t wal_before = file_size_or_0(path + ".wal");
  auto start = Clock::now();
  int total = rate * seconds;
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t(1000000) * i / rate));
    run(con, insert_sql(i));
  }
  double elapsed_s = ms_since(start) / 1000.0;
  uint64_t wal_after = file_size_or_0(path + ".wal");
  drain(*rep, "stream");
  auto st = rep->status("stream");
  auto c = list_chain(*store, "", "stream");
  size_t chain_puts = c.snapshots.size() + c.incrementals.size() - chain_before;
  auto log = list_log(*store, "", "stream");
  size_t log_puts = log.size() - log_before;
  uint64_t wrote = wal_after - wal_before, shipped = st.log_bytes_shipped - shipped_before;
  std::printf("| commits | seconds | WAL bytes DuckDB wrote | log bytes shipped | shipped / wrote | log PUTs | chain PUTs | PUTs per minute |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::printf("| %d | %.1f | %llu | %llu | %.3fx | %zu | %zu | %.0f |\n\n", total, elapsed_s,
              static_cast<unsigned long long>(wrote), static_cast<unsigned long long>(shipped),
              wrote ? double(shipped) / double(wrote) : 0.0, log_puts, chain_puts,
              double(log_puts + chain_puts) * 60.0 / elapsed_s);
  if (wal_before != 0) std::printf("(the WAL held %llu bytes before the stream)\n\n", (unsigned long long)wal_before);
}

void follower_lag(const std::string& dir, int samples) {
  std::printf("== follower visibility lag (interval mode 1 s, follower polls every 1 s, local store, %d samples)\n",
              samples);
  Leader leader(dir, "lag");
  auto& store = leader.store;
  auto& con = leader.con;
  const std::string& path = leader.path;
  FollowerOptions fo;
  fo.poll_interval = std::chrono::milliseconds(1000);
  fo.log_path = dir + "/follower.duckdb.wal";
  Follower follower(store, "lag", dir + "/follower.duckdb", fo);
  follower.poll_once();
  follower.start();
  std::mt19937 rng(42);
  std::vector<double> lags;
  for (int i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 999)(rng)));
    run(con, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'lag')");
    auto t0 = Clock::now();
    // The commit is in the leader's WAL up to here once INSERT returns.
    uint64_t want = file_size_or_0(path + ".wal");
    for (;;) {
      auto p = follower.log_position();
      if (p && p->length >= want) break;
      if (ms_since(t0) > 30000) {
        std::fprintf(stderr, "follower did not reach WAL length %llu: %s\n", (unsigned long long)want,
                     follower.last_error().value_or("no error").c_str());
        std::exit(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    lags.push_back(ms_since(t0));
  }
  follower.stop();
  std::printf("| p50 | p90 | p99 | max |\n|---|---|---|---|\n");
  std::printf("| %.0f ms | %.0f ms | %.0f ms | %.0f ms |\n\n", percentile(lags, 50), percentile(lags, 90),
              percentile(lags, 99), percentile(lags, 100));
}

}  // namespace

int main(int argc, char** argv) {
  int commits = 500, rate = 100, seconds = 20, lag_samples = 20;
  std::string dir, endpoint, bucket;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 == argc) a = "--help";  // every option takes a value
    if (a == "--commits") commits = std::atoi(argv[i + 1]);
    else if (a == "--rate") rate = std::atoi(argv[i + 1]);
    else if (a == "--stream-seconds") seconds = std::atoi(argv[i + 1]);
    else if (a == "--lag-samples") lag_samples = std::atoi(argv[i + 1]);
    else if (a == "--s3-endpoint") endpoint = argv[i + 1];
    else if (a == "--bucket") bucket = argv[i + 1];
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "usage: log_bench [--commits N] [--rate N] [--stream-seconds N] [--lag-samples N]\n"
                   "                 [--s3-endpoint URL --bucket B] [--dir DIR]\n");
      return 2;
    }
  }
  return bench::run_in_dir("duckblock-logbench", dir, [&](const std::string& d) {
    std::shared_ptr<ObjectStore> s3;
    if (!endpoint.empty()) {
      StoreOptions so;
      so.endpoint = endpoint;
      so.path_style = true;
      s3 = open_store("s3://" + bucket + "/logbench/", so);
    }
    latency(d, commits, s3);
    stream(d, rate, seconds);
    follower_lag(d, lag_samples);
  });
}
