// A process the crash tests start and kill -9.
//
//   worker leader DIR STORE_DIR [--die-in-push K --die-after-us D] [--background-spool 0|1]
//     Opens DIR/leader.duckdb with capture, replicating to the local store
//     STORE_DIR (prefix "crash/", spool DIR/spool), and runs the workload's
//     remaining steps (DuckDB itself remembers which are done: each step
//     commits a row into a progress table), with a CHECKPOINT after each.
//     Every push appends "seq sha256" to DIR/pushes.log once the segment is
//     durable in the spool: when the push returns, or with
//     --background-spool 1 (the Replicator's background spooling) once
//     status().spooled_seq reaches it. With --die-in-push, the K-th push of this run
//     starts a timer that kills the process (SIGKILL) D microseconds later,
//     and holds DuckDB inside that push until then: the kill lands inside the
//     push, or while its segment is spooled and uploaded, as D falls.
//     Finally waits for the uploads and prints "done SEQ SHA256".
//
//   worker follow STORE_DIR FILE
//     Brings FILE up to the store's head (prefix "crash/", db "db") and
//     prints "done SEQ".
//
//   worker log-leader DIR STORE_DIR MODE INTERVAL_MS CHECKPOINT_EVERY COMMITS [--keep-log] [--threads T]
//     Opens DIR/leader.duckdb with capture and log shipping (MODE commit or
//     interval, log_interval INTERVAL_MS); each of T threads (default 1)
//     commits COMMITS single-row INSERTs into t(id), thread j the ids
//     congruent to j modulo T, continuing from its largest in the table (the
//     rows of a killed run that DuckDB replays from its .wal count). After
//     each COMMIT returns it appends "id ms" (ms: the system clock) to
//     DIR/acked.log; thread 0 follows every CHECKPOINT_EVERY-th of its
//     commits with a CHECKPOINT (0: never). Then waits for the store (sync)
//     and prints "done"; with --keep-log it exits there without closing
//     DuckDB, so the commits since the last checkpoint stay only in the .wal.
//
//   worker log-follow STORE_DIR FILE MS [POINT]
//     A follower keeping FILE and FILE.wal current (poll_once every few
//     milliseconds) for MS milliseconds; prints "done SEQ LOG_INDEX". With
//     POINT, it kills itself (SIGKILL) the first time the log replica
//     reaches that point (LogReplica::crash_point).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/duckdb_capture.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckdb_test_util.h"

