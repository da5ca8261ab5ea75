// The `duckblock` command line end to end: the real binary, spawned as a
// separate process on real files with a file:// store, checked by exit
// status, output and the bytes it leaves behind. (S3 flows: cli_s3_test.cpp.)
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/temp_files.h"
#include "test_util.h"

namespace duckblock {
namespace {

using test::cli_run;
using test::CliRun;
using test::describe;
using test::file_digest;
namespace fs = std::filesystem;

class Cli : public ::testing::Test {
 protected:
  std::string store_url() const { return "file://" + dir / "store"; }
  std::vector<std::string> store_args(const std::string& db = "db") const {
    return {"--store", store_url(), "--db", db};
  }
  CliRun run(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
    return cli_run(args, dir.path(), env);
  }
  CliRun run_store(const std::string& cmd, std::vector<std::string> args, const std::string& db = "db") {
    return run(test::cli_args(cmd, args, store_args(db)));
  }
  // Every file under the store directory with its size and digest.
  std::map<std::string, std::string> store_files() const {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir / "store")) {
      if (e.is_regular_file()) out[e.path().string()] = file_digest(e.path().string());
    }
    return out;
  }
  nlohmann::json json_of(const CliRun& r) {
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << describe(r);
      return {};
    }
  }

  test::TempDir dir;
  test::DbBytes bytes{42};
};

TEST_F(Cli, HelpOnEveryCommandHasExamples) {
  auto top = run({"--help"});
  EXPECT_EQ(top.rc, 0) << describe(top);
  for (const char* cmd : {"snapshot", "push", "restore", "follow", "ls", "verify", "prune"}) {
    auto r = run({cmd, "--help"});
    EXPECT_EQ(r.rc, 0) << cmd << describe(r);
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << cmd << describe(r);
    EXPECT_NE(top.out.find(cmd), std::string::npos) << cmd;
  }
  auto bad = run({"restore", "--no-such-flag"});
  EXPECT_EQ(bad.rc, 2) << describe(bad);
}

TEST_F(Cli, SnapshotPushFollowAndRestoreBySeqAndTime) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 40);
  std::map<uint64_t, std::string> version;  // seq -> digest of the file at that point

  auto snap = run_store("snapshot", {db, "--json"});
  ASSERT_EQ(snap.rc, 0) << describe(snap);
  EXPECT_TRUE(json_of(snap).at("new_database").get<bool>());
  EXPECT_EQ(json_of(snap).at("seq"), 0);
  version[0] = bytes.digest();

  // A follower starts from the snapshot.
  auto f0 = run_store("follow", {"--to", dir / "follower.duckdb", "--once"});
  ASSERT_EQ(f0.rc, 0) << describe(f0);
  EXPECT_NE(f0.out.find("caught-up seq 0"), std::string::npos) << describe(f0);
  EXPECT_EQ(file_digest(dir / "follower.duckdb"), version[0]);

  int64_t between = 0;  // a time after seq 1 was created and before seq 2
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    bytes.modify(db);
    auto push = run_store("push", {db, "--json"});
    ASSERT_EQ(push.rc, 0) << describe(push);
    auto j = json_of(push);
    EXPECT_EQ(j.at("seq"), seq);
    EXPECT_EQ(j.at("segments"), 1);
    version[seq] = bytes.digest();
    if (seq == 1) {
      between = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
      // Segment times have millisecond resolution: the next push must land
      // on a later millisecond than `between`.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // Nothing changed: push ships nothing.
  auto again = run_store("push", {db, "--json"});
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(json_of(again).at("segments"), 0);

  // The follower continues from its journal.
  auto f3 = run_store("follow", {"--to", dir / "follower.duckdb", "--once"});
  ASSERT_EQ(f3.rc, 0) << describe(f3);
  EXPECT_NE(f3.out.find("seq 3 checksum"), std::string::npos) << describe(f3);
  EXPECT_EQ(file_digest(dir / "follower.duckdb"), version[3]);

  for (uint64_t seq = 0; seq <= 3; ++seq) {
    std::string out = dir / ("seq" + std::to_string(seq) + ".duckdb");
    auto r = run_store("restore", {"--to", out, "--seq", std::to_string(seq), "--json"});
    ASSERT_EQ(r.rc, 0) << describe(r);
    EXPECT_EQ(json_of(r).at("seq"), seq);
    EXPECT_EQ(file_digest(out), version[seq]) << seq;
  }
  // By time, as epoch milliseconds and as RFC 3339 with an offset.
  auto t1 = run_store("restore", {"--to", dir / "t1.duckdb", "--time", std::to_string(between), "--json"});
  ASSERT_EQ(t1.rc, 0) << describe(t1);
  EXPECT_EQ(json_of(t1).at("seq"), 1);
  EXPECT_EQ(file_digest(dir / "t1.duckdb"), version[1]);
  {
    std::time_t secs = (between + 3600 * 1000) / 1000;
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03d+01:00", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(between % 1000));
    auto t2 = run_store("restore", {"--to", dir / "t2.duckdb", "--time", buf});
    ASSERT_EQ(t2.rc, 0) << buf << describe(t2);
    EXPECT_EQ(file_digest(dir / "t2.duckdb"), version[1]) << buf;
  }
  // Latest, via the environment instead of flags.
  auto latest = run({"restore", "--to", dir / "latest.duckdb"},
                    {{"DUCKBLOCK_STORE", store_url()}, {"DUCKBLOCK_DB", "db"}});
  ASSERT_EQ(latest.rc, 0) << describe(latest);
  EXPECT_EQ(file_digest(dir / "latest.duckdb"), version[3]);

  // A snapshot at the head: the next restore needs no incrementals.
  auto snap3 = run_store("snapshot", {db, "--json"});
  ASSERT_EQ(snap3.rc, 0) << describe(snap3);
  EXPECT_TRUE(json_of(snap3).at("snapshot").get<bool>());
  auto r3 = run_store("restore", {"--to", dir / "latest.duckdb", "--force", "--json"});
  ASSERT_EQ(r3.rc, 0) << describe(r3);
  EXPECT_EQ(json_of(r3).at("snapshot_seq"), 3);
  EXPECT_EQ(json_of(r3).at("segments_applied"), 0);
  EXPECT_EQ(file_digest(dir / "latest.duckdb"), version[3]);

  // ls: the databases, then the chain.
  auto dbs = run({"ls", "--store", store_url(), "--json"});
  ASSERT_EQ(dbs.rc, 0) << describe(dbs);
  auto dj = json_of(dbs);
  ASSERT_EQ(dj.at("databases").size(), 1u);
  EXPECT_EQ(dj.at("databases")[0].at("db"), "db");
  EXPECT_EQ(dj.at("databases")[0].at("head_seq"), 3);
  auto ls = run_store("ls", {"--json"});
  ASSERT_EQ(ls.rc, 0) << describe(ls);
  auto lj = json_of(ls);
  EXPECT_EQ(lj.at("head_seq"), 3);
  ASSERT_EQ(lj.at("snapshots").size(), 2u);
  EXPECT_EQ(lj.at("snapshots")[1].at("seq"), 3);
  ASSERT_EQ(lj.at("incrementals").size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(lj.at("incrementals")[i].at("seq"), i + 1);
    EXPECT_GT(lj.at("incrementals")[i].at("size").get<uint64_t>(), 0u);
  }
  auto text = run_store("ls", {});
  EXPECT_NE(text.out.find("db/0000/0000000000000002.hadbp"), std::string::npos) << describe(text);

  auto v = run_store("verify", {"--json"});
  ASSERT_EQ(v.rc, 0) << describe(v);
  EXPECT_TRUE(json_of(v).at("ok").get<bool>());
}

