// A real DuckDB leader replicating through a real store to a follower: after
// every checkpoint the follower's file is byte-identical to the leader's and
// answers the same queries; restores to a seq or a time give the file as it
// was then.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>

#include "duckblock/duckdb_capture.h"
#include "duckblock/error.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckdb_test_util.h"
#include "e2e_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

using duckdb_integration::CaptureOptions;
using duckdb_integration::open_replicated;
using duckdb_integration::PushEvent;
using duckdb_test::fingerprint;
using duckdb_test::fingerprint_file;
using duckdb_test::run;
using duckdb_test::sha256_file;
using duckdb_test::sha256_reader;
using test::TempDir;

class EndToEnd : public ::testing::TestWithParam<test::StoreBackend> {};

TEST_P(EndToEnd, FollowerIsByteIdenticalAfterEveryCheckpointAndRestoresHitEveryPoint) {
  TempDir dir;
  std::shared_ptr<ObjectStore> store = GetParam().make();
  const std::string prefix = "e2e/";

  // Segment times come from this clock, so restore-to-time is exact.
  std::atomic<int64_t> clock{1'750'000'000'000};
  ReplicatorOptions ro;
  ro.prefix = prefix;
  ro.spool_dir = dir / "spool";
  ro.snapshots.every_segments = 5;  // so restores start from several snapshots
  ro.snapshots.every_bytes = 0;
  ro.now_ms = [&clock] { return clock.load(); };
  auto rep = std::make_shared<Replicator>(store, ro);

  // What the leader's file was at each seq, hashed at the push itself.
  std::map<uint64_t, std::string> sha_at;
  std::map<uint64_t, int64_t> time_at;
  CaptureOptions co;
  co.on_push = [&](const PushEvent& ev) {
    if (ev.result.seq == 0) return;
    sha_at[ev.result.seq] = sha256_reader(*ev.reader);
    time_at[ev.result.seq] = clock.load();
  };
  const std::string leader_path = dir / "leader.duckdb";
  auto leader = open_replicated(leader_path, rep, "db", nullptr, co);
  sha_at[0] = sha256_file(leader_path);  // the snapshot add() shipped
  time_at[0] = clock.load();
  auto conn = std::make_unique<duckdb::Connection>(leader->db());
  duckdb::Connection& con = *conn;

  FollowerOptions fo;
  fo.prefix = prefix;
  Follower follower(store, "db", dir / "follower.duckdb", fo);

  uint64_t shrinks = 0, last_len = std::filesystem::file_size(leader_path);
  for (const auto& step : duckdb_test::workload()) {
    SCOPED_TRACE(step.name);
    clock += 1000;
    for (const auto& sql : step.sql) run(con, sql);
    run(con, "CHECKPOINT");
    rep->sync();
    follower.poll_once();
    ASSERT_TRUE(follower.caught_up());
    EXPECT_EQ(follower.position().seq, leader->stats().last_seq);
    // The leader's file now, and as it was at the last push, and the
    // follower's: all the same bytes.
    std::string leader_sha = sha256_file(leader_path);
    EXPECT_EQ(sha_at[leader->stats().last_seq], leader_sha);
    EXPECT_EQ(sha256_file(dir / "follower.duckdb"), leader_sha);
    // And a DuckDB opened read-only on it reads the same data (between
    // polls: nothing applies under it), without changing a byte.
    EXPECT_EQ(fingerprint_file(dir / "follower.duckdb"), fingerprint(con));
    EXPECT_EQ(sha256_file(dir / "follower.duckdb"), leader_sha);
    uint64_t len = std::filesystem::file_size(leader_path);
    if (len < last_len) ++shrinks;
    last_len = len;
  }
  EXPECT_GT(shrinks, 0u) << "the workload never made DuckDB shrink its file";
  EXPECT_FALSE(leader->stats().last_error);

  ChainListing chain = list_chain(*store, prefix, "db");
  ASSERT_GE(chain.snapshots.size(), 2u);
  uint64_t head = chain.head_seq();
  ASSERT_EQ(head, leader->stats().last_seq);
  for (uint64_t i = 0; i < chain.incrementals.size(); ++i) EXPECT_EQ(chain.incrementals[i].seq, i + 1);

  // Restore to every seq: the file exactly as it was when that seq shipped.
  RestoreOptions rop;
  rop.prefix = prefix;
  for (auto& [seq, sha] : sha_at) {
    SCOPED_TRACE("restore to seq " + std::to_string(seq));
    std::string out = dir / ("restore-" + std::to_string(seq) + ".duckdb");
    RestoreTarget t;
    t.seq = seq;
    auto r = restore(*store, "db", out, t, rop);
    EXPECT_EQ(r.position.seq, seq);
    EXPECT_EQ(sha256_file(out), sha);
    std::filesystem::remove(out);
  }
  // A seq in the middle opens in DuckDB with the data it had then.
  {
    uint64_t mid = head / 2;
    RestoreTarget t;
    t.seq = mid;
    restore(*store, "db", dir / "mid.duckdb", t, rop);
    EXPECT_EQ(sha256_file(dir / "mid.duckdb"), sha_at[mid]);
    EXPECT_NO_THROW(fingerprint_file(dir / "mid.duckdb"));
  }
  // To a time: the last segment created at or before it.
  {
    uint64_t mid = head / 2;
    RestoreTarget t;
    t.time_ms = time_at[mid] + 500;  // between this step's pushes and the next step's
    uint64_t expect = mid;
    while (sha_at.count(expect + 1) && time_at[expect + 1] <= *t.time_ms) ++expect;
    auto r = restore(*store, "db", dir / "at-time.duckdb", t, rop);
    EXPECT_EQ(r.position.seq, expect);
    EXPECT_EQ(sha256_file(dir / "at-time.duckdb"), sha_at[expect]);
  }
  // A follower that starts late begins from the newest snapshot.
  {
    Follower late(store, "db", dir / "late.duckdb", fo);
    late.poll_once();
    EXPECT_EQ(late.position().seq, head);
    EXPECT_EQ(sha256_file(dir / "late.duckdb"), sha256_file(leader_path));
  }

  // Closing the leader checkpoints nothing new (the WAL is empty) and leaves
  // the follower where it is.
  conn.reset();
  leader.reset();
  rep->sync();
  follower.poll_once();
  EXPECT_EQ(sha256_file(dir / "follower.duckdb"), sha256_file(leader_path));
}

INSTANTIATE_TEST_SUITE_P(Stores, EndToEnd, ::testing::ValuesIn(test::e2e_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock
