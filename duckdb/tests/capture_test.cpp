// The capture file system against a real DuckDB: which pages it reports,
// when it pushes, and that the file is a consistent database at each push.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "duckblock/duckdb_capture.h"
#include "duckblock/error.h"
#include "duckblock/restore.h"
#include "duckdb_test_util.h"
#include "test_util.h"

namespace duckblock {
namespace {

using duckdb_integration::CaptureOptions;
using duckdb_integration::open_replicated;
using duckdb_integration::PushEvent;
using duckdb_test::fingerprint;
using duckdb_test::fingerprint_file;
using duckdb_test::run;
using test::TempDir;

struct Seen {
  PushEvent::Reason reason;
  PushResult result;
  uint64_t candidates;
  uint64_t file_length;
  std::string copy;  // the file as it was at the push
};

// Records every push, copying the file through the reader it was pushed with.
struct Recorder {
  explicit Recorder(std::string dir) : dir(std::move(dir)) {}
  std::string dir;
  std::vector<Seen> seen;
  CaptureOptions options() {
    CaptureOptions o;
    o.on_push = [this](const PushEvent& ev) {
      Seen s{ev.reason, ev.result, ev.candidate_pages, ev.file_length, dir + "/push" + std::to_string(seen.size())};
      std::vector<uint8_t> buf(ev.file_length);
      EXPECT_EQ(ev.reader->read_at(0, buf.data(), buf.size()), buf.size());
      FileSink out(s.copy);
      out.write(buf.data(), buf.size());
      out.close();
      seen.push_back(std::move(s));
    };
    return o;
  }
};

class CaptureTest : public ::testing::Test {
 protected:
  std::shared_ptr<Replicator> make_replicator() {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    return std::make_shared<Replicator>(store, o);
  }
  TempDir dir;
  std::shared_ptr<ObjectStore> store = make_memory_store();
};

TEST_F(CaptureTest, PushesAtEachCheckpointWithTheWrittenPagesAndAConsistentFile) {
  Recorder rec(dir.path());
  auto rep = make_replicator();
  auto db = open_replicated(dir / "leader.duckdb", rep, "leader", nullptr, rec.options());
  ASSERT_TRUE(db->capture().started());
  duckdb::Connection con(db->db());

  run(con, "CREATE TABLE t AS SELECT range AS id, md5(range::VARCHAR) AS s FROM range(50000)");
  run(con, "CHECKPOINT");
  ASSERT_FALSE(rec.seen.empty());
  const Seen first = rec.seen.back();  // a copy: rec.seen grows
  EXPECT_EQ(first.reason, PushEvent::Reason::kCheckpoint);
  EXPECT_GT(first.result.seq, 0u);
  // The header page moved, and DuckDB's blocks sit at 12288 + k * 256 KiB:
  // the segment carries the header and whole changed blocks' pages only.
  EXPECT_GT(first.result.pages, 1u);
  EXPECT_LE(first.result.pages, first.candidates);
  EXPECT_EQ(fingerprint_file(first.copy), fingerprint(con));

  // A checkpoint with nothing to do writes no header and pushes nothing.
  size_t before = rec.seen.size();
  run(con, "CHECKPOINT");
  EXPECT_EQ(rec.seen.size(), before);

  // One row changes: far fewer pages than the file has.
  run(con, "UPDATE t SET s = 'x' WHERE id = 7");
  run(con, "CHECKPOINT");
  // One push (two if DuckDB also cut free blocks off the end).
  ASSERT_GE(rec.seen.size(), before + 1);
  const Seen small = rec.seen[before];
  EXPECT_EQ(small.reason, PushEvent::Reason::kCheckpoint);
  EXPECT_GT(small.result.seq, first.result.seq);
  // Only pages whose bytes changed ship, a subset of those DuckDB wrote.
  EXPECT_LE(small.result.pages, small.candidates);
  EXPECT_LT(small.result.pages * 4096, small.file_length);
  EXPECT_EQ(fingerprint_file(small.copy), fingerprint(con));

  // The stats count what happened.
  auto st = db->stats();
  EXPECT_EQ(st.last_seq, rec.seen.back().result.seq);
  EXPECT_EQ(st.pending_pages, 0u);
  EXPECT_FALSE(st.last_error);
}

// A large append writes its row groups straight into free blocks of the
// file and its log entry only points at them: those blocks ship at the
// append's COMMIT (the log's fsync), as a segment of their own before the
// log, since a follower replaying the log needs them. The file is
// consistent then (the header still names the last checkpoint).
TEST_F(CaptureTest, ShipsTheBlocksALargeAppendWritesAtItsCommit) {
  Recorder rec(dir.path());
  auto rep = make_replicator();
  // No automatic checkpoint: DuckDB may otherwise checkpoint at the
  // append's COMMIT when it estimates a large WAL, and this test is about
  // the blocks written before a header covers them.
  duckdb::DBConfig cfg;
  cfg.SetOptionByName("checkpoint_threshold", duckdb::Value("100GB"));
  auto db = open_replicated(dir / "leader.duckdb", rep, "leader", &cfg, rec.options());
  duckdb::Connection con(db->db());
  run(con, "CREATE TABLE t (id BIGINT, s VARCHAR)");
  run(con, "CHECKPOINT");
  size_t before = rec.seen.size();
  run(con, "INSERT INTO t SELECT range, md5(range::VARCHAR) FROM range(1000000)");
  auto mid = db->stats();
  ASSERT_EQ(rec.seen.size(), before + 1) << "the append's blocks must ship once, at its commit";
  EXPECT_GT(rec.seen.back().result.pages, 64u);
  EXPECT_EQ(mid.pending_pages, 0u);
  EXPECT_GT(mid.log_syncs, 0u);
  run(con, "CHECKPOINT");
  ASSERT_GT(rec.seen.size(), before);
  EXPECT_EQ(db->stats().pending_pages, 0u);
  EXPECT_EQ(fingerprint_file(rec.seen.back().copy), fingerprint(con));
  // Everything shipped so far restores to the same file.
  rep->sync();
  restore(*store, "leader", dir / "restored.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "restored.duckdb"), duckdb_test::sha256_file(rec.seen.back().copy));
}

TEST_F(CaptureTest, ShipsTheShorterLengthWhenDuckDBTruncates) {
  Recorder rec(dir.path());
  auto rep = make_replicator();
  auto db = open_replicated(dir / "leader.duckdb", rep, "leader", nullptr, rec.options());
  duckdb::Connection con(db->db());
  run(con, "CREATE TABLE keep AS SELECT range AS id FROM range(1000)");
  run(con, "CHECKPOINT");
  run(con, "CREATE TABLE big AS SELECT range AS id, random() AS r FROM range(2000000)");
  run(con, "CHECKPOINT");
  uint64_t big_len = std::filesystem::file_size(dir / "leader.duckdb");
  run(con, "DROP TABLE big");
  run(con, "CHECKPOINT");
  // The blocks DROP freed become free at this checkpoint or the next.
  run(con, "INSERT INTO keep VALUES (1)");
  run(con, "CHECKPOINT");
  uint64_t len = std::filesystem::file_size(dir / "leader.duckdb");
  ASSERT_LT(len, big_len) << "DuckDB did not shrink the file; the test needs a workload that does";
  auto it = std::find_if(rec.seen.begin(), rec.seen.end(),
                         [](const Seen& s) { return s.reason == PushEvent::Reason::kTruncate; });
  ASSERT_NE(it, rec.seen.end()) << "no push after the truncate";
  EXPECT_GT(it->result.seq, 0u);
  EXPECT_EQ(it->result.pages, 0u) << "a truncate ships the length alone";
  EXPECT_LT(it->file_length, big_len);
  EXPECT_EQ(rec.seen.back().file_length, len);
  for (const Seen& s : rec.seen) {
    // Every state pushed is a database DuckDB opens.
    EXPECT_NO_THROW(fingerprint_file(s.copy)) << s.copy;
  }
  EXPECT_EQ(fingerprint_file(rec.seen.back().copy), fingerprint(con));
}

TEST_F(CaptureTest, TrimmedFreeBlocksShipAsZeros) {
  // With trim_free_blocks DuckDB punches holes in blocks a checkpoint frees,
  // right after the header's fsync: those pages change (to zeros) outside
  // any block write, and a follower must still end up byte-identical.
  Recorder rec(dir.path());
  auto rep = make_replicator();
  duckdb::DBConfig cfg;
  cfg.options.trim_free_blocks = true;  // DBConfigOptions only, no SQL setting
  auto db = open_replicated(dir / "leader.duckdb", rep, "leader", &cfg, rec.options());
  duckdb::Connection con(db->db());
  run(con, "CREATE TABLE keep AS SELECT range AS id FROM range(1000)");
  run(con, "CREATE TABLE big AS SELECT range AS id, random() AS r FROM range(1000000)");
  run(con, "CHECKPOINT");
  run(con, "CREATE TABLE tail AS SELECT range AS id FROM range(1000)");
  run(con, "CHECKPOINT");
  run(con, "DROP TABLE big");
  run(con, "CHECKPOINT");
  run(con, "INSERT INTO keep VALUES (1)");
  run(con, "CHECKPOINT");
  rep->sync();
  restore(*store, "leader", dir / "restored.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "restored.duckdb"), duckdb_test::sha256_file(dir / "leader.duckdb"));
  EXPECT_EQ(fingerprint_file(dir / "restored.duckdb"), fingerprint(con));
}

TEST_F(CaptureTest, ShutdownCheckpointIsShippedAndAReopenContinuesTheChain) {
  auto rep = make_replicator();
  {
    auto db = open_replicated(dir / "leader.duckdb", rep, "leader");
    duckdb::Connection con(db->db());
    run(con, "CREATE TABLE t AS SELECT range AS id FROM range(10000)");
    run(con, "CHECKPOINT");
    // Left in the WAL: DuckDB checkpoints it when the database closes.
    run(con, "INSERT INTO t VALUES (-1)");
  }
  rep->sync();
  std::string closed = duckdb_test::sha256_file(dir / "leader.duckdb");
  ASSERT_FALSE(std::filesystem::exists(dir / "leader.duckdb.wal")) << "DuckDB left its WAL: no shutdown checkpoint";
  restore(*store, "leader", dir / "r1.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "r1.duckdb"), closed);

  // Reopened with the same replicator: the chain continues.
  {
    auto db = open_replicated(dir / "leader.duckdb", rep, "leader");
    duckdb::Connection con(db->db());
    run(con, "INSERT INTO t VALUES (-2)");
    run(con, "CHECKPOINT");
  }
  rep->sync();
  restore(*store, "leader", dir / "r2.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "r2.duckdb"), duckdb_test::sha256_file(dir / "leader.duckdb"));
  EXPECT_EQ(fingerprint_file(dir / "r2.duckdb"), fingerprint_file(dir / "leader.duckdb"));
}

// A clean close (the shutdown checkpoint shipped, nothing written after it)
// records its proof in the spool; the reopen's add() trusts it instead of
// hashing the whole file, in the same replicator (DETACH and ATTACH) and in
// a new one (another run), and the chain goes on byte-identical.
TEST_F(CaptureTest, AReopenAfterACleanCloseSkipsTheWholeFileComparison) {
  const std::string path = dir / "leader.duckdb";
  const std::string record = dir / "spool/leader/clean.json";
  auto rep = make_replicator();
  {
    auto db = open_replicated(path, rep, "leader");
    EXPECT_TRUE(rep->status("leader").full_compare_at_add);  // a new database
    {
      duckdb::Connection con(db->db());
      run(con, "CREATE TABLE t AS SELECT range AS id FROM range(100000)");
      run(con, "CHECKPOINT");
      run(con, "INSERT INTO t VALUES (-1)");  // checkpointed at close
    }
    db->close();
    EXPECT_TRUE(db->stats().clean_close) << db->stats().last_error.value_or("");
  }
  ASSERT_TRUE(std::filesystem::exists(record));
  {
    auto db = open_replicated(path, rep, "leader");
    EXPECT_FALSE(rep->status("leader").full_compare_at_add);
    EXPECT_FALSE(std::filesystem::exists(record)) << "the open consumes the record";
    duckdb::Connection con(db->db());
    run(con, "INSERT INTO t VALUES (-2)");
    run(con, "CHECKPOINT");
  }
  rep->sync();
  rep.reset();  // another run of the program, with a replicator of its own
  ASSERT_TRUE(std::filesystem::exists(record));
  rep = make_replicator();
  {
    auto db = open_replicated(path, rep, "leader");
    EXPECT_FALSE(rep->status("leader").full_compare_at_add);
    duckdb::Connection con(db->db());
    run(con, "DELETE FROM t WHERE id < 10");
    run(con, "CHECKPOINT");
  }
  rep->sync();
  restore(*store, "leader", dir / "r.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "r.duckdb"), duckdb_test::sha256_file(path));
  EXPECT_EQ(fingerprint_file(dir / "r.duckdb"), fingerprint_file(path));
}

// Commits left in a .wal after the clean close (DuckDB run without
// replication, its shutdown checkpoint disabled): the file alone no longer
// says what the database holds, so the reopen compares the whole file and
// the replica ends up with the commits.
TEST_F(CaptureTest, AWalBesideTheFileAfterACleanCloseMeansAWholeFileComparison) {
  const std::string path = dir / "leader.duckdb";
  auto rep = make_replicator();
  {
    auto db = open_replicated(path, rep, "leader");
    run(*std::make_unique<duckdb::Connection>(db->db()), "CREATE TABLE t AS SELECT range AS id FROM range(1000)");
    db->close();
    ASSERT_TRUE(db->stats().clean_close);
  }
  {
    duckdb::DuckDB plain(path);
    duckdb::Connection con(plain);
    run(con, "PRAGMA disable_checkpoint_on_shutdown");
    run(con, "INSERT INTO t VALUES (-7)");
  }
  ASSERT_TRUE(std::filesystem::exists(path + ".wal"));
  {
    auto db = open_replicated(path, rep, "leader");
    EXPECT_TRUE(rep->status("leader").full_compare_at_add);
    duckdb::Connection con(db->db());
    run(con, "CHECKPOINT");
  }
  rep->sync();
  restore(*store, "leader", dir / "r.duckdb");
  EXPECT_EQ(duckdb_test::sha256_file(dir / "r.duckdb"), duckdb_test::sha256_file(path));
  duckdb::DuckDB replica(dir / "r.duckdb");
  duckdb::Connection con(replica);
  auto r = con.Query("SELECT count(*) FROM t WHERE id = -7");
  ASSERT_FALSE(r->HasError()) << r->GetError();
  EXPECT_EQ(r->GetValue(0, 0).GetValue<int64_t>(), 1);
}

TEST_F(CaptureTest, AutoCheckpointIsCaptured) {
  auto rep = make_replicator();
  duckdb::DBConfig cfg;
  cfg.SetOptionByName("checkpoint_threshold", duckdb::Value("1MB"));
  auto db = open_replicated(dir / "leader.duckdb", rep, "leader", &cfg);
  duckdb::Connection con(db->db());
  run(con, "CREATE TABLE t (id BIGINT, s VARCHAR)");
  uint64_t segments_before = db->stats().segments;
  // Small inserts go to the WAL; past the threshold DuckDB checkpoints by
  // itself, with no CHECKPOINT statement.
  for (int i = 0; i < 40; ++i) {
    run(con, "INSERT INTO t SELECT range, md5(range::VARCHAR) FROM range(" + std::to_string(i * 1000) + ", " +
                 std::to_string(i * 1000 + 1000) + ")");
  }
  EXPECT_GT(db->stats().segments, segments_before);
}

TEST_F(CaptureTest, RejectsWhatCannotBeReplicated) {
  auto rep = make_replicator();
  EXPECT_ERROR_KIND(open_replicated(":memory:", rep, "m"), ErrorKind::kInvalidArgument);
  duckdb::DBConfig ro;
  ro.options.access_mode = duckdb::AccessMode::READ_ONLY;
  EXPECT_ERROR_KIND(open_replicated(dir / "x.duckdb", rep, "x", &ro), ErrorKind::kInvalidArgument);
  duckdb::DBConfig own;
  own.file_system = duckdb::FileSystem::CreateLocal();
  EXPECT_ERROR_KIND(open_replicated(dir / "y.duckdb", rep, "y", &own), ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace duckblock
