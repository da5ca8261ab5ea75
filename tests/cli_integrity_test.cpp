// Nothing silently wrong: the cases of a careful, unlucky user against the
// command line (issue 10, chain integrity). Each one exits 0 only with a
// right result; otherwise with the documented code and a message saying why.
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "test_util.h"

namespace duckblock {
namespace {

namespace fs = std::filesystem;
using test::CliRun, test::describe, test::file_digest;

class CliIntegrity : public ::testing::Test {
 protected:
  std::string url() const { return "file://" + dir / "store"; }
  CliRun run(const std::string& cmd, std::vector<std::string> args, const std::string& db = "db") {
    return test::cli_run(test::cli_args(cmd, args, {"--store", url(), "--db", db}), dir.path());
  }
  std::string key(const std::string& db, bool snapshot, uint64_t seq) const {
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.hadbp", static_cast<unsigned long long>(seq));
    return dir / ("store/" + db + (snapshot ? "/0001/" : "/0000/") + name);
  }
  // A database at `seqs` incrementals after its seq-0 snapshot; its bytes at
  // each seq in `versions`.
  void build(const std::string& db, const std::string& file, test::DbBytes& b, int seqs,
             std::map<uint64_t, std::string>* versions = nullptr, int snapshot_every = 100) {
    b.write(file, 12);
    auto r = run("snapshot", {file}, db);
    ASSERT_EQ(r.rc, 0) << describe(r);
    if (versions) (*versions)[0] = b.digest();
    for (int i = 1; i <= seqs; ++i) {
      b.modify(file);
      r = run("push", {file, "--snapshot-every", std::to_string(snapshot_every)}, db);
      ASSERT_EQ(r.rc, 0) << describe(r);
      if (versions) (*versions)[i] = b.digest();
    }
  }
  void copy(const std::string& from, const std::string& to) {
    fs::create_directories(fs::path(to).parent_path());
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  }
  // Every segment but those in `recent` reached the store 10 hours ago.
  void age_segments(const std::set<uint64_t>& recent) {
    int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
    for (const auto& e : fs::recursive_directory_iterator(dir / "store")) {
      if (!e.is_regular_file() || e.path().extension() != ".hadbp") continue;
      uint64_t seq = std::stoull(e.path().stem().string(), nullptr, 16);
      timespec ts[2];
      ts[0].tv_sec = ts[1].tv_sec = now_s - (recent.count(seq) ? 0 : 10 * 3600);
      ts[0].tv_nsec = ts[1].tv_nsec = 0;
      ASSERT_EQ(::utimensat(AT_FDCWD, e.path().c_str(), ts, 0), 0);
    }
  }
  std::map<std::string, std::string> store_files() const {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir / "store")) {
      if (e.is_regular_file()) out[e.path().string()] = file_digest(e.path().string());
    }
    return out;
  }

  test::TempDir dir;
  test::DbBytes ours{7}, theirs{8};
};

// Another database's seq-0 snapshot in place of ours.
TEST_F(CliIntegrity, AnotherDatabasesSnapshotIsRefusedByVerifyRestoreAndFollow) {
  build("db", dir / "app.duckdb", ours, 2);
  build("other", dir / "other.duckdb", theirs, 0);
  copy(key("other", true, 0), key("db", true, 0));
  auto v = run("verify", {});
  EXPECT_EQ(v.rc, 3) << describe(v);
  auto r0 = run("restore", {"--to", dir / "r0", "--seq", "0"});
  EXPECT_EQ(r0.rc, 3) << describe(r0);
  EXPECT_FALSE(fs::exists(dir / "r0"));
  auto r = run("restore", {"--to", dir / "r"});
  EXPECT_EQ(r.rc, 3) << describe(r);
  EXPECT_FALSE(fs::exists(dir / "r"));
  auto f = run("follow", {"--to", dir / "f", "--once"});
  EXPECT_EQ(f.rc, 3) << describe(f);
  EXPECT_NE(f.err.find("does not belong to this chain"), std::string::npos) << describe(f);
}

// verify --deep rebuilds a point in a temp file and checks it against the
// chain's whole-file digest; a digest that disagrees is a break (exit 3),
// and restore refuses the point the same way, publishing nothing.
TEST_F(CliIntegrity, VerifyDeepChecksAPointAgainstItsWholeFileDigest) {
  build("db", dir / "app.duckdb", ours, 2);
  auto ok = run("verify", {"--deep", "--json"});
  ASSERT_EQ(ok.rc, 0) << describe(ok);
  EXPECT_EQ(nlohmann::json::parse(ok.out)["deep"]["digest"], "verified") << ok.out;
  copy(dir / "store/db/digest/0000000000000001.json", dir / "store/db/digest/0000000000000002.json");
  auto bad = run("verify", {"--deep"});
  EXPECT_EQ(bad.rc, 3) << describe(bad);
  auto r = run("restore", {"--to", dir / "r"});
  EXPECT_EQ(r.rc, 3) << describe(r);
  EXPECT_FALSE(fs::exists(dir / "r"));
  auto at1 = run("verify", {"--deep", "--seq", "1"});
  EXPECT_EQ(at1.rc, 0) << describe(at1);
}

