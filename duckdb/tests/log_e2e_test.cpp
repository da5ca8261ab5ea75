// Every commit replicated: a real DuckDB leader commits without CHECKPOINT,
// and the store, a restore and a follower hold exactly the committed rows;
// at every checkpoint the files are still byte-identical.
#include <gtest/gtest.h>

#include <filesystem>

#include "duckblock/duckdb_capture.h"
#include "duckblock/error.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"
#include "duckdb_test_util.h"
#include "e2e_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

using duckdb_integration::open_replicated;
using duckdb_test::fingerprint;
using duckdb_test::restore_latest;
using duckdb_test::run;
using duckdb_test::sha256_file;
using test::TempDir;

// What DuckDB sees opening `path` read-only with the .wal beside it (it
// replays the log into memory and changes neither file).
std::string fingerprint_with_log(const std::string& path) {
  duckdb::DBConfig cfg;
  cfg.options.access_mode = duckdb::AccessMode::READ_ONLY;
  duckdb::DuckDB db(path, &cfg);
  duckdb::Connection con(db);
  return fingerprint(con);
}

class LogEndToEnd : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override { store = GetParam().make(); }
  std::shared_ptr<Replicator> replicator(LogSyncMode mode) {
    ReplicatorOptions ro;
    ro.prefix = prefix;
    ro.spool_dir = dir / "spool";
    ro.snapshots.every_segments = 3;
    ro.log_sync_mode = mode;
    ro.log_interval = std::chrono::milliseconds(100);
    return std::make_shared<Replicator>(store, ro);
  }
  std::shared_ptr<ObjectStore> store;
  TempDir dir;
  const std::string prefix = "log/";
};

// Commit streams without CHECKPOINT, interleaved with manual checkpoints:
// after each sync the latest restore and a follower answer exactly as the
// leader does, and after each checkpoint the follower's file is the
// leader's, byte for byte.
TEST_P(LogEndToEnd, CommitsWithoutCheckpointReachRestoreAndFollower) {
  auto rep = replicator(LogSyncMode::kInterval);
  const std::string leader_path = dir / "leader.duckdb";
  auto leader = open_replicated(leader_path, rep, "db");
  duckdb::Connection con(leader->db());
  run(con, "CREATE TABLE t (id INTEGER, v VARCHAR)");
  run(con, "CHECKPOINT");

  FollowerOptions fo;
  fo.prefix = prefix;
  fo.log_path = dir / "follower.duckdb.wal";
  Follower follower(store, "db", dir / "follower.duckdb", fo);

  int id = 0;
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    for (int i = 0; i < 25; ++i, ++id) {
      run(con, "INSERT INTO t VALUES (" + std::to_string(id) + ", 'row " + std::to_string(id) + "')");
    }
    if (round % 2 == 1) run(con, "UPDATE t SET v = v || '!' WHERE id % 7 = " + std::to_string(round));
    bool checkpoint = round % 3 == 2;
    if (checkpoint) run(con, "CHECKPOINT");
    rep->sync();
    std::string want = fingerprint(con);

    LogCatchUp log;
    auto r = restore_latest(*store, prefix, dir / "restored.duckdb", &log);
    EXPECT_EQ(r.position.seq, leader->stats().last_seq);
    if (!checkpoint) EXPECT_GT(log.applied, 0u) << "the commits since the checkpoint must come from the log";
    EXPECT_EQ(fingerprint_with_log(dir / "restored.duckdb"), want);

    follower.poll_once();
    EXPECT_EQ(fingerprint_with_log(dir / "follower.duckdb"), want);
    if (checkpoint) {
      EXPECT_EQ(sha256_file(dir / "follower.duckdb"), sha256_file(leader_path));
    }
  }
  // The leader's own file with its .wal and the store agree on every row.
  auto count = con.Query("SELECT count(*) FROM t")->GetValue(0, 0).GetValue<int64_t>();
  EXPECT_EQ(count, id);
  EXPECT_FALSE(leader->stats().last_error) << *leader->stats().last_error;
  EXPECT_GT(leader->stats().log_syncs, 0u);
  // The CHECKPOINT after CREATE TABLE, and those of rounds 2 and 5: each
  // flushes a non-empty log once, and none of those flushes shipped.
  EXPECT_EQ(leader->stats().checkpoint_log_flushes, 3u);
}

