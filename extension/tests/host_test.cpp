// The extension as a C++ host sees it: a program linked only against the
// release libduckdb.so (1.4.4), not against duckblock, that allows unsigned
// extensions, LOADs the built duckblock.duckdb_extension file and drives
// replication with SQL alone: a leader database attached through
// duckblock://, a follower kept current with duckblock_follow/refresh, and
// restores by sequence number and by time.
//
// Everything waits on explicit events (CHECKPOINT, duckblock_sync,
// duckblock_refresh); the one background-poll test waits for a condition
// with a generous bound, never for a fixed time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "duckdb.hpp"
#include "duckdb/main/secret/secret.hpp"
#include "duckdb/main/secret/secret_manager.hpp"
#include "host_util.h"
#include "http_get.h"


namespace fs = std::filesystem;

namespace {

using namespace duckblock::ext_test;

class ExtensionHost : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/duckblock-ext-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    fs::create_directories(dir + "/leader");
    fs::create_directories(dir + "/replica");
    store = "file://" + dir + "/store";
    leader_file = dir + "/leader/sales.duckdb";
    replica_file = dir + "/replica/sales.duckdb";
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir);
  }

  // The leader attached for replication, as a user would.
  std::unique_ptr<Host> open_leader() {
    auto h = std::make_unique<Host>();
    q(*h->con, "SET duckblock_store = '" + store + "'");
    q(*h->con, "ATTACH 'duckblock://" + leader_file + "' AS lead");
    return h;
  }

  // A checkpoint of the leader, in the store when this returns.
  uint64_t ship(Host& leader) {
    q(*leader.con, "CHECKPOINT lead");
    auto r = q(*leader.con, "SELECT shipped_seq, spooled_seq, pending_segments, last_error FROM duckblock_sync('sales')");
    EXPECT_EQ(r->RowCount(), 1u);
    EXPECT_EQ(r->GetValue(0, 0), r->GetValue(1, 0));
    EXPECT_EQ(r->GetValue(2, 0).GetValue<uint64_t>(), 0u);
    EXPECT_TRUE(r->GetValue(3, 0).IsNull()) << r->GetValue(3, 0).ToString();
    return r->GetValue(0, 0).GetValue<uint64_t>();
  }

  std::string dir, store, leader_file, replica_file;
};

TEST_F(ExtensionHost, LoadsAndRegistersItsFunctions) {
  Host h;
  auto r = q(*h.con, "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'duckblock'");
  ASSERT_EQ(r->RowCount(), 1u);
  EXPECT_TRUE(r->GetValue(0, 0).GetValue<bool>());
  // Nothing replicated yet: an empty status, not an error.
  EXPECT_EQ(q(*h.con, "SELECT * FROM duckblock_status()")->RowCount(), 0u);
  EXPECT_EQ(q(*h.con, "SELECT current_setting('duckblock_snapshot_every')")->GetValue(0, 0).ToString(), "100");
}