namespace {

using namespace duckblock;
using duckdb_integration::CaptureOptions;
using duckdb_integration::PushEvent;

constexpr const char* kPrefix = "crash/";
using duckdb_test::sha256_reader;

constexpr double kScale = 0.1;  // small: the crash tests restart this many times

void append_line(const std::string& path, const std::string& line) {
  // Appended with one write(2): a kill leaves whole lines (the page cache
  // survives the process).
  FILE* f = std::fopen(path.c_str(), "a");
  if (!f) std::abort();
  std::fputs((line + "\n").c_str(), f);
  std::fclose(f);
}

int leader(int argc, char** argv) {
  std::string dir = argv[2], store_dir = argv[3];
  long die_in_push = 0, die_after_us = 0;
  bool background = false;
  for (int i = 4; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--die-in-push") die_in_push = std::atol(argv[i + 1]);
    if (a == "--die-after-us") die_after_us = std::atol(argv[i + 1]);
    if (a == "--background-spool") background = std::atol(argv[i + 1]) != 0;
  }
  ReplicatorOptions ro;
  ro.prefix = kPrefix;
  ro.spool_dir = dir + "/spool";
  ro.snapshots.every_segments = 4;
  ro.snapshots.every_bytes = 0;
  ro.retry_initial = std::chrono::milliseconds(10);
  if (!background) ro.background_spool_bytes = 0;
  auto rep = std::make_shared<Replicator>(std::shared_ptr<ObjectStore>(make_local_store(store_dir)), ro);

  long pushes = 0;
  CaptureOptions co;
  co.before_push = [&] {
    if (++pushes != die_in_push) return;
    std::thread([die_after_us] {
      std::this_thread::sleep_for(std::chrono::microseconds(die_after_us));
      ::kill(::getpid(), SIGKILL);
    }).detach();
  };
  // Pushes not yet durable in the spool (background spooling), by seq.
  std::map<uint64_t, std::string> not_durable;
  auto log_durable = [&] {
    uint64_t spooled = rep->status("db").spooled_seq;
    while (!not_durable.empty() && not_durable.begin()->first <= spooled) {
      append_line(dir + "/pushes.log", std::to_string(not_durable.begin()->first) + " " + not_durable.begin()->second);
      not_durable.erase(not_durable.begin());
    }
  };
  co.on_push = [&](const PushEvent& ev) {
    if (ev.result.seq) not_durable[ev.result.seq] = sha256_reader(*ev.reader);
    if (!background) log_durable();
    // The K-th push holds DuckDB here until the kill lands, so the kill
    // falls inside the push or while its segment is spooled and uploaded,
    // never inside DuckDB's own block writes: DuckDB 1.4 rewrites a
    // metadata block in place (MetadataManager::Flush), and a SIGKILL in the
    // middle of that pwrite tears a block the durable header still uses, a
    // file DuckDB itself then refuses to open ("Corrupt database file").
    if (pushes == die_in_push) std::this_thread::sleep_for(std::chrono::microseconds(die_after_us + 200000));
  };
  co.fail_checkpoint = true;  // a push that fails must fail the test, not hide
  const std::string path = dir + "/leader.duckdb";
  auto db = duckdb_integration::open_replicated(path, rep, "db", nullptr, co);
  {
    duckdb::Connection con(db->db());
    duckdb_test::run(con, "CREATE TABLE IF NOT EXISTS progress (step INTEGER)");
    auto r = con.Query("SELECT coalesce(max(step), -1) FROM progress");
    if (r->HasError()) throw std::runtime_error(r->GetError());
    long done = r->GetValue(0, 0).GetValue<int64_t>();
    auto steps = duckdb_test::workload(kScale);
    for (long k = done + 1; k < static_cast<long>(steps.size()); ++k) {
      duckdb_test::run(con, "BEGIN");
      for (const auto& sql : steps[k].sql) duckdb_test::run(con, sql);
      duckdb_test::run(con, "INSERT INTO progress VALUES (" + std::to_string(k) + ")");
      duckdb_test::run(con, "COMMIT");
      duckdb_test::run(con, "CHECKPOINT");
      log_durable();
    }
  }
  // Closed first: DuckDB may checkpoint once more as it shuts down, and that
  // push must be in the store before the final state is reported.
  db->close();
  rep->sync();
  log_durable();
  auto st = rep->status("db");
  std::printf("done %llu %s\n", static_cast<unsigned long long>(st.spooled_seq), duckdb_test::sha256_file(path).c_str());
  return 0;
}

int follow(char** argv) {
  std::string store_dir = argv[2], file = argv[3];
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
  FollowerOptions fo;
  fo.prefix = kPrefix;
  Follower f(store, "db", file, fo);
  f.poll_once();
  std::printf("done %llu\n", static_cast<unsigned long long>(f.position().seq));
  return 0;
}

int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int log_leader(int argc, char** argv) {
  std::string dir = argv[2], store_dir = argv[3], mode = argv[4];
  long interval_ms = std::atol(argv[5]), checkpoint_every = std::atol(argv[6]), commits = std::atol(argv[7]);
  bool keep_log = false;
  long threads = 1;
  for (int i = 8; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--keep-log") keep_log = true;
    if (a == "--threads" && i + 1 < argc) threads = std::atol(argv[++i]);
  }
  ReplicatorOptions ro;
  ro.prefix = kPrefix;
  ro.spool_dir = dir + "/spool";
  ro.retry_initial = std::chrono::milliseconds(10);
  ro.log_sync_mode = mode == "commit" ? LogSyncMode::kCommit : LogSyncMode::kInterval;
  ro.log_interval = std::chrono::milliseconds(interval_ms);
  auto rep = std::make_shared<Replicator>(std::shared_ptr<ObjectStore>(make_local_store(store_dir)), ro);
  auto db = duckdb_integration::open_replicated(dir + "/leader.duckdb", rep, "db");
  {
    duckdb::Connection con(db->db());
    duckdb_test::run(con, "CREATE TABLE IF NOT EXISTS t (id BIGINT)");
  }
  // Thread j commits ids j, j + threads, j + 2 * threads, ... one after
  // the other (so its own commits are ordered), concurrently with the
  // others (commits of several threads share an upload); thread 0 also
  // checkpoints.
  std::vector<std::thread> workers;
  std::atomic<bool> failed{false};
  for (long j = 0; j < threads; ++j) {
    workers.emplace_back([&, j] {
      try {
        duckdb::Connection con(db->db());
        auto r = con.Query("SELECT coalesce(max(id), " + std::to_string(j - threads) + ") FROM t WHERE id % " +
                           std::to_string(threads) + " = " + std::to_string(j));
        if (r->HasError()) throw std::runtime_error(r->GetError());
        int64_t id = r->GetValue(0, 0).GetValue<int64_t>() + threads;
        for (long n = 0; n < commits; ++n, id += threads) {
          duckdb_test::run(con, "INSERT INTO t VALUES (" + std::to_string(id) + ")");
          append_line(dir + "/acked.log", std::to_string(id) + " " + std::to_string(system_ms()));
          if (j == 0 && checkpoint_every > 0 && n % checkpoint_every == checkpoint_every - 1) {
            duckdb_test::run(con, "CHECKPOINT");
          }
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker thread %ld: %s\n", j, e.what());
        failed = true;
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed) return 1;
  rep->sync();
  std::printf("done\n");
  std::fflush(stdout);
  if (keep_log) ::_exit(0);  // no close: no checkpoint folds the log into the file
  db->close();
  rep->sync();
  return 0;
}

std::string g_crash_point;

int log_follow(int argc, char** argv) {
  std::string store_dir = argv[2], file = argv[3];
  if (argc > 5) {
    g_crash_point = argv[5];
    LogReplica::crash_point = [](const char* where) {
      if (g_crash_point == where) ::kill(::getpid(), SIGKILL);
    };
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::atol(argv[4]));
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
  FollowerOptions fo;
  fo.prefix = kPrefix;
  fo.log_path = file + ".wal";
  Follower f(store, "db", file, fo);
  do {
    f.poll_once();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } while (std::chrono::steady_clock::now() < until);
  auto log = f.log_position();
  std::printf("done %llu %llu\n", static_cast<unsigned long long>(f.position().seq),
              static_cast<unsigned long long>(log ? log->index : 0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "leader" && argc >= 4) return leader(argc, argv);
    if (mode == "follow" && argc >= 4) return follow(argv);
    if (mode == "log-leader" && argc >= 8) return log_leader(argc, argv);
    if (mode == "log-follow" && argc >= 5) return log_follow(argc, argv);
    std::fprintf(stderr, "usage: worker leader DIR STORE_DIR [--die-in-push K --die-after-us D]\n"
                         "       worker follow STORE_DIR FILE\n"
                         "       worker log-leader DIR STORE_DIR MODE INTERVAL_MS CHECKPOINT_EVERY COMMITS [--keep-log]\n"
                         "       worker log-follow STORE_DIR FILE MS [POINT]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    return 1;
  }
}