// A snapshot of another chain at the same seq, and an incremental copied
// under a snapshot key: refused, and restore falls back to an older
// snapshot plus incrementals, giving the right bytes and saying so.
TEST_F(CliIntegrity, ForeignOrMisplacedSnapshotIsRefusedAndRestoreFallsBack) {
  std::map<uint64_t, std::string> v;
  build("db", dir / "app.duckdb", ours, 4, &v, 2);
  build("other", dir / "other.duckdb", theirs, 2, nullptr, 2);
  ASSERT_TRUE(fs::exists(key("db", true, 2)));
  copy(key("other", true, 2), key("db", true, 2));
  auto two = run("restore", {"--to", dir / "two", "--seq", "2"});
  ASSERT_EQ(two.rc, 0) << describe(two);
  EXPECT_EQ(file_digest(dir / "two"), v[2]);
  EXPECT_NE(two.err.find("warning"), std::string::npos) << describe(two);

  // Incremental 4 under the snapshot key of seq 4.
  copy(key("db", false, 4), key("db", true, 4));
  auto head = run("restore", {"--to", dir / "head", "--json"});
  ASSERT_EQ(head.rc, 0) << describe(head);
  EXPECT_EQ(file_digest(dir / "head"), v[4]);
  auto j = nlohmann::json::parse(head.out);
  EXPECT_EQ(j.at("snapshot_seq"), 0);
  EXPECT_EQ(j.at("skipped_snapshots").size(), 2u);
  auto verify = run("verify", {});
  EXPECT_EQ(verify.rc, 3) << describe(verify);
  auto f = run("follow", {"--to", dir / "f", "--once"});
  ASSERT_EQ(f.rc, 0) << describe(f);
  EXPECT_EQ(file_digest(dir / "f"), v[4]);
}

// The store's database deleted and rebuilt by another leader to the same
// head: the follower and the old leader both refuse it.
TEST_F(CliIntegrity, RebuiltDatabaseIsNeverTakenForOurs) {
  std::string a = dir / "a/app.duckdb";
  fs::create_directories(dir / "a");
  build("db", a, ours, 3);
  auto f = run("follow", {"--to", dir / "replica", "--once"});
  ASSERT_EQ(f.rc, 0) << describe(f);
  std::string replica_before = file_digest(dir / "replica");

  fs::remove_all(dir / "store/db");
  std::string b = dir / "b/app.duckdb";
  fs::create_directories(dir / "b");
  build("db", b, theirs, 3);
  auto files = store_files();

  auto again = run("follow", {"--to", dir / "replica", "--once"});
  EXPECT_EQ(again.rc, 3) << describe(again);
  EXPECT_EQ(again.out.find("caught-up"), std::string::npos) << describe(again);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << describe(again);
  EXPECT_EQ(file_digest(dir / "replica"), replica_before);

  ours.modify(a);
  auto push = run("push", {a});
  EXPECT_EQ(push.rc, 3) << describe(push);
  EXPECT_NE(push.err.find("another chain"), std::string::npos) << describe(push);
  EXPECT_EQ(store_files(), files) << "push appended to a chain that is not its own";

  auto forced = run("follow", {"--to", dir / "replica", "--once", "--force"});
  ASSERT_EQ(forced.rc, 0) << describe(forced);
  EXPECT_EQ(file_digest(dir / "replica"), theirs.digest());
}

// state.json naming a wrong chain checksum, and a damaged object at the
// store's head: push refuses rather than append a link nobody can follow.
TEST_F(CliIntegrity, PushChecksItsStateAndTheStoresHeadBeforeAppending) {
  std::string a = dir / "app.duckdb";
  build("db", a, ours, 2);
  std::string state_path = dir / ".duckblock-spool/db/state.json";
  auto state_bytes = read_file(state_path);
  auto state = nlohmann::json::parse(state_bytes.begin(), state_bytes.end());
  std::string good = state.at("checksum");
  state["checksum"] = "0123456789abcdef";
  test::write_text(state_path, state.dump());
  auto files = store_files();
  ours.modify(a);
  auto bad_state = run("push", {a});
  EXPECT_EQ(bad_state.rc, 3) << describe(bad_state);
  EXPECT_EQ(store_files(), files);

  state["checksum"] = good;
  test::write_text(state_path, state.dump());
  auto head = read_file(key("db", false, 2));
  head.resize(head.size() - 5);  // a damaged head object
  write_file_atomic(key("db", false, 2), head);
  files = store_files();
  auto damaged = run("push", {a});
  EXPECT_EQ(damaged.rc, 3) << describe(damaged);
  EXPECT_NE(damaged.err.find("damaged"), std::string::npos) << describe(damaged);
  EXPECT_EQ(store_files(), files);
}