// One transaction large enough that DuckDB writes its row groups straight
// into free blocks of the file and logs only pointers to them: those blocks
// must reach the store before the log that names them.
TEST_P(LogEndToEnd, ALargeAppendWithoutCheckpointRestoresWithItsBlocks) {
  auto rep = replicator(LogSyncMode::kInterval);
  const std::string leader_path = dir / "leader.duckdb";
  auto leader = open_replicated(leader_path, rep, "db");
  duckdb::Connection con(leader->db());
  run(con, "CREATE TABLE t AS SELECT range AS id FROM range(10)");
  run(con, "CHECKPOINT");
  uint64_t seq_before = leader->stats().last_seq;
  run(con, "INSERT INTO t SELECT range + 100, FROM range(400000)");
  rep->sync();
  std::string want = fingerprint(con);
  EXPECT_GT(leader->stats().last_seq, seq_before) << "the appended blocks did not ship as their own segment";
  restore_latest(*store, prefix, dir / "restored.duckdb");
  EXPECT_EQ(fingerprint_with_log(dir / "restored.duckdb"), want);
}

// Synchronous mode: a COMMIT returns only once the store holds it, so a
// restore made right after (no sync) has every acknowledged row.
TEST_P(LogEndToEnd, CommitModeAcknowledgesOnlyStoredCommits) {
  auto rep = replicator(LogSyncMode::kCommit);
  auto leader = open_replicated(dir / "leader.duckdb", rep, "db");
  duckdb::Connection con(leader->db());
  run(con, "CREATE TABLE t (id INTEGER)");
  for (int i = 0; i < 8; ++i) {
    run(con, "INSERT INTO t VALUES (" + std::to_string(i) + ")");
    restore_latest(*store, prefix, dir / "restored.duckdb");
    duckdb::DBConfig cfg;
    cfg.options.access_mode = duckdb::AccessMode::READ_ONLY;
    duckdb::DuckDB db(dir / "restored.duckdb", &cfg);
    duckdb::Connection rc(db);
    auto n = rc.Query("SELECT count(*) FROM t")->GetValue(0, 0).GetValue<int64_t>();
    EXPECT_EQ(n, i + 1) << "commit " << i << " was acknowledged before the store had it";
  }
}

// A leader that stops with commits only in its .wal (no checkpoint at
// close, as after a crash) ships that log when it opens the file again.
TEST_P(LogEndToEnd, ALogLeftAtCloseShipsWhenTheLeaderReopens) {
  const std::string leader_path = dir / "leader.duckdb";
  std::string want;
  {
    // Nothing reaches the store before the close: the log is lost with the
    // process unless the next open ships it.
    ReplicatorOptions ro;
    ro.prefix = prefix;
    ro.spool_dir = dir / "spool";
    ro.log_interval = std::chrono::hours(1);
    auto rep = std::make_shared<Replicator>(store, ro);
    duckdb::DBConfig cfg;
    cfg.options.checkpoint_on_shutdown = false;
    auto leader = open_replicated(leader_path, rep, "db", &cfg);
    duckdb::Connection con(leader->db());
    run(con, "CREATE TABLE t (id INTEGER)");
    run(con, "CHECKPOINT");
    for (int i = 0; i < 30; ++i) run(con, "INSERT INTO t VALUES (" + std::to_string(i) + ")");
    want = fingerprint(con);
  }
  ASSERT_TRUE(std::filesystem::exists(leader_path + ".wal"));
  // As if the process had died before its log went up (the first upload of
  // an interval goes at once, so it may have): the store has none of it.
  std::vector<std::string> logs;
  for (const auto& e : list_log(*store, prefix, "db")) logs.push_back(e.key);
  store->remove(logs);
  ASSERT_TRUE(list_log(*store, prefix, "db").empty());
  auto rep = replicator(LogSyncMode::kInterval);
  duckdb::DBConfig cfg;
  cfg.options.checkpoint_on_shutdown = false;
  auto leader = open_replicated(leader_path, rep, "db", &cfg);
  rep->sync();
  restore_latest(*store, prefix, dir / "restored.duckdb");
  EXPECT_EQ(fingerprint_with_log(dir / "restored.duckdb"), want);
}

// A log segment of another base, of another database, or out of order,
// planted in the store under the key of the replica's next segment, is
// refused (with the kind saying why) before a byte of the replica's log or
// its record changes; once it is gone the leader's real next segment applies.
TEST(LogRefusal, ForeignMisplacedOrOutOfOrderSegmentsAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  std::shared_ptr<ObjectStore> store = make_local_store(dir / "store");
  const std::string prefix = "log/";
  auto replicator = [&](const std::string& spool) {
    ReplicatorOptions ro;
    ro.prefix = prefix;
    ro.spool_dir = dir / spool;
    ro.log_interval = std::chrono::milliseconds(10);
    return std::make_shared<Replicator>(store, ro);
  };
  // Database "db": a log on an older base, then a checkpoint and a log of
  // two segments on the newer one.
  auto rep_a = replicator("spool-a");
  auto a = open_replicated(dir / "a.duckdb", rep_a, "db");
  duckdb::Connection ca(a->db());
  run(ca, "CREATE TABLE t (id INTEGER)");
  run(ca, "CHECKPOINT");
  run(ca, "INSERT INTO t VALUES (1)");
  rep_a->sync();
  run(ca, "CHECKPOINT");
  for (int id : {2, 3}) {
    run(ca, "INSERT INTO t VALUES (" + std::to_string(id) + ")");
    rep_a->sync();
  }
  // Database "other" in the same store, with a log of its own.
  auto rep_b = replicator("spool-b");
  auto b = open_replicated(dir / "b.duckdb", rep_b, "other");
  duckdb::Connection cb(b->db());
  run(cb, "CREATE TABLE t (id INTEGER)");
  run(cb, "CHECKPOINT");
  run(cb, "INSERT INTO t VALUES (99)");
  rep_b->sync();

  const std::string r = dir / "replica.duckdb";
  LogCatchUp caught;
  RestoreResult restored = restore_latest(*store, prefix, r, &caught);
  const ChainPosition at = restored.position;
  auto ours = list_log(*store, prefix, "db", at.seq);
  ASSERT_EQ(ours.size(), 2u);
  ASSERT_EQ(caught.applied, 2u);
  auto older = list_log(*store, prefix, "db");
  ASSERT_LT(older.front().base_seq, at.seq) << "no log of an older base";
  auto theirs = list_log(*store, prefix, "other");
  ASSERT_FALSE(theirs.empty());
  LogSegment last = fetch_log_segment(*store, ours.back());
  LogSegment first = fetch_log_segment(*store, ours.front());
  LogSegment old_base = fetch_log_segment(*store, older.front());
  LogSegment other_db = fetch_log_segment(*store, theirs.front());

  // The replica's next segment would be index 3 of its base.
  const std::string key = log_key(prefix, "db", at.seq, 3);
  auto next_header = [&](const LogSegment& from) {
    LogSegmentHeader h = from.header;
    h.base_seq = at.seq;
    h.base_checksum = at.checksum;
    h.index = 3;
    h.prev_checksum = last.checksum;
    h.offset = last.header.offset + last.header.length;
    h.length = from.data.size();
    return h;
  };
  auto encode = [](const LogSegmentHeader& h, const LogSegment& from) {
    uint64_t checksum = 0;
    return encode_log_segment(h, from.data.data(), &checksum);
  };
  auto raw = [&](const LogEntry& e) { return get_bytes(*store, e.key); };
  const std::string wal_sha = sha256_file(r + ".wal"), record_sha = sha256_file(r + ".duckblock-log");

  auto expect_refused = [&](const std::string& what, const std::vector<uint8_t>& object, ErrorKind kind) {
    SCOPED_TRACE(what);
    put_bytes(*store, key, object);
    {
      LogReplica log(r + ".wal", r + ".duckblock-log");
      try {
        catch_up_log(*store, prefix, "db", at, log);
        ADD_FAILURE() << "applied";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
      }
      EXPECT_EQ(log.position()->index, 2u);
    }
    EXPECT_EQ(sha256_file(r + ".wal"), wal_sha);
    EXPECT_EQ(sha256_file(r + ".duckblock-log"), record_sha);
    // A follower of the same replica stops at it too, and writes nothing.
    FollowerOptions fo;
    fo.prefix = prefix;
    fo.log_path = r + ".wal";
    Follower follower(store, "db", r, fo);
    try {
      follower.poll_once();
      ADD_FAILURE() << "the follower applied it";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
    }
    EXPECT_TRUE(follower.broken()) << "a follower must stop at it, not retry";
    EXPECT_EQ(follower.log_position()->index, 2u);
    EXPECT_EQ(sha256_file(r + ".wal"), wal_sha);
    EXPECT_EQ(sha256_file(r + ".duckblock-log"), record_sha);
    store->remove({key});
  };

  // Another base: a segment of the older checkpoint as it is (its header
  // names its own base and index), and its bytes under a header naming our
  // base's seq with that older base's checksum.
  expect_refused("older base, as stored", raw(older.front()), ErrorKind::kCorruption);
  {
    LogSegmentHeader h = next_header(old_base);
    h.base_checksum = old_base.header.base_checksum;
    expect_refused("older base, renamed", encode(h, old_base), ErrorKind::kChainBroken);
  }
  // Another database: its segment as it is, and re-headed to our seq and
  // index but keeping its own chain's checksum.
  expect_refused("other database, as stored", raw(theirs.front()), ErrorKind::kCorruption);
  {
    LogSegmentHeader h = next_header(other_db);
    h.base_checksum = other_db.header.base_checksum;
    expect_refused("other database, renamed", encode(h, other_db), ErrorKind::kChainBroken);
  }
  // Out of order: our own first segment again, as stored and renumbered 3
  // (it chains from the base, not from segment 2).
  expect_refused("segment 1 again, as stored", raw(ours.front()), ErrorKind::kCorruption);
  {
    LogSegmentHeader h = next_header(first);
    h.prev_checksum = first.header.prev_checksum;
    expect_refused("segment 1 renumbered 3", encode(h, first), ErrorKind::kChainBroken);
  }

  // The replica is unharmed: the leader's real next commit applies.
  run(ca, "INSERT INTO t VALUES (4)");
  rep_a->sync();
  ASSERT_EQ(list_log(*store, prefix, "db", at.seq).size(), 3u);
  LogReplica log(r + ".wal", r + ".duckblock-log");
  EXPECT_EQ(catch_up_log(*store, prefix, "db", at, log).applied, 1u);
  EXPECT_EQ(fingerprint_with_log(r), fingerprint(ca));
}