TEST_F(ExtensionHost, LeaderToFollowerWithRestoreBySeqAndTime) {
  auto leader = open_leader();
  auto& lc = *leader->con;
  // The new database shipped as the chain's start when DuckDB created it.
  auto st = q(lc, "SELECT role, name, path, store, attached FROM duckblock_status()");
  ASSERT_EQ(st->RowCount(), 1u);
  EXPECT_EQ(st->GetValue(0, 0).ToString(), "leader");
  EXPECT_EQ(st->GetValue(1, 0).ToString(), "sales");
  EXPECT_EQ(st->GetValue(2, 0).ToString(), fs::weakly_canonical(leader_file).string());
  EXPECT_EQ(st->GetValue(3, 0).ToString(), store);
  EXPECT_TRUE(st->GetValue(4, 0).GetValue<bool>());
  ship(*leader);
  // duckblock_sync also knows the database by the name DuckDB attached it as.
  EXPECT_EQ(q(lc, "SELECT name FROM duckblock_sync('lead')")->GetValue(0, 0).ToString(), "sales");

  Host follower;
  auto& fc = *follower.con;
  q(fc, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', alias := 'rep', poll_interval_ms := 0)");

  // A workload with the shapes that matter: bulk load, in-place updates,
  // deletes, a table dropped (its blocks freed, the file later truncated).
  const std::vector<std::string> steps = {
      "CREATE TABLE lead.t AS SELECT range AS id, random() AS v, 'row ' || range AS s FROM range(300000)",
      "UPDATE lead.t SET v = v + 1 WHERE id % 10 = 0",
      "DELETE FROM lead.t WHERE id % 3 = 0",
      "CREATE TABLE lead.big AS SELECT range AS k, repeat('x', 200) AS pad FROM range(100000)",
      "INSERT INTO lead.t SELECT range + 1000000, random(), 'late' FROM range(50000)",
      "DROP TABLE lead.big",
      "UPDATE lead.t SET s = 'one' WHERE id = 7",
  };
  std::vector<std::pair<uint64_t, std::string>> history;  // (seq, fingerprint) after each step
  for (auto& sql : steps) {
    q(lc, sql);
    uint64_t seq = ship(*leader);
    auto want = fingerprint(lc, "lead");
    auto r = q(fc, "SELECT seq_after FROM duckblock_refresh('rep')");
    EXPECT_EQ(r->GetValue(0, 0).GetValue<uint64_t>(), seq) << sql;
    EXPECT_EQ(fingerprint(fc, "rep"), want) << "after: " << sql;
    history.emplace_back(seq, want);
  }
  // The follower's status matches what it applied.
  auto fs_ = q(fc, "SELECT role, name, applied_seq, head_seq, pending_segments, attached, last_error "
                   "FROM duckblock_status()");
  ASSERT_EQ(fs_->RowCount(), 1u);
  EXPECT_EQ(fs_->GetValue(0, 0).ToString(), "follower");
  EXPECT_EQ(fs_->GetValue(1, 0).ToString(), "rep");
  EXPECT_EQ(fs_->GetValue(2, 0).GetValue<uint64_t>(), history.back().first);
  EXPECT_EQ(fs_->GetValue(3, 0).GetValue<uint64_t>(), history.back().first);
  EXPECT_EQ(fs_->GetValue(4, 0).GetValue<uint64_t>(), 0u);
  EXPECT_TRUE(fs_->GetValue(5, 0).GetValue<bool>());
  EXPECT_TRUE(fs_->GetValue(6, 0).IsNull());
  // The replica is read-only: writes go to the leader.
  EXPECT_NE(q_error(fc, "INSERT INTO rep.t VALUES (1, 1, 'x')"), "");

  // Restore to an earlier point by sequence number.
  const auto& [seq2, fp2] = history[1];
  std::string out = dir + "/restored.duckdb";
  auto rr = q(fc, "SELECT seq, path, created FROM duckblock_restore('sales', '" + store + "', '" + out +
                      "', seq := " + std::to_string(seq2) + ")");
  EXPECT_EQ(rr->GetValue(0, 0).GetValue<uint64_t>(), seq2);
  q(fc, "ATTACH '" + out + "' AS old (READ_ONLY)");
  EXPECT_EQ(fingerprint(fc, "old"), fp2);
  q(fc, "DETACH old");

  // The same point by time, as the docs write it: as_of := TIMESTAMP '...'
  // (UTC), the time that point was created (the next one came later).
  std::string created = rr->GetValue(2, 0).ToString();
  std::string out_t = dir + "/restored-as-of.duckdb";
  rr = q(fc, "SELECT seq FROM duckblock_restore('sales', '" + store + "', '" + out_t + "', as_of := TIMESTAMP '" +
                 created + "')");
  EXPECT_EQ(rr->GetValue(0, 0).GetValue<uint64_t>(), seq2) << created;
  q(fc, "ATTACH '" + out_t + "' AS old_t (READ_ONLY)");
  EXPECT_EQ(fingerprint(fc, "old_t"), fp2);
  q(fc, "DETACH old_t");

  // Restore by time: now is after every segment, so the latest state.
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  rr = q(fc, "SELECT seq FROM duckblock_restore('sales', '" + store + "', '" + out + "', time_ms := " +
                 std::to_string(now_ms) + ", force := true)");
  EXPECT_EQ(rr->GetValue(0, 0).GetValue<uint64_t>(), history.back().first);
  q(fc, "ATTACH '" + out + "' AS latest (READ_ONLY)");
  EXPECT_EQ(fingerprint(fc, "latest"), history.back().second);
  q(fc, "DETACH latest");

  // Once the leader has closed its file, the follower's file is the same
  // bytes. (Reading the leader file while DuckDB holds it would open and
  // close a second descriptor, which drops DuckDB's POSIX lock.)
  q(lc, "DETACH lead");
  auto last = q(lc, "SELECT shipped_seq FROM duckblock_sync('sales')")->GetValue(0, 0).GetValue<uint64_t>();
  auto r = q(fc, "SELECT seq_after FROM duckblock_refresh('rep')");
  EXPECT_EQ(r->GetValue(0, 0).GetValue<uint64_t>(), last);
  // The alias reads one of the follower's two files; that one is the
  // leader's file byte for byte, with no log beside it.
  std::string active = q(fc, "SELECT path FROM duckblock_status() WHERE role = 'follower'")->GetValue(0, 0).ToString();
  q(fc, "CALL duckblock_unfollow('rep')");
  EXPECT_TRUE(read_all(active) == read_all(leader_file)) << active;
  EXPECT_FALSE(fs::exists(active + ".wal"));
}

TEST_F(ExtensionHost, ReattachedLeaderContinuesTheChain) {
  uint64_t first;
  {
    auto leader = open_leader();
    q(*leader->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(1000)");
    first = ship(*leader);
  }
  // A new process (here: a new instance) attaches the same file again: the
  // chain continues from the spool, with no gap and no new start.
  auto leader = open_leader();
  q(*leader->con, "INSERT INTO lead.t SELECT range FROM range(5)");
  uint64_t second = ship(*leader);
  EXPECT_GT(second, first);

  Host follower;
  q(*follower.con, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', poll_interval_ms := 0)");
  EXPECT_EQ(fingerprint(*follower.con, "sales"), fingerprint(*leader->con, "lead"));
  EXPECT_EQ(q(*follower.con, "SELECT count(*) FROM sales.t")->GetValue(0, 0).GetValue<int64_t>(), 1005);

  // DETACH and ATTACH again in the same instance: the same replicator goes
  // on (one uploader per spool), and the chain still has no gap.
  q(*leader->con, "DETACH lead");
  // A clean DETACH leaves the proof in the spool (clean.json), and the
  // ATTACH consumes it instead of hashing the whole file.
  auto records = [&] {
    int n = 0;
    for (auto& e : fs::recursive_directory_iterator(leader_file + ".duckblock-spool")) {
      n += e.path().filename() == "clean.json";
    }
    return n;
  };
  EXPECT_EQ(records(), 1);
  q(*leader->con, "ATTACH 'duckblock://" + leader_file + "' AS lead");
  EXPECT_EQ(records(), 0);
  q(*leader->con, "INSERT INTO lead.t SELECT range FROM range(7)");
  uint64_t third = ship(*leader);
  EXPECT_GT(third, second);
  EXPECT_EQ(q(*leader->con, "SELECT count(*) FROM duckblock_status()")->GetValue(0, 0).GetValue<int64_t>(), 1);
  auto r = q(*follower.con, "SELECT seq_after FROM duckblock_refresh('sales')");
  EXPECT_EQ(r->GetValue(0, 0).GetValue<uint64_t>(), third);
  EXPECT_EQ(q(*follower.con, "SELECT count(*) FROM sales.t")->GetValue(0, 0).GetValue<int64_t>(), 1012);
}

// A due snapshot is compacted in the background, and the status says so.
TEST_F(ExtensionHost, StatusShowsTheSnapshotsCompactedInTheBackground) {
  Host h;
  q(*h.con, "SET duckblock_store = '" + store + "'");
  q(*h.con, "SET duckblock_snapshot_every = 2");
  q(*h.con, "ATTACH 'duckblock://" + leader_file + "' AS lead");
  q(*h.con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(1000)");
  uint64_t first = ship(h);
  q(*h.con, "INSERT INTO lead.t SELECT range FROM range(5)");
  uint64_t second = ship(h);
  ASSERT_EQ(second, first + 1);
  // duckblock_sync waits for a due snapshot too.
  auto r = q(*h.con, "SELECT compacting_seq, last_compacted_seq, compaction_error, last_snapshot_seq "
                     "FROM duckblock_status() WHERE role = 'leader'");
  EXPECT_EQ(r->GetValue(0, 0).GetValue<uint64_t>(), 0u);
  uint64_t compacted = r->GetValue(1, 0).GetValue<uint64_t>();
  EXPECT_TRUE(compacted == first || compacted == second) << compacted;
  EXPECT_TRUE(r->GetValue(2, 0).IsNull()) << r->GetValue(2, 0).ToString();
  EXPECT_EQ(r->GetValue(3, 0).GetValue<uint64_t>(), compacted);
}

// Only database files become leaders: a COPY written through the prefix is
// an ordinary file, not a replicated database.
TEST_F(ExtensionHost, CopyToAPrefixedPathIsNotReplicated) {
  auto leader = open_leader();
  q(*leader->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(10)");
  q(*leader->con, "COPY lead.t TO 'duckblock://" + dir + "/leader/export.csv'");
  EXPECT_TRUE(fs::exists(dir + "/leader/export.csv"));
  auto r = q(*leader->con, "SELECT name FROM duckblock_status()");
  ASSERT_EQ(r->RowCount(), 1u);
  EXPECT_EQ(r->GetValue(0, 0).ToString(), "sales");
  EXPECT_EQ(q(*leader->con, "SELECT count(*) FROM read_csv('" + dir + "/leader/export.csv')")
                ->GetValue(0, 0)
                .GetValue<int64_t>(),
            10);
}

TEST_F(ExtensionHost, FollowerPollsInTheBackground) {
  auto leader = open_leader();
  q(*leader->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(10)");
  ship(*leader);
  Host follower;
  auto& fc = *follower.con;
  q(fc, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', alias := 'rep', "
        "poll_interval_ms := 20)");
  q(*leader->con, "INSERT INTO lead.t SELECT range FROM range(90)");
  uint64_t seq = ship(*leader);
  // No CALL duckblock_refresh: the poll thread must get there by itself.
  // Wait for the condition (bounded only so that a hang fails the test).
  auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (q(fc, "SELECT applied_seq FROM duckblock_status()")->GetValue(0, 0).GetValue<uint64_t>() < seq) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the follower never reached seq " << seq;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 100);
}

// A refresh writes only the replica file no query reads: with a
// transaction open on the alias, the first refresh goes to the other file
// and swaps the alias; the next one would have to write the file that
// transaction still reads, so it waits, gives up, and leaves the alias
// where it is. No query fails either way.
TEST_F(ExtensionHost, RefreshNeverChangesAFileATransactionStillReads) {
  auto leader = open_leader();
  q(*leader->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(10)");
  ship(*leader);
  Host follower;
  auto& fc = *follower.con;
  // Short, so that the refresh below gives up quickly; the reader below is
  // idle for as long as the test wants, so giving up is certain.
  q(fc, "SET duckblock_refresh_wait_ms = 200");
  q(fc, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', alias := 'rep', "
        "poll_interval_ms := 0)");
  duckdb::Connection reader(*follower.db);
  q(reader, "BEGIN TRANSACTION");
  EXPECT_EQ(q(reader, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 10);
  std::string read_bytes = read_all(replica_file);

  q(*leader->con, "INSERT INTO lead.t SELECT range FROM range(90)");
  uint64_t seq = ship(*leader);
  auto r = q(fc, "SELECT seq_after FROM duckblock_refresh('rep')");
  EXPECT_EQ(r->GetValue(0, 0).GetValue<uint64_t>(), seq);
  EXPECT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 100);
  EXPECT_EQ(read_all(replica_file), read_bytes) << "the file an open transaction reads was changed";

  // The next state must go to the file the transaction still reads: refused.
  q(*leader->con, "INSERT INTO lead.t SELECT range FROM range(50)");
  ship(*leader);
  auto e = q_error(fc, "CALL duckblock_refresh('rep')");
  EXPECT_NE(e.find("reading the previous state"), std::string::npos) << e;
  auto st = q(fc, "SELECT applied_seq, attached, last_error FROM duckblock_status()");
  EXPECT_EQ(st->GetValue(0, 0).GetValue<uint64_t>(), seq);
  EXPECT_TRUE(st->GetValue(1, 0).GetValue<bool>());
  EXPECT_FALSE(st->GetValue(2, 0).IsNull());
  EXPECT_EQ(read_all(replica_file), read_bytes);
  EXPECT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 100);

  // Once the transaction ends, the refresh goes through.
  q(reader, "COMMIT");
  q(fc, "CALL duckblock_refresh('rep')");
  EXPECT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 150);
  EXPECT_TRUE(q(fc, "SELECT last_error FROM duckblock_status()")->GetValue(0, 0).IsNull());
}

// Every commit replicated: commits without CHECKPOINT reach a follower
// through the log, while readers loop on the alias through more than a
// hundred refreshes and none of their queries fails.
TEST_F(ExtensionHost, CommitsReachAFollowerAndNoReaderQueryFailsAcrossRefreshes) {
  auto leader = std::make_unique<Host>();
  auto& lc = *leader->con;
  q(lc, "SET duckblock_store = '" + store + "'");
  q(lc, "SET duckblock_sync_interval_ms = 20");
  q(lc, "ATTACH 'duckblock://" + leader_file + "' AS lead");
  q(lc, "CREATE TABLE lead.t (id INTEGER)");
  ship(*leader);
  Host follower;
  auto& fc = *follower.con;
  q(fc, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', alias := 'rep', "
        "poll_interval_ms := 0)");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, failed{0};
  std::string first_error;
  std::mutex err_mu;
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      duckdb::Connection rc(*follower.db);
      int64_t last = 0;
      while (!stop) {
        auto r = rc.Query("SELECT count(*) FROM rep.t");
        if (r->HasError()) {
          failed++;
          std::lock_guard l(err_mu);
          if (first_error.empty()) first_error = r->GetError();
          continue;
        }
        int64_t n = r->GetValue(0, 0).GetValue<int64_t>();
        if (n < last) {
          failed++;  // a reader must never go back in time
          std::lock_guard l(err_mu);
          if (first_error.empty()) first_error = "count went back from " + std::to_string(last) + " to " + std::to_string(n);
        }
        last = n;
        ok++;
      }
    });
  }
  int id = 0;
  uint64_t refreshes = 0;
  for (int round = 0; round < 110; ++round) {
    for (int i = 0; i < 3; ++i) q(lc, "INSERT INTO lead.t VALUES (" + std::to_string(id++) + ")");
    if (round % 25 == 24) q(lc, "CHECKPOINT lead");
    q(lc, "CALL duckblock_sync('sales')");
    auto r = q(fc, "SELECT segments_applied FROM duckblock_refresh('rep')");
    ++refreshes;
    // Every acknowledged commit is visible once the store has it.
    ASSERT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), id) << "round " << round;
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failed.load(), 0u) << first_error;
  EXPECT_GT(ok.load(), 100u);
  EXPECT_GE(refreshes, 100u);
  auto st = q(fc, "SELECT log_index, log_bytes FROM duckblock_status() WHERE role = 'follower'");
  EXPECT_GT(st->GetValue(1, 0).GetValue<uint64_t>(), 0u) << "the last commits came from the log";
}