TEST_F(Cli, FollowStopsCleanlyOnSigint) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  std::string out = dir / "follow.out", err = dir / "follow.err";
  auto args = test::cli_args("follow", {"--to", dir / "f.duckdb", "--interval", "50ms"}, store_args());
  pid_t pid = test::cli_spawn(args, dir.path(), {}, out, err);
  ASSERT_TRUE(test::wait_for_text(err, "polling every", pid)) << test::slurp(err);
  bytes.modify(db);
  auto push = run_store("push", {db});
  ASSERT_EQ(push.rc, 0) << describe(push);
  ASSERT_TRUE(test::wait_for_text(out, "seq 1 checksum", pid)) << test::slurp(out) << test::slurp(err);
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::cli_wait(pid), 0) << test::slurp(err);
  EXPECT_NE(test::slurp(out).find("stopped seq 1"), std::string::npos) << test::slurp(out);
  EXPECT_NE(test::slurp(err).find("stopped by SIGINT"), std::string::npos) << test::slurp(err);
  EXPECT_EQ(file_digest(dir / "f.duckdb"), bytes.digest());

  // SIGTERM too, and the journal lets it resume where it stopped.
  pid = test::cli_spawn(args, dir.path(), {}, out, err);
  ASSERT_TRUE(test::wait_for_text(err, "at seq 1", pid)) << test::slurp(err);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(test::cli_wait(pid), 0) << test::slurp(err);
  EXPECT_NE(test::slurp(err).find("stopped by SIGTERM"), std::string::npos) << test::slurp(err);
}

// Two runs on one target interleaved their writes: a restore reported seq 3
// over a file that was neither seq 3 nor the head, and two follows broke
// the replica. While a follow runs, another follow or a restore of its
// target fails at once (exit 9) naming the holder; after it, they work.
TEST_F(Cli, ASecondRestoreOrFollowOfOneTargetFailsAtOnce) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  std::string out = dir / "follow.out", err = dir / "follow.err";
  const std::string target = dir / "f.duckdb";
  pid_t pid = test::cli_spawn(test::cli_args("follow", {"--to", target, "--interval", "50ms"}, store_args()),
                              dir.path(), {}, out, err);
  ASSERT_TRUE(test::wait_for_text(err, "polling every", pid)) << test::slurp(err);
  const std::string holder = "(pid " + std::to_string(pid) + " on ";
  for (const auto& args : std::vector<std::vector<std::string>>{{"follow", "--once", "--to", target},
                                                                {"restore", "--force", "--to", target}}) {
    auto r = run_store(args[0], {args.begin() + 1, args.end()});
    EXPECT_EQ(r.rc, 9) << describe(r);
    EXPECT_NE(r.err.find(target + " is being restored or followed by another duckblock " + holder), std::string::npos)
        << describe(r);
  }
  ::kill(pid, SIGTERM);
  EXPECT_EQ(test::cli_wait(pid), 0) << test::slurp(err);
  auto r = run_store("restore", {"--force", "--to", target});
  EXPECT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(file_digest(target), bytes.digest());
}

TEST_F(Cli, VerifyNamesACorruptedObjectAndRestoreRefusesIt) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 24);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  for (int i = 0; i < 3; ++i) {
    bytes.modify(db);
    ASSERT_EQ(run_store("push", {db}).rc, 0);
  }
  ASSERT_EQ(run_store("verify", {}).rc, 0);
  // One flipped bit in the middle of incremental 2, as a bad disk would.
  std::string victim = dir / "store/db/0000/0000000000000002.hadbp";
  auto bytes = read_file(victim);
  ASSERT_GT(bytes.size(), 100u);
  bytes[bytes.size() / 2] ^= 0x01;
  write_file_atomic(victim, bytes);

  auto v = run_store("verify", {});
  EXPECT_EQ(v.rc, 3) << describe(v);
  EXPECT_NE(v.err.find("broken at seq 2"), std::string::npos) << describe(v);
  EXPECT_NE(v.err.find("db/0000/0000000000000002.hadbp"), std::string::npos) << describe(v);
  auto vj = run_store("verify", {"--json"});
  EXPECT_EQ(vj.rc, 3) << describe(vj);
  auto j = json_of(vj);
  EXPECT_FALSE(j.at("ok").get<bool>());
  EXPECT_EQ(j.at("first_break").at("seq"), 2);
  EXPECT_EQ(j.at("first_break").at("key"), "db/0000/0000000000000002.hadbp");

  // A restore through the bad object fails and leaves the existing file.
  std::string existing = dir / "existing.duckdb";
  write_file_atomic(existing, std::vector<uint8_t>(5000, 7));
  std::string before = file_digest(existing);
  auto r = run_store("restore", {"--to", existing, "--force"});
  EXPECT_EQ(r.rc, 3) << describe(r);
  EXPECT_EQ(file_digest(existing), before);
  // A point before the damage still restores.
  auto ok = run_store("restore", {"--to", dir / "one.duckdb", "--seq", "1"});
  EXPECT_EQ(ok.rc, 0) << describe(ok);
}

TEST_F(Cli, PruneDryRunChangesNothingAndPruneKeepsTheWindowRestorable) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  std::map<uint64_t, std::string> version;
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  version[0] = bytes.digest();
  for (uint64_t seq = 1; seq <= 8; ++seq) {
    bytes.modify(db);
    auto r = run_store("push", {db, "--snapshot-every", "2"});
    ASSERT_EQ(r.rc, 0) << describe(r);
    version[seq] = bytes.digest();
  }
  // Pretend seq k reached the store (10 - k) hours ago: prune goes by the
  // store's object times.
  int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& e : fs::recursive_directory_iterator(dir / "store")) {
    if (!e.is_regular_file()) continue;
    uint64_t seq = std::stoull(e.path().stem().string(), nullptr, 16);
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = now_s - int64_t(10 - seq) * 3600;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    ASSERT_EQ(::utimensat(AT_FDCWD, e.path().c_str(), ts, 0), 0);
  }
  auto ls = json_of(run_store("ls", {"--json"}));
  ASSERT_EQ(ls.at("snapshots").size(), 5u);  // 0, 2, 4, 6, 8

  // The window starts 5.5 hours ago, between seq 4 and 5: every point from
  // seq 4 on must stay restorable, so the snapshot at 4 is the oldest kept.
  auto files = store_files();
  auto dry = run_store("prune", {"--keep", "5h30m", "--min-snapshots", "1", "--dry-run", "--json"});
  ASSERT_EQ(dry.rc, 0) << describe(dry);
  auto dj = json_of(dry);
  EXPECT_EQ(dj.at("oldest_restorable_seq"), 4);
  EXPECT_EQ(dj.at("removed").size(), 6u);  // incrementals 1-4, snapshots 0 and 2
  EXPECT_EQ(store_files(), files) << "a dry run deleted something";

  auto real = run_store("prune", {"--keep", "5h30m", "--min-snapshots", "1"});
  ASSERT_EQ(real.rc, 0) << describe(real);
  EXPECT_NE(real.out.find("deleted 6 objects"), std::string::npos) << describe(real);
  for (uint64_t seq = 4; seq <= 8; ++seq) {
    std::string out = dir / ("p" + std::to_string(seq));
    auto r = run_store("restore", {"--to", out, "--seq", std::to_string(seq)});
    ASSERT_EQ(r.rc, 0) << seq << describe(r);
    EXPECT_EQ(file_digest(out), version[seq]) << seq;
  }
  auto gone = run_store("restore", {"--to", dir / "old", "--seq", "3"});
  EXPECT_EQ(gone.rc, 4) << describe(gone);
  EXPECT_NE(gone.err.find("pruned"), std::string::npos) << describe(gone);
  auto v = run_store("verify", {});
  EXPECT_EQ(v.rc, 0) << describe(v);
}

TEST_F(Cli, BadInputFailsClearlyAndLeavesLocalFilesUntouched) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  std::string existing = dir / "existing.duckdb";
  write_file_atomic(existing, std::vector<uint8_t>(9000, 3));
  auto snapshot_of_dir = [&] {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::directory_iterator(dir.path())) {
      if (e.is_regular_file()) out[e.path().filename().string()] = file_digest(e.path().string());
    }
    return out;
  };
  auto before = snapshot_of_dir();

  struct Case {
    std::vector<std::string> args;
    int rc;
    std::string says;
  };
  std::string bad_store = "file://" + dir / "bad-store";
  std::vector<Case> cases = {
      {{"restore", "--store", "ftp://host/x", "--db", "db", "--to", existing, "--force"}, 2, "unknown store URL"},
      {{"push", db, "--store", "file://relative/dir", "--db", "db"}, 2, "absolute path"},
      {{"ls"}, 2, "no store given: pass --store"},
      {{"restore", "--db", "db", "--to", existing, "--force"}, 2, "no store given"},
      {{"verify", "--store", store_url()}, 2, "no database given: pass --db"},
      {{"restore", "--store", store_url(), "--db", "nope", "--to", existing, "--force"}, 4, "has no database 'nope'"},
      {{"follow", "--store", store_url(), "--db", "nope", "--to", existing, "--force", "--once"}, 4,
       "has no database 'nope'"},
      {{"ls", "--store", "file://" + dir / "no-such-dir"}, 4, "does not exist"},
      {{"restore", "--store", store_url(), "--db", "db", "--to", existing}, 5, "pass --force"},
      {{"follow", "--store", store_url(), "--db", "db", "--to", existing, "--once"}, 5, "not a duckblock replica"},
      {{"snapshot", dir / "missing.duckdb", "--store", store_url(), "--db", "db"}, 4, "does not exist"},
      {{"restore", "--store", store_url(), "--db", "db", "--to", existing, "--force", "--time", "yesterday"}, 2,
       "bad time"},
      {{"restore", "--store", store_url(), "--db", "db", "--to", existing, "--force", "--seq", "99"}, 4,
       "past the chain's head"},
      {{"prune", "--store", store_url(), "--db", "db", "--keep", "forever"}, 2, "bad duration"},
      {{"restore", "--store", store_url(), "--db", "../etc", "--to", existing, "--force"}, 2, ""},
      {{"restore", "--store", "s3://some-bucket/../other/", "--db", "db", "--to", existing, "--force"}, 2,
       "'..' is not allowed as a path segment"},
      {{"push", db, "--store", "file://" + dir / "x/../store", "--db", "db"}, 2, "'..' path segment"},
      // S3 without credentials (HOME has no ~/.aws, the environment no keys).
      {{"restore", "--store", "s3://some-bucket/x/", "--db", "db", "--to", existing, "--force"}, 6,
       "AWS_ACCESS_KEY_ID"},
      // A corrupt store: an object that is not a segment at all.
      {{"restore", "--store", bad_store, "--db", "db", "--to", existing, "--force"}, 3,
       "db/0001/0000000000000000.hadbp"},
      {{"follow", "--store", bad_store, "--db", "db", "--to", existing, "--force", "--once"}, 3, "magic"},
      {{"verify", "--store", bad_store, "--db", "db"}, 3, "db/0001/0000000000000000.hadbp"},
      {{"push", db, "--store", bad_store, "--db", "db", "--spool", dir / "bad-spool"}, 3, "magic"},
  };
  fs::create_directories(dir / "bad-store/db/0001");
  test::write_text(dir / "bad-store/db/0001/0000000000000000.hadbp",
                   "this is not a segment, but it is long enough to have a header and more bytes");
  for (const auto& c : cases) {
    auto r = run(c.args);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.rc, c.rc) << cmd << describe(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << cmd << describe(r);
    if (c.args[0] != "verify") {  // verify prints its report of the breaks
      EXPECT_EQ(r.out, "") << cmd << "printed a result on failure";
    }
    EXPECT_EQ(snapshot_of_dir(), before) << cmd << "changed a local file";
  }
  // An unreachable S3 endpoint: the client retries, then says so.
  auto r = run({"restore", "--store", "s3://some-bucket/x/", "--db", "db", "--to", existing, "--force", "--endpoint",
                "http://127.0.0.1:1"},
               {{"AWS_ACCESS_KEY_ID", "k"}, {"AWS_SECRET_ACCESS_KEY", "s"}});
  EXPECT_EQ(r.rc, 7) << describe(r);
  EXPECT_NE(r.err.find("reachable"), std::string::npos) << describe(r);
  EXPECT_EQ(snapshot_of_dir(), before);
  // A line break in a credential would inject a request header: refused
  // before any request, and the value is not printed.
  auto inject = run({"restore", "--store", "s3://some-bucket/x/", "--db", "db", "--to", existing, "--force",
                     "--endpoint", "http://127.0.0.1:1"},
                    {{"AWS_ACCESS_KEY_ID", "k"}, {"AWS_SECRET_ACCESS_KEY", "s"},
                     {"AWS_SESSION_TOKEN", "TokenValue\r\nX-Injected: yes"}});
  EXPECT_EQ(inject.rc, 2) << describe(inject);
  EXPECT_NE(inject.err.find("AWS_SESSION_TOKEN contains a control character"), std::string::npos) << describe(inject);
  EXPECT_EQ(inject.err.find("TokenValue"), std::string::npos) << describe(inject);
  EXPECT_EQ(snapshot_of_dir(), before);
}

TEST_F(Cli, StaleWalIsRemovedOnlyWithForce) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  std::string target = dir / "r.duckdb";
  write_file_atomic(target + ".wal", std::vector<uint8_t>(100, 1));
  auto refused = run_store("restore", {"--to", target});
  EXPECT_EQ(refused.rc, 5) << describe(refused);
  EXPECT_NE(refused.err.find(".wal exists"), std::string::npos) << describe(refused);
  EXPECT_TRUE(fs::exists(target + ".wal"));
  EXPECT_FALSE(fs::exists(target));
  auto forced = run_store("restore", {"--to", target, "--force"});
  EXPECT_EQ(forced.rc, 0) << describe(forced);
  EXPECT_NE(forced.err.find("removed stale"), std::string::npos) << describe(forced);
  EXPECT_FALSE(fs::exists(target + ".wal"));
  EXPECT_EQ(file_digest(target), bytes.digest());
}

TEST_F(Cli, ConfigFileSuppliesDefaultsAndFlagsWin) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  fs::create_directories(dir / ".config/duckblock");
  test::write_text(dir / ".config/duckblock/config.json",
                   "{\"store\": \"" + store_url() + "\", \"db\": \"fromconfig\"}");
  auto snap = run({"snapshot", db, "--json"});
  ASSERT_EQ(snap.rc, 0) << describe(snap);
  EXPECT_EQ(json_of(snap).at("db"), "fromconfig");
  // The environment wins over the file, a flag over both.
  auto env = run({"snapshot", db, "--json"}, {{"DUCKBLOCK_DB", "fromenv"}});
  ASSERT_EQ(env.rc, 0) << describe(env);
  EXPECT_EQ(json_of(env).at("db"), "fromenv");
  auto flag = run({"snapshot", db, "--db", "fromflag", "--json"}, {{"DUCKBLOCK_DB", "fromenv"}});
  ASSERT_EQ(flag.rc, 0) << describe(flag);
  EXPECT_EQ(json_of(flag).at("db"), "fromflag");
  // ls lists the default database's chain; --databases lists them all.
  EXPECT_EQ(json_of(run({"ls", "--json"})).at("db"), "fromconfig");
  auto ls = json_of(run({"ls", "--json", "--databases"}));
  EXPECT_EQ(ls.at("databases").size(), 3u);
  // --config after the subcommand, and a typo in a key is an error.
  std::string other = dir / "other.json";
  test::write_text(other, "{\"stroe\": \"file:///x\"}");
  auto typo = run({"ls", "--config", other});
  EXPECT_EQ(typo.rc, 2) << describe(typo);
  EXPECT_NE(typo.err.find("unknown key 'stroe'"), std::string::npos) << describe(typo);
  auto missing = run({"ls", "--config", dir / "nope.json"});
  EXPECT_EQ(missing.rc, 4) << describe(missing);
}

