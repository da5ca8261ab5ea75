// The `duckblock` command line and the log segments (the commits between
// two checkpoints, shipped from FILE.wal): ls lists them, verify checks
// them, prune keeps what the window needs, restore picks the right one.
// The real binary on real files with a file:// store.
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_util.h"
#include "duckblock/io.h"
#include "duckblock/wal.h"
#include "test_util.h"

namespace duckblock {
namespace {

using test::cli_run;
using test::CliRun;
using test::describe;
using test::file_digest;
namespace fs = std::filesystem;

class CliLog : public ::testing::Test {
 protected:
  std::string store_url() const { return "file://" + dir / "store"; }
  CliRun run(const std::string& cmd, std::vector<std::string> args) {
    return cli_run(test::cli_args(cmd, args, {"--store", store_url(), "--db", "db"}), dir.path(), {});
  }
  nlohmann::json json_of(const CliRun& r) {
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << describe(r);
      return {};
    }
  }
  std::string log_path(uint64_t base, uint64_t index) const { return dir / ("store/" + log_key("", "db", base, index)); }
  void write_text(const std::string& path, const std::string& text) {
    write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  std::string text_of(const std::string& path) {
    auto b = read_file(path);
    return {b.begin(), b.end()};
  }
  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  // Sets a store object's time (prune goes by the store's object times).
  void age(const std::string& path, int64_t seconds_ago) {
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = now_ms() / 1000 - seconds_ago;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path;
  }

  test::TempDir dir;
  test::DbBytes bytes{7};
};

// A store with checkpoint 0 and its log (two pushes of a growing
// app.duckdb.wal), then checkpoint 1 (a snapshot) and its log.
TEST_F(CliLog, LsVerifyAndPruneKnowTheLog) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  write_text(db + ".wal", std::string(3000, 'a'));
  auto p1 = run("push", {db, "--json"});
  ASSERT_EQ(p1.rc, 0) << describe(p1);
  EXPECT_TRUE(json_of(p1).at("log_shipped").get<bool>());
  write_text(db + ".wal", std::string(3000, 'a') + std::string(2000, 'b'));
  ASSERT_EQ(run("push", {db}).rc, 0);
  // The checkpoint folds the log into the file; DuckDB starts a new log.
  bytes.modify(db);
  ::unlink((db + ".wal").c_str());
  auto p2 = run("push", {db, "--snapshot-every", "1"});
  ASSERT_EQ(p2.rc, 0) << describe(p2);
  std::string v1 = bytes.digest();
  write_text(db + ".wal", std::string(1000, 'c'));
  ASSERT_EQ(run("push", {db}).rc, 0);

  auto ls = run("ls", {"--json"});
  ASSERT_EQ(ls.rc, 0) << describe(ls);
  auto lj = json_of(ls);
  ASSERT_EQ(lj.at("log").size(), 2u) << ls.out;
  EXPECT_EQ(lj.at("log")[0].at("base_seq"), 0);
  ASSERT_EQ(lj.at("log")[0].at("segments").size(), 2u);
  EXPECT_EQ(lj.at("log")[0].at("segments")[1].at("index"), 2);
  EXPECT_EQ(lj.at("log")[0].at("segments")[1].at("key"), log_key("", "db", 0, 2));
  EXPECT_GT(lj.at("log")[0].at("segments")[1].at("size").get<uint64_t>(), 5000u);
  EXPECT_TRUE(lj.at("log")[0].at("segments")[1].contains("modified"));
  EXPECT_EQ(lj.at("log")[1].at("base_seq"), 1);
  auto lt = run("ls", {});
  ASSERT_EQ(lt.rc, 0) << describe(lt);
  EXPECT_NE(lt.out.find(log_key("", "db", 1, 1)), std::string::npos) << describe(lt);
  EXPECT_NE(lt.out.find("3 log segments over 2 bases"), std::string::npos) << describe(lt);

  auto v = run("verify", {"--json"});
  ASSERT_EQ(v.rc, 0) << describe(v);
  EXPECT_EQ(json_of(v).at("log_segments"), 3);

  // A flipped byte in a log segment: verify names it, exit 3.
  std::string victim = log_path(0, 2);
  auto good = read_file(victim);
  auto bad = good;
  bad[bad.size() / 2] ^= 0x10;
  write_file_atomic(victim, bad);
  auto vb = run("verify", {});
  EXPECT_EQ(vb.rc, 3) << describe(vb);
  EXPECT_NE(vb.out.find(log_key("", "db", 0, 2)), std::string::npos) << describe(vb);
  write_file_atomic(victim, good);