// restore and follow never replace a file unasked: an existing file, a
// stale WAL or a file attached here needs force := true; a file DuckDB has
// attached for writing, a leader's file or another follower's replica is
// never replaced.
TEST_F(ExtensionHost, RestoreAndFollowRefuseToOverwrite) {
  auto leader = open_leader();
  auto& lc = *leader->con;
  q(lc, "CREATE TABLE lead.t AS SELECT range AS id FROM range(100)");
  ship(*leader);
  Host other;
  auto& c = *other.con;
  auto restore_sql = [&](const std::string& to, const std::string& extra = "") {
    return "CALL duckblock_restore('sales', '" + store + "', '" + to + "'" + extra + ")";
  };
  auto follow_sql = [&](const std::string& to, const std::string& alias, const std::string& extra = "") {
    return "CALL duckblock_follow('sales', '" + store + "', '" + to + "', alias := '" + alias +
           "', poll_interval_ms := 0" + extra + ")";
  };
  auto expect_refused = [](const std::string& e, const std::string& why) {
    EXPECT_NE(e.find("will not"), std::string::npos) << e;
    EXPECT_NE(e.find("already-exists"), std::string::npos) << e;
    EXPECT_NE(e.find(why), std::string::npos) << e;
  };

  // An existing file: refused, left as it was; replaced with force.
  std::string existing = dir + "/existing.duckdb";
  { std::ofstream(existing) << "keep me"; }
  expect_refused(q_error(c, restore_sql(existing)), "force := true");
  EXPECT_EQ(read_all(existing), "keep me");
  expect_refused(q_error(c, follow_sql(existing, "f1")), "not a duckblock replica");
  EXPECT_EQ(read_all(existing), "keep me");
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'f1'")->GetValue(0, 0)
                .GetValue<int64_t>(), 0);
  q(c, restore_sql(existing, ", force := true"));
  q(c, "ATTACH '" + existing + "' AS ro (READ_ONLY)");
  EXPECT_EQ(q(c, "SELECT count(*) FROM ro.t")->GetValue(0, 0).GetValue<int64_t>(), 100);

  // Attached READ_ONLY here: only with force.
  expect_refused(q_error(c, restore_sql(existing, "")), "attached here as 'ro'");
  q(c, restore_sql(existing, ", force := true"));
  q(c, "DETACH ro");

  // Attached for writing here: never, even with force; its data survives.
  std::string mine = dir + "/mine.duckdb";
  q(c, "ATTACH '" + mine + "' AS mine");
  q(c, "CREATE TABLE mine.keep AS SELECT 42 AS answer");
  expect_refused(q_error(c, restore_sql(mine, ", force := true")), "attached for writing here as 'mine'");
  expect_refused(q_error(c, follow_sql(mine, "f2", ", force := true")), "attached for writing here as 'mine'");
  EXPECT_EQ(q(c, "SELECT answer FROM mine.keep")->GetValue(0, 0).GetValue<int32_t>(), 42);

  // A leader's file: never, even with force (and even once detached: its
  // replicator goes on with the file).
  expect_refused(q_error(lc, restore_sql(leader_file, ", force := true")), "replicates it as 'sales'");
  expect_refused(q_error(lc, follow_sql(leader_file, "f3", ", force := true")), "replicates it as 'sales'");
  EXPECT_EQ(q(lc, "SELECT count(*) FROM lead.t")->GetValue(0, 0).GetValue<int64_t>(), 100);

  // A follower's replica: never; following it again after an unfollow
  // continues it without force (it has a journal).
  q(c, follow_sql(replica_file, "rep"));
  expect_refused(q_error(c, restore_sql(replica_file, ", force := true")), "replica of follower 'rep'");
  expect_refused(q_error(c, follow_sql(replica_file, "rep2", ", force := true")), "replica of follower 'rep'");
  q(c, "CALL duckblock_unfollow('rep')");
  q(c, follow_sql(replica_file, "rep"));
  EXPECT_EQ(q(c, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 100);
  q(c, "CALL duckblock_unfollow('rep')");

  // A stale WAL beside the target: only with force, which removes it.
  std::string fresh = dir + "/fresh.duckdb";
  { std::ofstream(fresh + ".wal") << "not ours"; }
  expect_refused(q_error(c, restore_sql(fresh)), ".wal exists");
  EXPECT_FALSE(fs::exists(fresh));
  q(c, restore_sql(fresh, ", force := true"));
  EXPECT_FALSE(fs::exists(fresh + ".wal"));
  EXPECT_TRUE(fs::exists(fresh));
}

