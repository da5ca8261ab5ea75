// Promotion: a follower takes over the chain (add_continuing) and writes the
// next segments from its own DuckDB; a second follower follows across the
// handover; the old leader's late write is fenced and changes nothing.
#include <gtest/gtest.h>

#include <filesystem>

#include "duckblock/duckdb_capture.h"
#include "duckblock/error.h"
#include "duckblock/follower.h"
#include "duckblock/restore.h"
#include "duckdb_test_util.h"
#include "test_util.h"

namespace duckblock {
namespace {

using duckdb_integration::CaptureOptions;
using duckdb_integration::open_replicated;
using duckdb_test::fingerprint;
using duckdb_test::fingerprint_file;
using duckdb_test::run;
using duckdb_test::sha256_file;
using test::TempDir;

std::shared_ptr<Replicator> make_replicator(std::shared_ptr<ObjectStore> store, const std::string& spool) {
  ReplicatorOptions o;
  o.spool_dir = spool;
  o.snapshots.every_segments = 3;
  o.snapshots.every_bytes = 0;
  return std::make_shared<Replicator>(std::move(store), o);
}

void checkpointed_step(duckdb::Connection& con, const duckdb_test::Step& step) {
  for (const auto& sql : step.sql) run(con, sql);
  run(con, "CHECKPOINT");
}

TEST(Promotion, FollowerTakesOverSecondFollowerFollowsOldLeaderIsFenced) {
  TempDir dir;
  std::shared_ptr<ObjectStore> store = make_local_store(dir / "store");
  const auto steps = duckdb_test::workload(0.25);
  const size_t handover = 5;

  // The first leader, and two followers.
  auto rep1 = make_replicator(store, dir / "spool1");
  auto leader1 = open_replicated(dir / "a.duckdb", rep1, "db");
  auto con1 = std::make_unique<duckdb::Connection>(leader1->db());
  Follower f1(store, "db", dir / "b.duckdb");
  Follower f2(store, "db", dir / "c.duckdb");
  for (size_t i = 0; i < handover; ++i) {
    checkpointed_step(*con1, steps[i]);
    rep1->sync();
    f1.poll_once();
    f2.poll_once();
    ASSERT_EQ(sha256_file(dir / "b.duckdb"), sha256_file(dir / "a.duckdb")) << steps[i].name;
    ASSERT_EQ(sha256_file(dir / "c.duckdb"), sha256_file(dir / "a.duckdb")) << steps[i].name;
  }
  const uint64_t handover_seq = list_chain(*store, "", "db").head_seq();

  // Promotion of follower 1: it applies everything the store has, stops,
  // and its DuckDB continues the chain from that position.
  ChainPosition pos = f1.catch_up_and_stop();
  EXPECT_EQ(pos.seq, handover_seq);
  std::filesystem::remove(dir / "b.duckdb.wal");
  auto rep2 = make_replicator(store, dir / "spool2");
  CaptureOptions co;
  co.continuing = pos;
  auto leader2 = open_replicated(dir / "b.duckdb", rep2, "db", nullptr, co);
  auto con2 = std::make_unique<duckdb::Connection>(leader2->db());
  EXPECT_EQ(fingerprint(*con2), fingerprint(*con1)) << "the promoted follower holds the old leader's data";
  for (size_t i = handover; i < steps.size(); ++i) {
    checkpointed_step(*con2, steps[i]);
    rep2->sync();
    // Follower 2 never noticed the handover: the chain just goes on.
    f2.poll_once();
    ASSERT_EQ(sha256_file(dir / "c.duckdb"), sha256_file(dir / "b.duckdb")) << steps[i].name;
  }
  ChainListing chain = list_chain(*store, "", "db");
  const uint64_t head = chain.head_seq();
  EXPECT_GT(head, handover_seq);
  for (uint64_t i = 0; i < chain.incrementals.size(); ++i) ASSERT_EQ(chain.incrementals[i].seq, i + 1);
  EXPECT_FALSE(leader2->stats().last_error);
  duckdb_test::copy_file(dir / "c.duckdb", dir / "reader.duckdb");
  EXPECT_EQ(fingerprint_file(dir / "reader.duckdb"), fingerprint(*con2));

  // The old leader, unaware, checkpoints again. Its segment reaches its own
  // spool (DuckDB's checkpoint never waits for the network), but the store
  // already holds that seq with the new leader's bytes: the upload is fenced.
  run(*con1, "INSERT INTO t VALUES (-99, 99, 'late')");
  run(*con1, "CHECKPOINT");
  try {
    rep1->sync("db", std::chrono::seconds(60));
    FAIL() << "the old leader's late segment was not fenced";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFenced) << e.what();
  }
  EXPECT_TRUE(rep1->status("db").fenced);
  // Nothing it wrote is visible: the chain and follower 2 are unchanged.
  EXPECT_EQ(list_chain(*store, "", "db").head_seq(), head);
  f2.poll_once();
  EXPECT_EQ(sha256_file(dir / "c.duckdb"), sha256_file(dir / "b.duckdb"));

  // Restarted, the old leader is refused outright: the store moved past its
  // spool.
  con1.reset();
  leader1.reset();
  rep1.reset();
  auto rep1b = make_replicator(store, dir / "spool1");
  try {
    open_replicated(dir / "a.duckdb", rep1b, "db");
    FAIL() << "a deposed leader re-registered";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFenced) << e.what();
  }
  EXPECT_EQ(list_chain(*store, "", "db").head_seq(), head);
}

}  // namespace
}  // namespace duckblock