  // A gap: segment 3 of base 1 without segment 2.
  fs::copy_file(log_path(1, 1), log_path(1, 3));
  auto vg = run("verify", {});
  EXPECT_EQ(vg.rc, 3) << describe(vg);
  EXPECT_NE(vg.out.find("has a gap: segment 2 missing"), std::string::npos) << describe(vg);
  fs::remove(log_path(1, 3));

  // A segment that says base 1 but names another checksum for it (the log
  // of another checkpoint or database), and one naming the wrong previous.
  {
    auto first = decode_log_segment(read_file(log_path(1, 1)));
    std::string data = "zz";
    LogSegmentHeader h = first.header;
    h.index = 2;
    h.prev_checksum = first.checksum;
    h.base_checksum ^= 1;
    h.offset = h.length;
    h.length = data.size();
    uint64_t c = 0;
    write_file_atomic(log_path(1, 2), encode_log_segment(h, reinterpret_cast<const uint8_t*>(data.data()), &c));
    auto vf = run("verify", {"--json"});
    EXPECT_EQ(vf.rc, 3) << describe(vf);
    EXPECT_NE(vf.out.find("the log of another checkpoint"), std::string::npos) << describe(vf);
    h.base_checksum ^= 1;
    h.prev_checksum ^= 1;
    write_file_atomic(log_path(1, 2), encode_log_segment(h, reinterpret_cast<const uint8_t*>(data.data()), &c));
    auto vp = run("verify", {});
    EXPECT_EQ(vp.rc, 3) << describe(vp);
    EXPECT_NE(vp.out.find("does not name the checksum of segment 1"), std::string::npos) << describe(vp);
    fs::remove(log_path(1, 2));
    // The log of a checkpoint the chain does not have (head is 1).
    h = first.header;
    h.base_seq = 7;
    fs::create_directories(fs::path(log_path(7, 1)).parent_path());
    write_file_atomic(log_path(7, 1), encode_log_segment(h, first.data.data(), &c));
    auto vh = run("verify", {});
    EXPECT_EQ(vh.rc, 3) << describe(vh);
    EXPECT_NE(vh.out.find("nothing to apply this log to"), std::string::npos) << describe(vh);
    fs::remove_all(fs::path(log_path(7, 1)).parent_path());
  }
  ASSERT_EQ(run("verify", {}).rc, 0);
  auto old_log = read_file(log_path(0, 1));

  // Checkpoint 0 and its log reached the store 10 h ago, checkpoint 1 8 h
  // ago, its log 7 h ago.
  for (const auto& e : fs::recursive_directory_iterator(dir / "store/db")) {
    if (e.is_regular_file()) age(e.path().string(), 8 * 3600);
  }
  age(dir / "store/db/0001/0000000000000000.hadbp", 10 * 3600);
  age(log_path(0, 1), 10 * 3600);
  age(log_path(0, 2), 10 * 3600 - 60);
  age(log_path(1, 1), 7 * 3600);

  // A window reaching back 9 h holds points between checkpoints 0 and 1:
  // the log of base 0 stays.
  auto keep9 = run("prune", {"--keep", "9h", "--min-snapshots", "1", "--dry-run", "--json"});
  ASSERT_EQ(keep9.rc, 0) << describe(keep9);
  EXPECT_TRUE(json_of(keep9).at("removed").empty()) << keep9.out;

  // From 5 h ago, checkpoint 1 is the oldest point needed: snapshot 0 and
  // the log of base 0 go; the log of base 1 stays.
  auto dry = run("prune", {"--keep", "5h", "--min-snapshots", "1", "--dry-run", "--json"});
  ASSERT_EQ(dry.rc, 0) << describe(dry);
  auto dj = json_of(dry);
  EXPECT_EQ(dj.at("oldest_restorable_seq"), 1);
  ASSERT_EQ(dj.at("removed").size(), 3u) << dry.out;
  int logs = 0;
  for (const auto& r : dj.at("removed")) {
    if (r.at("kind") == "log") {
      ++logs;
      EXPECT_EQ(r.at("seq"), 0);
    }
  }
  EXPECT_EQ(logs, 2);
  EXPECT_TRUE(fs::exists(log_path(0, 1)));  // a dry run deletes nothing