// A name in the store belongs to one file: a second, different file that
// would replicate under it is refused at ATTACH (before it ships anything),
// and the message names both files. duckblock_name gives it another name;
// duckblock_take_over lets a file replace the recorded one.
TEST_F(ExtensionHost, ASecondFileClaimingAReplicatedNameIsRefused) {
  auto leader = open_leader();
  q(*leader->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(10)");
  uint64_t seq = ship(*leader);
  std::string canon_a = fs::weakly_canonical(leader_file).string();
  EXPECT_NE(read_all(dir + "/store/sales/origin.json").find(canon_a), std::string::npos);

  fs::create_directories(dir + "/other");
  std::string other = dir + "/other/sales.duckdb";
  Host h;
  auto& c = *h.con;
  q(c, "SET duckblock_store = '" + store + "'");
  auto e = q_error(c, "ATTACH 'duckblock://" + other + "' AS b");
  EXPECT_NE(e.find("already-exists"), std::string::npos) << e;
  EXPECT_NE(e.find(canon_a), std::string::npos) << e;
  EXPECT_NE(e.find(fs::weakly_canonical(other).string()), std::string::npos) << e;
  EXPECT_NE(e.find("duckblock_name"), std::string::npos) << e;
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'b'")->GetValue(0, 0)
                .GetValue<int64_t>(), 0);
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckblock_status()")->GetValue(0, 0).GetValue<int64_t>(), 0);
  // The first file's chain is untouched and goes on.
  q(*leader->con, "INSERT INTO lead.t VALUES (10)");
  EXPECT_GT(ship(*leader), seq);

  // Under a name of its own it replicates.
  q(c, "SET duckblock_name = 'sales_eu'");
  q(c, "ATTACH 'duckblock://" + other + "' AS b");
  q(c, "CREATE TABLE b.t AS SELECT range AS id FROM range(3)");
  q(c, "CHECKPOINT b");
  auto st = q(c, "SELECT name, last_error FROM duckblock_sync('b')");
  EXPECT_EQ(st->GetValue(0, 0).ToString(), "sales_eu");
  EXPECT_TRUE(st->GetValue(1, 0).IsNull());
  Host f;
  q(*f.con, "CALL duckblock_follow('sales_eu', '" + store + "', '" + dir + "/replica/eu.duckdb', poll_interval_ms := 0)");
  EXPECT_EQ(q(*f.con, "SELECT count(*) FROM sales_eu.t")->GetValue(0, 0).GetValue<int64_t>(), 3);

  // A file that replaces the recorded one says so.
  Host t;
  q(*t.con, "SET duckblock_store = '" + store + "'");
  q(*t.con, "SET duckblock_name = 'sales_eu'");
  std::string third = dir + "/other/third.duckdb";
  EXPECT_NE(q_error(*t.con, "ATTACH 'duckblock://" + third + "' AS c"), "");
  q(*t.con, "SET duckblock_take_over = true");
  q(*t.con, "ATTACH 'duckblock://" + third + "' AS c");
  EXPECT_NE(read_all(dir + "/store/sales_eu/origin.json").find(fs::weakly_canonical(third).string()),
            std::string::npos);
}

