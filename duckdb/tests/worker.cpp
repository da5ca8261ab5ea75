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
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "duckblock/duckdb_capture.h"
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
  FollowerBehavior f(store, "db", file, fo);
  f.poll_once();
  std::printf("done %llu\n", static_cast<unsigned long long>(f.position().seq));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "leader" && argc >= 4) return leader(argc, argv);
    if (mode == "follow" && argc >= 4) return follow(argv);
    std::fprintf(stderr, "usage: worker leader DIR STORE_DIR [--die-in-push K --die-after-us D]\n"
                         "       worker follow STORE_DIR FILE\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    return 1;
  }
}