TEST_F(Cli, PushFromAnotherMachineContinuesTheChain) {
  // A second spool (another machine) has no state: push rebuilds it from the
  // store and ships only the difference.
  std::string db = dir / "app.duckdb";
  bytes.write(db, 12);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  bytes.modify(db);
  auto r = run_store("push", {db, "--spool", dir / "other-spool", "--json"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(json_of(r).at("seq"), 1);
  // The first spool is now behind the store: it is told, with what to do.
  bytes.modify(db);
  auto stale = run_store("push", {db});
  EXPECT_EQ(stale.rc, 8) << describe(stale);
  EXPECT_NE(stale.err.find("remove"), std::string::npos) << describe(stale);
  fs::remove_all(dir / ".duckblock-spool/db");
  auto fixed = run_store("push", {db, "--json"});
  ASSERT_EQ(fixed.rc, 0) << describe(fixed);
  EXPECT_EQ(json_of(fixed).at("seq"), 2);
  auto res = run_store("restore", {"--to", dir / "r.duckdb"});
  ASSERT_EQ(res.rc, 0) << describe(res);
  EXPECT_EQ(file_digest(dir / "r.duckdb"), bytes.digest());
}

// Temp files of runs killed with -9 (planted here; cli_s3_test.cpp kills a
// real restore) are removed by the next run in that directory: beside
// restore and follow targets, in verify's temp directory and in a local
// store (by the next write there, and by prune). Files of a live process,
// and recent ones from another host, stay.
TEST_F(Cli, StaleTempFilesOfKilledRunsAreRemovedByTheNextRun) {
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ::waitpid(dead, nullptr, 0);
  std::string host = temp_file_name("", "x").substr(0, 8);
  std::string other_host = host == "00000000" ? "00000001" : "00000000";
  auto plant = [](const std::string& path, bool old) {
    test::write_text(path, "partial download");
    if (old) {
      timeval tv[2] = {{::time(nullptr) - 2 * 86400, 0}, {::time(nullptr) - 2 * 86400, 0}};
      ::utimes(path.c_str(), tv);
    }
    return path;
  };
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  bytes.modify(db);

  fs::create_directories(dir / "t");
  std::string t = dir / "t";
  std::string killed = plant(t + "/.duckblock-dl-" + host + "-" + std::to_string(dead) + "-0-snapshot", false);
  std::string live = plant(t + "/.duckblock-dl-" + host + "-" + std::to_string(::getpid()) + "-0-1", false);
  std::string elsewhere = plant(t + "/.duckblock-dl-" + other_host + "-" + std::to_string(dead) + "-0-1", false);
  std::string elsewhere_old = plant(t + "/.duckblock-dl-" + other_host + "-7-0-1", true);
  std::string old_naming = plant(t + "/.duckblock-dl-1234-0-snapshot", true);
  std::string unrelated = plant(t + "/notes.txt", true);
  auto r = run_store("restore", {"--to", t + "/r.duckdb"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_FALSE(fs::exists(killed));
  EXPECT_FALSE(fs::exists(elsewhere_old));
  EXPECT_FALSE(fs::exists(old_naming));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(elsewhere));
  EXPECT_TRUE(fs::exists(unrelated));

  fs::create_directories(dir / "f");
  std::string f_killed = plant(dir / "f" + "/.duckblock-dl-" + host + "-" + std::to_string(dead) + "-3-2", false);
  auto fo = run_store("follow", {"--to", dir / "f/f.duckdb", "--once"});
  ASSERT_EQ(fo.rc, 0) << describe(fo);
  EXPECT_FALSE(fs::exists(f_killed));

  fs::create_directories(dir / "v");
  std::string v_killed = plant(dir / "v" + "/.duckblock-dl-" + host + "-" + std::to_string(dead) + "-0-verify", false);
  auto v = run_store("verify", {"--temp-dir", dir / "v"});
  ASSERT_EQ(v.rc, 0) << describe(v);
  EXPECT_FALSE(fs::exists(v_killed));
  EXPECT_TRUE(fs::is_empty(dir / "v"));

  // The local store: a push writing into db/0000 clears that directory...
  fs::create_directories(dir / "store/db/0000");
  std::string s_incr = plant(dir / "store/db/0000/.duckblock-tmp-" + host + "-" + std::to_string(dead) + "-0-1", false);
  ASSERT_EQ(run_store("push", {db}).rc, 0);
  EXPECT_FALSE(fs::exists(s_incr));
  // ...and prune sweeps the whole store (not in a dry run).
  std::string s_snap = plant(dir / "store/db/0001/.duckblock-tmp-" + host + "-" + std::to_string(dead) + "-5-9", false);
  std::string s_live = plant(dir / "store/db/0001/.duckblock-tmp-" + host + "-" + std::to_string(::getpid()) + "-5-9", false);
  auto dry = run_store("prune", {"--keep", "1000d", "--dry-run"});
  ASSERT_EQ(dry.rc, 0) << describe(dry);
  EXPECT_TRUE(fs::exists(s_snap));
  auto pr = run_store("prune", {"--keep", "1000d", "--json"});
  ASSERT_EQ(pr.rc, 0) << describe(pr);
  EXPECT_EQ(json_of(pr).at("temp_files_removed"), 1);
  EXPECT_FALSE(fs::exists(s_snap));
  EXPECT_TRUE(fs::exists(s_live));
}

// A 0600 database must not leak through its copies: spool files, local
// store objects, restored and followed files take the database file's mode
// (0640 gives 0640 the same way). From a store that keeps no modes (S3) a
// new restored file is 0600.
TEST_F(Cli, CopiesTakeTheDatabaseFilesMode) {
  mode_t old_umask = ::umask(022);
  auto mode_of = [](const std::string& path) { return int(fs::status(path).permissions() & fs::perms::mask); };
  for (int mode : {0600, 0640}) {
    std::string name = "m" + std::to_string(mode);
    std::string db = dir / (name + ".duckdb");
    bytes.write(db, 8);
    ASSERT_EQ(::chmod(db.c_str(), mode_t(mode)), 0);
    ASSERT_EQ(run_store("snapshot", {db}, name).rc, 0);
    bytes.modify(db);
    ASSERT_EQ(::chmod(db.c_str(), mode_t(mode)), 0);
    ASSERT_EQ(run_store("push", {db}, name).rc, 0);
    std::string spool = dir / ".duckblock-spool/" + name;
    EXPECT_EQ(mode_of(spool), mode == 0600 ? 0700 : 0750) << spool;
    int files = 0;
    for (const auto& e : fs::recursive_directory_iterator(spool)) {
      // The lock file holds only the holder's pid: always 0600.
      if (!e.is_regular_file() || e.path().filename() == "lock") continue;
      EXPECT_EQ(mode_of(e.path()), mode) << e.path();
      ++files;
    }
    EXPECT_GE(files, 3) << "state.json, pages.idx, origin.json";
    int objects = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir / ("store/" + name))) {
      // Segments hold the database's pages; chain.json (lineage and a
      // checksum) holds none of its contents.
      if (!e.is_regular_file() || e.path().extension() != ".hadbp") continue;
      EXPECT_EQ(mode_of(e.path()), mode) << e.path();
      ++objects;
    }
    EXPECT_EQ(objects, 2);  // the snapshot and incremental 1
    std::string restored = dir / (name + "-restored.duckdb");
    ASSERT_EQ(run_store("restore", {"--to", restored}, name).rc, 0);
    EXPECT_EQ(mode_of(restored), mode);
    std::string followed = dir / (name + "-followed.duckdb");
    ASSERT_EQ(run_store("follow", {"--to", followed, "--once"}, name).rc, 0);
    EXPECT_EQ(mode_of(followed), mode);
    EXPECT_EQ(file_digest(restored), bytes.digest());
  }
  ::umask(old_umask);
}

// `apply` and `inspect` on segment files as a user copies them out of a
// store: store order works as is, an unrelated file is not overwritten, a
// refused apply leaves nothing that breaks the next one, and a segment apply
// rejects is not called valid by inspect.
TEST_F(Cli, ApplyAndInspectTakeStoreOrderAndRefuseWhatApplyCannotUse) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  bytes.modify(db);
  ASSERT_EQ(run_store("push", {db}).rc, 0);
  std::string v1 = bytes.digest();
  bytes.modify(db);
  ASSERT_EQ(run_store("push", {db}).rc, 0);
  std::string snap = dir / "store/db/0001/0000000000000000.hadbp";
  std::string inc1 = dir / "store/db/0000/0000000000000001.hadbp";
  std::string inc2 = dir / "store/db/0000/0000000000000002.hadbp";

  // Store order, no --prev-checksum.
  std::string a = dir / "a.duckdb";
  auto r = run({"apply", a, snap, inc1});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(file_digest(a), v1);
  // A wrong --prev-checksum is refused and leaves the journal as it was.
  auto wrong = run({"apply", a, inc2, "--prev-checksum", "0123456789abcdef"});
  EXPECT_EQ(wrong.rc, 3) << describe(wrong);
  EXPECT_EQ(file_digest(a), v1);
  auto next = run({"apply", a, inc2});
  ASSERT_EQ(next.rc, 0) << describe(next);
  EXPECT_EQ(file_digest(a), bytes.digest());
  // The same on a new file: no journal is left behind by the refusal.
  std::string b = dir / "b.duckdb";
  EXPECT_EQ(run({"apply", b, inc1, "--prev-checksum", "0123456789abcdef"}).rc, 3);
  EXPECT_FALSE(fs::exists(b + ".duckblock"));
  auto fresh = run({"apply", b, snap, inc1, inc2});
  ASSERT_EQ(fresh.rc, 0) << describe(fresh);
  EXPECT_EQ(file_digest(b), bytes.digest());
  auto bad_hex = run({"apply", dir / "c.duckdb", snap, "--prev-checksum", "xyz"});
  EXPECT_EQ(bad_hex.rc, 2) << describe(bad_hex);

  // An unrelated existing file is not overwritten without --force.
  std::string mine = dir / "mine.duckdb";
  test::write_text(mine, "my own data, not a replica");
  std::string before = file_digest(mine);
  auto refused = run({"apply", mine, snap});
  EXPECT_EQ(refused.rc, 5) << describe(refused);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << describe(refused);
  EXPECT_EQ(file_digest(mine), before);
  EXPECT_FALSE(fs::exists(mine + ".duckblock"));
  EXPECT_EQ(run({"apply", mine, snap, "--force"}).rc, 0);

  // A file-length record of 3 bytes after a real page: inspect calls it
  // corrupt (exit 3), and apply refuses it before writing the page.
  SegmentHeader h;
  h.page_size = 4096;
  h.seq = 1;
  std::vector<Page> pages = {{2, std::vector<uint8_t>(4096, 0xee)}, {kFileLengthPageId, {0, 0, 1}}};
  uint64_t sum = 0;
  auto seg = encode_segment(h, pages, &sum);
  std::string bad = dir / "short-length.hadbp";
  write_file_atomic(bad, seg);
  auto ins = run({"inspect", bad});
  EXPECT_EQ(ins.rc, 3) << describe(ins);
  EXPECT_NE(ins.err.find("8 bytes"), std::string::npos) << describe(ins);
  std::string target = dir / "t.duckdb";
  ASSERT_EQ(run({"apply", target, snap}).rc, 0);
  std::string t_before = file_digest(target);
  auto ap = run({"apply", target, bad, "--prev-checksum", checksum_hex(0)});
  EXPECT_EQ(ap.rc, 3) << describe(ap);
  EXPECT_EQ(file_digest(target), t_before) << "apply wrote pages of a segment it then refused";
}