// The same leader-to-follower path through an S3 store (the s3rver the
// ctest fixture starts; credentials from the environment, as in production).
TEST(ExtensionHostS3, LeaderToFollowerThroughS3) {
  int port = s3rver_port();
  if (port == 0) GTEST_SKIP() << "needs the s3rver ctest fixture (ctest -L extension)";
  use_s3rver_credentials();
  char tmpl[] = "/tmp/duckblock-ext-s3-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  // A prefix of its own: other tests share the bucket.
  std::string store = "s3://duckblock-test/ext-" + fs::path(dir).filename().string() + "/";
  auto configure = [&](duckdb::Connection& c) {
    q(c, "SET duckblock_s3_endpoint = 'http://127.0.0.1:" + std::to_string(port) + "'");
    q(c, "SET duckblock_s3_region = 'us-east-1'");
    q(c, "SET duckblock_s3_path_style = true");
  };
  Host leader;
  configure(*leader.con);
  q(*leader.con, "SET duckblock_store = '" + store + "'");
  q(*leader.con, "ATTACH 'duckblock://" + dir + "/inv.duckdb' AS lead");
  q(*leader.con, "CREATE TABLE lead.t AS SELECT range AS id, random() AS v FROM range(100000)");
  q(*leader.con, "CHECKPOINT lead");
  auto s = q(*leader.con, "SELECT shipped_seq, last_error FROM duckblock_sync('inv')");
  EXPECT_TRUE(s->GetValue(1, 0).IsNull()) << s->GetValue(1, 0).ToString();

  Host follower;
  configure(*follower.con);
  q(*follower.con, "CALL duckblock_follow('inv', '" + store + "', '" + dir + "/replica.duckdb', alias := 'rep', "
                   "poll_interval_ms := 0)");
  EXPECT_EQ(fingerprint(*follower.con, "rep"), fingerprint(*leader.con, "lead"));
  q(*leader.con, "DELETE FROM lead.t WHERE id % 2 = 0");
  q(*leader.con, "CHECKPOINT lead");
  q(*leader.con, "CALL duckblock_sync('inv')");
  q(*follower.con, "CALL duckblock_refresh('rep')");
  EXPECT_EQ(fingerprint(*follower.con, "rep"), fingerprint(*leader.con, "lead"));
  EXPECT_EQ(q(*follower.con, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 50000);
  // Commits without CHECKPOINT reach the follower through the log, in
  // synchronous mode too (each COMMIT returns once s3rver holds it).
  for (const char* mode : {"interval", "commit"}) {
    SCOPED_TRACE(mode);
    q(*leader.con, "DETACH lead");
    q(*leader.con, std::string("SET duckblock_sync_mode = '") + mode + "'");
    q(*leader.con, "ATTACH 'duckblock://" + dir + "/inv.duckdb' AS lead");
    for (int i = 0; i < 10; ++i) q(*leader.con, "INSERT INTO lead.t VALUES (" + std::to_string(-1 - i) + ", 0.5)");
    if (std::string(mode) == "interval") q(*leader.con, "CALL duckblock_sync('inv')");
    q(*follower.con, "CALL duckblock_refresh('rep')");
    EXPECT_EQ(fingerprint(*follower.con, "rep"), fingerprint(*leader.con, "lead"));
    auto st = q(*leader.con, "SELECT log_bytes, log_pending_bytes FROM duckblock_status() WHERE role = 'leader'");
    EXPECT_GT(st->GetValue(0, 0).GetValue<uint64_t>(), 0u);
    EXPECT_EQ(st->GetValue(1, 0).GetValue<uint64_t>(), 0u);
  }
  EXPECT_EQ(q(*follower.con, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 50020);
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

// What DuckDB's httpfs extension does for TYPE s3 (which cannot be installed
// here: it is downloaded on first use): a key-value secret type whose
// CREATE SECRET stores its parameters under their lower-case names.
duckdb::unique_ptr<duckdb::BaseSecret> create_kv_secret(duckdb::ClientContext&, duckdb::CreateSecretInput& input) {
  auto secret = duckdb::make_uniq<duckdb::KeyValueSecret>(input.scope, input.type, input.provider, input.name);
  for (const auto& [k, v] : input.options) secret->secret_map[duckdb::StringUtil::Lower(k)] = v;
  secret->redact_keys = {"secret", "session_token"};
  return secret;
}
void register_httpfs_like_s3_secret(duckdb::DuckDB& db) {
  auto& manager = duckdb::SecretManager::Get(*db.instance);
  duckdb::SecretType type;
  type.name = "s3";
  type.deserializer = duckdb::KeyValueSecret::Deserialize<duckdb::KeyValueSecret>;
  type.default_provider = "config";
  manager.RegisterSecretType(type);
  duckdb::CreateSecretFunction f;
  f.secret_type = "s3";
  f.provider = "config";
  f.function = create_kv_secret;
  for (const char* p : {"key_id", "secret", "session_token", "region", "endpoint", "url_style"}) {
    f.named_parameters[p] = duckdb::LogicalType::VARCHAR;
  }
  f.named_parameters["use_ssl"] = duckdb::LogicalType::BOOLEAN;
  manager.RegisterSecretFunction(f, duckdb::OnCreateConflict::ERROR_ON_CONFLICT);
}

// S3 configured the DuckDB way: credentials, region, endpoint and URL style
// from a secret whose scope matches the store, with nothing in the
// environment, the credentials file or the duckblock_s3_* settings.
TEST(ExtensionHostS3, SettingsFromADuckDBSecret) {
  int port = s3rver_port();
  if (port == 0) GTEST_SKIP() << "needs the s3rver ctest fixture (ctest -L extension)";
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                        "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"}) {
    ::unsetenv(v);
  }
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
  ::setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
  char tmpl[] = "/tmp/duckblock-ext-secret-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string prefix = "duckblock-test/secret-" + fs::path(dir).filename().string() + "/";
  std::string store = "s3://" + prefix;
  auto secret = [&](const std::string& name, const std::string& type, const std::string& key,
                    const std::string& scope) {
    return "CREATE SECRET " + name + " (TYPE " + type + ", KEY_ID '" + key + "', SECRET 'S3RVER', REGION "
           "'us-east-1', ENDPOINT '127.0.0.1:" + std::to_string(port) + "', URL_STYLE 'path', USE_SSL false, SCOPE '" +
           scope + "')";
  };

  Host leader;
  auto& lc = *leader.con;
  q(lc, "SET duckblock_store = '" + store + "'");
  // No credentials anywhere: refused, and the message says where they come from.
  auto e = q_error(lc, "ATTACH 'duckblock://" + dir + "/inv.duckdb' AS lead");
  EXPECT_NE(e.find("credentials"), std::string::npos) << e;
  // A secret for another prefix does not apply; the one whose scope matches
  // does (TYPE duckblock: the extension's own, always there).
  q(lc, secret("elsewhere", "duckblock", "nobody", "s3://duckblock-test/elsewhere/"));
  q(lc, secret("mine", "duckblock", "S3RVER", store));
  q(lc, "ATTACH 'duckblock://" + dir + "/inv.duckdb' AS lead");
  q(lc, "CREATE TABLE lead.t AS SELECT range AS id FROM range(1000)");
  q(lc, "CHECKPOINT lead");
  auto st = q(lc, "SELECT shipped_seq, last_error FROM duckblock_sync('inv')");
  EXPECT_TRUE(st->GetValue(1, 0).IsNull()) << st->GetValue(1, 0).ToString();

  // TYPE s3, as httpfs defines it, for a follower and a restore.
  Host follower;
  register_httpfs_like_s3_secret(*follower.db);
  auto& fc = *follower.con;
  q(fc, secret("s3_store", "s3", "S3RVER", "s3://duckblock-test/"));
  q(fc, "CALL duckblock_follow('inv', '" + store + "', '" + dir + "/replica.duckdb', alias := 'rep', "
        "poll_interval_ms := 0)");
  EXPECT_EQ(q(fc, "SELECT count(*) FROM rep.t")->GetValue(0, 0).GetValue<int64_t>(), 1000);
  q(fc, "CALL duckblock_restore('inv', '" + store + "', '" + dir + "/restored.duckdb')");
  EXPECT_TRUE(fs::exists(dir + "/restored.duckdb"));
  // The secret that matches best wins: a longer scope with a wrong key.
  q(fc, secret("wrong", "s3", "nobody", store));
  e = q_error(fc, "CALL duckblock_restore('inv', '" + store + "', '" + dir + "/again.duckdb')");
  EXPECT_NE(e.find("'wrong'"), std::string::npos) << e;
  ::unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  ::unsetenv("AWS_CONFIG_FILE");
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

// What the library has to say goes to the host's stderr only when asked
// (duckblock_log_level; default off). The S3 test server ignores
// If-None-Match, which the store notes once per store as a warning.
TEST(ExtensionHostS3, LogsToStderrOnlyWhenAsked) {
  int port = s3rver_port();
  if (port == 0) GTEST_SKIP() << "needs the s3rver ctest fixture (ctest -L extension)";
  use_s3rver_credentials();
  char tmpl[] = "/tmp/duckblock-ext-log-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  // Everything written to fd 2 while `f` runs.
  auto stderr_of = [&](const std::function<void()>& f) {
    std::string path = dir + "/stderr.txt";
    fflush(stderr);
    int saved = ::dup(2);
    FILE* out = std::fopen(path.c_str(), "w");
    ::dup2(::fileno(out), 2);
    f();
    fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::fclose(out);
    return read_all(path);
  };
  auto attach = [&](Host& h, const std::string& name) {
    q(*h.con, "SET duckblock_s3_endpoint = 'http://127.0.0.1:" + std::to_string(port) + "'");
    q(*h.con, "SET duckblock_s3_path_style = true");
    q(*h.con, "SET duckblock_store = 's3://duckblock-test/" + fs::path(dir).filename().string() + "-" + name + "/'");
    q(*h.con, "ATTACH 'duckblock://" + dir + "/" + name + ".duckdb' AS " + name);
    q(*h.con, "CREATE TABLE " + name + ".t AS SELECT 1 AS x");
    q(*h.con, "CHECKPOINT " + name);
    q(*h.con, "CALL duckblock_sync('" + name + "')");
  };
  Host quiet, loud;
  EXPECT_EQ(stderr_of([&] { attach(quiet, "quiet"); }), "");
  q(*loud.con, "SET duckblock_log_level = 'warn'");
  auto said = stderr_of([&] { attach(loud, "loud"); });
  EXPECT_NE(said.find("duckblock: the S3 server at http://127.0.0.1:" + std::to_string(port) +
                      " ignores If-None-Match"), std::string::npos) << said;
  EXPECT_NE(q_error(*loud.con, "SET duckblock_log_level = 'loud'").find("off, error, warn, info, debug"),
            std::string::npos);
  q(*loud.con, "SET duckblock_log_level = 'off'");
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

TEST_F(ExtensionHost, ErrorsSayWhatToDo) {
  Host h;
  auto& c = *h.con;
  // No store configured: ATTACH fails and says which setting is missing.
  auto e = q_error(c, "ATTACH 'duckblock://" + leader_file + "' AS lead");
  EXPECT_NE(e.find("SET duckblock_store"), std::string::npos) << e;
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'lead'")->GetValue(0, 0)
                .GetValue<int64_t>(), 0);
  // A URL scheme nobody knows.
  q(c, "SET duckblock_store = 'ftp://nowhere/'");
  e = q_error(c, "ATTACH 'duckblock://" + leader_file + "' AS lead");
  EXPECT_NE(e.find("ftp://"), std::string::npos) << e;
  // Following a database the store does not have: an error, no alias.
  fs::create_directories(dir + "/store");
  e = q_error(c, "CALL duckblock_follow('nope', '" + store + "', '" + replica_file + "')");
  EXPECT_NE(e.find("no database 'nope'"), std::string::npos) << e;
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'nope'")->GetValue(0, 0)
                .GetValue<int64_t>(), 0);
  EXPECT_EQ(q(c, "SELECT count(*) FROM duckblock_status()")->GetValue(0, 0).GetValue<int64_t>(), 0);
  // A follower's alias must not be a database the user attached (a refresh
  // would detach it).
  q(c, "ATTACH ':memory:' AS mine");
  e = q_error(c, "CALL duckblock_follow('nope', '" + store + "', '" + replica_file + "', alias := 'mine')");
  EXPECT_NE(e.find("already attached"), std::string::npos) << e;
  // Refreshing a follower that does not exist.
  e = q_error(c, "CALL duckblock_refresh('nope')");
  EXPECT_NE(e.find("duckblock_follow"), std::string::npos) << e;
  // Restoring to a sequence number the store does not have.
  auto leader = open_leader();
  uint64_t seq = ship(*leader);
  e = q_error(c, "CALL duckblock_restore('sales', '" + store + "', '" + dir + "/x.duckdb', seq := " +
                     std::to_string(seq + 100) + ")");
  EXPECT_NE(e, "");
  EXPECT_FALSE(fs::exists(dir + "/x.duckdb"));
}

// duckblock_metrics_port serves the leaders and followers of the instance
// over HTTP; the values move when a checkpoint ships and a refresh applies
// it. A port in use fails the SET and leaves the running listener serving.
TEST_F(ExtensionHost, MetricsPortServesLeadersAndFollowers) {
  using duckblock::test::http_request;
  using duckblock::test::metric_value;
  uint16_t port = 0;
  ::close(duckblock::test::listen_on_free_port(port));  // a port that was free a moment ago
  auto leader = open_leader();
  auto& c = *leader->con;
  q(c, "SET duckblock_metrics_port = " + std::to_string(port));
  q(c, "CREATE TABLE lead.t AS SELECT range AS id FROM range(1000)");
  uint64_t first = ship(*leader);
  q(c, "CALL duckblock_follow('sales', '" + store + "', '" + replica_file + "', alias := 'rep', poll_interval_ms := 0)");
  auto r = http_request(port, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("version=0.0.4"), std::string::npos) << r.headers;
  EXPECT_NE(r.body.find("# TYPE duckblock_shipped_objects_total counter"), std::string::npos) << r.body;
  EXPECT_EQ(metric_value(r.body, "duckblock_shipped_seq{db=\"sales\"}"), first) << r.body;
  auto objects = metric_value(r.body, "duckblock_shipped_objects_total{db=\"sales\"}");
  ASSERT_TRUE(objects) << r.body;
  EXPECT_GE(*objects, 1);
  EXPECT_EQ(metric_value(r.body, "duckblock_follower_applied_seq{db=\"sales\",alias=\"rep\"}"), first) << r.body;
  EXPECT_EQ(http_request(port, "/other").status, 404);

  q(c, "INSERT INTO lead.t SELECT range FROM range(500)");
  uint64_t second = ship(*leader);
  ASSERT_GT(second, first);
  r = http_request(port, "/metrics");
  EXPECT_EQ(metric_value(r.body, "duckblock_shipped_seq{db=\"sales\"}"), second) << r.body;
  EXPECT_GT(*metric_value(r.body, "duckblock_shipped_objects_total{db=\"sales\"}"), *objects) << r.body;
  EXPECT_EQ(metric_value(r.body, "duckblock_follower_applied_seq{db=\"sales\",alias=\"rep\"}"), first) << r.body;
  q(c, "CALL duckblock_refresh('rep')");
  r = http_request(port, "/metrics");
  EXPECT_EQ(metric_value(r.body, "duckblock_follower_applied_seq{db=\"sales\",alias=\"rep\"}"), second) << r.body;
  EXPECT_EQ(metric_value(r.body, "duckblock_follower_lag_seq{db=\"sales\",alias=\"rep\"}"), 0) << r.body;

  uint16_t taken = 0;
  int held = duckblock::test::listen_on_free_port(taken);
  auto e = q_error(c, "SET duckblock_metrics_port = " + std::to_string(taken));
  ::close(held);
  EXPECT_NE(e.find("127.0.0.1:" + std::to_string(taken) + " is already in use"), std::string::npos) << e;
  EXPECT_EQ(http_request(port, "/metrics").status, 200);
  EXPECT_EQ(q(c, "SELECT current_setting('duckblock_metrics_port')")->GetValue(0, 0).GetValue<int64_t>(), port);
  q(c, "SET duckblock_metrics_port = 0");
  EXPECT_THROW(http_request(port, "/metrics"), std::runtime_error);
}

}  // namespace