// A replica that something else wrote to (as a DuckDB opened read-write
// would) is detected before anything is applied; --force restores afresh.
TEST_F(CliIntegrity, ReplicaChangedBehindTheFollowersBackIsDetected) {
  std::string a = dir / "app.duckdb";
  build("db", a, ours, 1);
  std::string replica = dir / "replica";
  auto f = run("follow", {"--to", replica, "--once"});
  ASSERT_EQ(f.rc, 0) << describe(f);
  // A checkpoint of another writer: a new header and a block.
  auto bytes = read_file(replica);
  bytes[4096 + 10] ^= 0xff;
  bytes[9 * 4096 + 1] ^= 0xff;
  {
    FileSink out(replica + ".tmp");
    out.write(bytes.data(), bytes.size());
    out.close();
  }
  fs::rename(replica + ".tmp", replica);
  std::string changed = file_digest(replica);
  ours.modify(a);
  ASSERT_EQ(run("push", {a}).rc, 0);
  auto again = run("follow", {"--to", replica, "--once"});
  EXPECT_EQ(again.rc, 3) << describe(again);
  EXPECT_NE(again.err.find("changed since"), std::string::npos) << describe(again);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << describe(again);
  EXPECT_EQ(file_digest(replica), changed) << "applied onto a file that was changed";
  auto forced = run("follow", {"--to", replica, "--once", "--force"});
  ASSERT_EQ(forced.rc, 0) << describe(forced);
  EXPECT_EQ(file_digest(replica), ours.digest());
}

// The newest snapshot the window relies on is damaged: prune keeps the
// older path, and every point in the window stays restorable.
TEST_F(CliIntegrity, PruneNeverDeletesTheOnlyRestorablePath) {
  std::map<uint64_t, std::string> v;
  std::string a = dir / "app.duckdb";
  build("db", a, ours, 5, &v, 2);  // snapshots 0, 2, 4
  auto snap = read_file(key("db", true, 4));
  snap[snap.size() / 2] ^= 0x01;
  write_file_atomic(key("db", true, 4), snap);
  age_segments({5});  // every object but seq 5 is older than the window
  auto p = run("prune", {"--keep", "1h", "--min-snapshots", "1", "--json"});
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_NE(p.err.find("warning"), std::string::npos) << describe(p);
  for (uint64_t seq : {4, 5}) {
    std::string out = dir / ("p" + std::to_string(seq));
    auto r = run("restore", {"--to", out, "--seq", std::to_string(seq)});
    ASSERT_EQ(r.rc, 0) << seq << describe(r);
    EXPECT_EQ(file_digest(out), v[seq]) << seq;
  }
  // A damaged incremental inside the window: prune deletes nothing.
  auto inc = read_file(key("db", false, 5));
  inc[inc.size() / 2] ^= 0x01;
  write_file_atomic(key("db", false, 5), inc);
  auto files = store_files();
  auto refused = run("prune", {"--keep", "1h", "--min-snapshots", "1"});
  EXPECT_EQ(refused.rc, 3) << describe(refused);
  EXPECT_EQ(store_files(), files);
}

// The window's snapshot is the head: prune keeps the incremental at its seq,
// which binds it to the chain, and the chain stays restorable and extendable.
TEST_F(CliIntegrity, PruneKeepsTheIncrementalThatBindsTheOldestSnapshot) {
  std::map<uint64_t, std::string> v;
  std::string a = dir / "app.duckdb";
  build("db", a, ours, 2, &v, 2);  // snapshots 0 and 2; head 2
  age_segments({});
  auto p = run("prune", {"--keep", "1h", "--min-snapshots", "1"});
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_FALSE(fs::exists(key("db", true, 0)));
  EXPECT_FALSE(fs::exists(key("db", false, 1)));
  EXPECT_TRUE(fs::exists(key("db", false, 2)));
  auto v1 = run("verify", {});
  EXPECT_EQ(v1.rc, 0) << describe(v1);
  auto f = run("follow", {"--to", dir / "f", "--once"});
  ASSERT_EQ(f.rc, 0) << describe(f);
  EXPECT_EQ(file_digest(dir / "f"), v[2]);
  ours.modify(a);
  ASSERT_EQ(run("push", {a}).rc, 0);
  auto again = run("follow", {"--to", dir / "f", "--once"});
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(file_digest(dir / "f"), ours.digest());
}

}  // namespace
}  // namespace duckblock