// Values a script might pass by mistake fail with exit 2 and say why,
// instead of wrapping, rolling over or reaching the file system.
TEST_F(Cli, OutOfRangeAndEmptyValuesAreUsageErrors) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  fs::create_directories(dir / "adir");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"restore", "--to", dir / "r.duckdb", "--seq", "-1"}, "not a whole number"},
      {{"restore", "--to", dir / "r.duckdb", "--seq", "99999999999999999999999"}, ""},
      {{"restore", "--to", dir / "r.duckdb", "--time", "2026-02-30"}, "has no day 30"},
      {{"restore", "--to", dir / "r.duckdb", "--time", "2025-02-29T10:00:00Z"}, "has no day 29"},
      {{"restore", "--to", dir / "r.duckdb", "--time", "2026-11-25T10:00:00+25:00"}, "zone offset"},
      {{"restore", "--to", ""}, "--to is empty"},
      {{"restore", "--to", dir / "adir", "--force"}, "is a directory"},
      {{"restore", "--to", dir / "adir/"}, "is a directory"},
      {{"follow", "--to", "", "--once"}, "--to is empty"},
      {{"follow", "--to", dir / "adir", "--once", "--force"}, "is a directory"},
      {{"push", db, "--snapshot-every", "-5"}, "not a whole number"},
      {{"push", db, "--retries", "-1"}, "not a whole number"},
      {{"prune", "--keep", "99999999999w"}, "bad duration"},
      {{"prune", "--keep", "7d", "--min-snapshots", "-2"}, "not a whole number"},
  };
  for (const auto& c : cases) {
    auto r = run_store(c.args[0], std::vector<std::string>(c.args.begin() + 1, c.args.end()));
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.rc, 2) << cmd << describe(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << cmd << describe(r);
    EXPECT_EQ(r.out, "") << cmd;
  }
  EXPECT_FALSE(fs::exists(dir / "r.duckdb"));
  EXPECT_TRUE(fs::is_empty(dir / "adir"));
  auto ins = run({"inspect", dir / "x.hadbp", "--max-pages", "-1"});
  EXPECT_EQ(ins.rc, 2) << describe(ins);
  // A leap day stays valid (a time after the head restores the head).
  auto leap = run_store("restore", {"--to", dir / "leap.duckdb", "--time", "2028-02-29T12:00:00Z"});
  EXPECT_EQ(leap.rc, 0) << describe(leap);
}

// --compression (and DUCKBLOCK_COMPRESSION) choose each shipped segment's
// encoding: zstd by default, plain hadbp v1 with "none". Header byte 6 holds
// the flags.
TEST_F(Cli, CompressionFlagChoosesPlainOrZstdSegments) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 12);
  auto new_flags = [&, seen = std::set<std::string>()]() mutable {
    std::set<int> flags;
    for (const auto& [path, digest] : store_files()) {
      if (path.size() < 6 || path.substr(path.size() - 6) != ".hadbp" || !seen.insert(path).second) continue;
      flags.insert(read_file(path).at(6));
    }
    return flags;
  };
  auto plain = run_store("snapshot", {db, "--compression", "none"});
  ASSERT_EQ(plain.rc, 0) << describe(plain);
  EXPECT_EQ(new_flags(), std::set<int>{0});
  bytes.modify(db);
  auto dflt = run_store("push", {db});
  ASSERT_EQ(dflt.rc, 0) << describe(dflt);
  EXPECT_EQ(new_flags(), std::set<int>{1});
  bytes.modify(db);
  auto env = run(test::cli_args("push", {db}, store_args()), {{"DUCKBLOCK_COMPRESSION", "none"}});
  ASSERT_EQ(env.rc, 0) << describe(env);
  EXPECT_EQ(new_flags(), std::set<int>{0});
  bytes.modify(db);
  auto level = run_store("snapshot", {db, "--compression", "zstd:19"});
  ASSERT_EQ(level.rc, 0) << describe(level);
  EXPECT_EQ(new_flags(), std::set<int>{1});
  auto bad = run_store("push", {db, "--compression", "zstd:20"});
  EXPECT_EQ(bad.rc, 2) << describe(bad);
  EXPECT_NE(bad.err.find("zstd:LEVEL"), std::string::npos) << describe(bad);
  auto res = run_store("restore", {"--to", dir / "r.duckdb"});
  ASSERT_EQ(res.rc, 0) << describe(res);
  EXPECT_EQ(file_digest(dir / "r.duckdb"), bytes.digest());
}

}  // namespace
}  // namespace duckblock