  auto real = run("prune", {"--keep", "5h", "--min-snapshots", "1"});
  ASSERT_EQ(real.rc, 0) << describe(real);
  EXPECT_NE(real.out.find("deleted 3 objects"), std::string::npos) << describe(real);
  EXPECT_FALSE(fs::exists(log_path(0, 1)));
  EXPECT_FALSE(fs::exists(log_path(0, 2)));
  EXPECT_TRUE(fs::exists(log_path(1, 1)));
  auto after = run("verify", {});
  EXPECT_EQ(after.rc, 0) << describe(after);
  // A sound log left behind under a checkpoint no snapshot reaches any more
  // is no break, but verify says prune removes it, and prune does.
  fs::create_directories(fs::path(log_path(0, 1)).parent_path());
  write_file_atomic(log_path(0, 1), old_log);
  auto left = run("verify", {});
  EXPECT_EQ(left.rc, 0) << describe(left);
  EXPECT_NE(left.out.find("the log of base seq 0 cannot be restored"), std::string::npos) << describe(left);
  auto again = run("prune", {"--keep", "5h", "--min-snapshots", "1"});
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_FALSE(fs::exists(log_path(0, 1))) << describe(again);
  auto r = run("restore", {"--to", dir / "r.duckdb"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(file_digest(dir / "r.duckdb"), v1);
  EXPECT_EQ(text_of(dir / "r.duckdb.wal"), std::string(1000, 'c'));
}

// latest = the newest log segment; --time T = the newest log segment created
// at or before T of the checkpoint restore picks for T; --seq N = checkpoint
// N exactly. The CLI has no clock to fake: real times, a second apart.
TEST_F(CliLog, RestoreByTimeAndSeqPicksTheLogOfThatPoint) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  std::string v0 = bytes.digest();
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); };
  std::string wal1 = std::string(4000, 'x');
  write_text(db + ".wal", wal1);
  ASSERT_EQ(run("push", {db}).rc, 0);
  pause();
  int64_t t1 = now_ms();  // after the first push, before the second
  pause();
  std::string wal2 = wal1 + std::string(3000, 'y');
  write_text(db + ".wal", wal2);
  ASSERT_EQ(run("push", {db}).rc, 0);
  pause();
  int64_t t2 = now_ms();  // after the second push, before checkpoint 1
  pause();
  bytes.modify(db);
  ::unlink((db + ".wal").c_str());
  ASSERT_EQ(run("push", {db}).rc, 0);
  std::string v1 = bytes.digest();
  std::string wal3 = std::string(500, 'z');
  write_text(db + ".wal", wal3);
  ASSERT_EQ(run("push", {db}).rc, 0);

  struct Case {
    std::vector<std::string> args;
    std::string file;
    std::optional<std::string> wal;  // nullopt: no PATH.wal
    uint64_t seq;
  };
  std::vector<Case> cases = {
      {{}, v1, wal3, 1},
      {{"--time", std::to_string(t1)}, v0, wal1, 0},
      {{"--time", std::to_string(t2)}, v0, wal2, 0},
      {{"--seq", "0"}, v0, std::nullopt, 0},
      {{"--seq", "1"}, v1, std::nullopt, 1},
  };
  int n = 0;
  for (const auto& c : cases) {
    std::string out = dir / ("r" + std::to_string(n++) + ".duckdb");
    auto args = c.args;
    args.insert(args.end(), {"--to", out, "--json"});
    auto r = run("restore", args);
    ASSERT_EQ(r.rc, 0) << describe(r);
    EXPECT_EQ(json_of(r).at("seq"), c.seq) << r.out;
    EXPECT_EQ(file_digest(out), c.file) << r.out;
    if (c.wal) {
      ASSERT_TRUE(fs::exists(out + ".wal")) << r.out;
      EXPECT_EQ(text_of(out + ".wal"), *c.wal) << r.out;
    } else {
      EXPECT_FALSE(fs::exists(out + ".wal")) << r.out;
    }
  }
}

// A replica followed with its log, then followed --checkpoints-only past a
// newer checkpoint: the log of the old checkpoint must not stay beside the
// file (DuckDB would replay it onto the new checkpoint).
TEST_F(CliLog, FollowingCheckpointsOnlyDropsAnEarlierLog) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  write_text(db + ".wal", std::string(3000, 'a'));
  ASSERT_EQ(run("push", {db}).rc, 0);
  std::string replica = dir / "replica.duckdb";
  auto f1 = run("follow", {"--to", replica, "--once"});
  ASSERT_EQ(f1.rc, 0) << describe(f1);
  ASSERT_EQ(text_of(replica + ".wal"), std::string(3000, 'a'));
  bytes.modify(db);
  ::unlink((db + ".wal").c_str());
  ASSERT_EQ(run("push", {db}).rc, 0);
  auto f2 = run("follow", {"--to", replica, "--once", "--checkpoints-only"});
  ASSERT_EQ(f2.rc, 0) << describe(f2);
  EXPECT_EQ(file_digest(replica), bytes.digest());
  EXPECT_FALSE(fs::exists(replica + ".wal")) << "a log of checkpoint 0 beside checkpoint 1";
  EXPECT_FALSE(fs::exists(replica + ".duckblock-log"));
}

}  // namespace
}  // namespace duckblock