// A leader that died in the middle of a log write leaves a torn last entry
// in its .wal (a power loss can; a kill -9 on one write(2) cannot, so the
// tear is made by cutting the file). The reopened leader ships the log as
// it is, DuckDB drops the torn entry and appends after it, and the latest
// restore answers exactly as the leader, before and after more commits.
TEST_P(LogEndToEnd, ATornLogTailShipsAndIsCutWhenTheLeaderReopens) {
  const std::string leader_path = dir / "leader.duckdb";
  duckdb::DBConfig cfg;
  cfg.options.checkpoint_on_shutdown = false;
  {
    auto leader = open_replicated(leader_path, replicator(LogSyncMode::kInterval), "db", &cfg);
    duckdb::Connection con(leader->db());
    run(con, "CREATE TABLE t (id INTEGER, v VARCHAR)");
    run(con, "CHECKPOINT");
    for (int i = 0; i < 20; ++i) run(con, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'row')");
  }
  const auto wal_size = std::filesystem::file_size(leader_path + ".wal");
  std::filesystem::resize_file(leader_path + ".wal", wal_size - 7);
  auto rep = replicator(LogSyncMode::kInterval);
  auto leader = open_replicated(leader_path, rep, "db", &cfg);
  duckdb::Connection con(leader->db());
  rep->sync();
  restore_latest(*store, prefix, dir / "restored.duckdb");
  EXPECT_EQ(fingerprint_with_log(dir / "restored.duckdb"), fingerprint(con)) << "right after the reopen";
  EXPECT_EQ(con.Query("SELECT count(*) FROM t")->GetValue(0, 0).GetValue<int64_t>(), 19);
  for (int i = 100; i < 105; ++i) run(con, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'after')");
  rep->sync();
  restore_latest(*store, prefix, dir / "restored.duckdb");
  EXPECT_EQ(fingerprint_with_log(dir / "restored.duckdb"), fingerprint(con)) << "after more commits";
  EXPECT_FALSE(leader->stats().last_error) << *leader->stats().last_error;
}

INSTANTIATE_TEST_SUITE_P(Stores, LogEndToEnd, ::testing::ValuesIn(test::e2e_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock
