// The `duckblock` command line against the S3 test server (s3rver, started by
// the ctest fixture or on first use): the same user flows as cli_test.cpp
// over s3:// URLs, with credentials and endpoint from the environment and
// flags, and rejected credentials.
#include <signal.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "duckblock/io.h"
#include "s3_fault_proxy.h"
#include "s3_test_server.h"
#include "test_util.h"

namespace duckblock {
namespace {

using test::cli_run;
using test::CliRun;
using test::describe;
using test::file_digest;

class S3Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& server = test::s3_test_server();
    if (!server.launched && server.endpoint.empty()) GTEST_SKIP() << "no S3 endpoint for the CLI tests";
    endpoint = server.endpoint;
    static int n = 0;
    url = "s3://" + server.bucket + "/cli-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "/";
    const char* key = std::getenv("AWS_ACCESS_KEY_ID");
    const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
    env = {{"AWS_ACCESS_KEY_ID", key ? key : "S3RVER"},
           {"AWS_SECRET_ACCESS_KEY", secret ? secret : "S3RVER"},
           {"AWS_REGION", "us-east-1"},
           {"AWS_ENDPOINT_URL_S3", endpoint}};
  }
  CliRun run(const std::string& cmd, std::vector<std::string> args,
             const std::map<std::string, std::string>& extra = {}) {
    auto e = env;
    for (const auto& [k, v] : extra) e[k] = v;
    return cli_run(test::cli_args(cmd, args, {"--store", url, "--db", "app"}), dir.path(), e);
  }

  test::TempDir dir;
  std::string endpoint, url;
  std::map<std::string, std::string> env;
  test::DbBytes bytes{7};
};

TEST_F(S3Cli, SnapshotPushFollowRestoreVerify) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 32);
  auto snap = run("snapshot", {db});
  ASSERT_EQ(snap.rc, 0) << describe(snap);
  std::string v0 = bytes.digest();
  bytes.modify(db);
  // The endpoint as a flag this time, with path-style requests.
  auto push = run("push", {db, "--json", "--endpoint", endpoint, "--path-style"});
  ASSERT_EQ(push.rc, 0) << describe(push);
  EXPECT_EQ(nlohmann::json::parse(push.out).at("seq"), 1);

  auto follow = run("follow", {"--to", dir / "f.duckdb", "--once"});
  ASSERT_EQ(follow.rc, 0) << describe(follow);
  EXPECT_EQ(file_digest(dir / "f.duckdb"), bytes.digest());
  auto r0 = run("restore", {"--to", dir / "r0.duckdb", "--seq", "0"});
  ASSERT_EQ(r0.rc, 0) << describe(r0);
  EXPECT_EQ(file_digest(dir / "r0.duckdb"), v0);
  auto ls = run("ls", {"--json"});
  ASSERT_EQ(ls.rc, 0) << describe(ls);
  EXPECT_EQ(nlohmann::json::parse(ls.out).at("head_seq"), 1);
  auto v = run("verify", {});
  EXPECT_EQ(v.rc, 0) << describe(v);
}

// `duckblock compact` over S3: the snapshot at the head from the seq-0
// snapshot and the incrementals, uploaded, then restorable alone.
TEST_F(S3Cli, CompactBuildsTheSnapshotAtTheHead) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  for (int i = 0; i < 3; ++i) {
    bytes.modify(db);
    auto push = run("push", {db});
    ASSERT_EQ(push.rc, 0) << describe(push);
  }
  auto c = run("compact", {"--json"});
  ASSERT_EQ(c.rc, 0) << describe(c);
  auto j = nlohmann::json::parse(c.out);
  EXPECT_EQ(j.at("seq"), 3);
  EXPECT_EQ(j.at("base_seq"), 0);
  auto ls = run("ls", {"--json"});
  ASSERT_EQ(ls.rc, 0) << describe(ls);
  EXPECT_NE(ls.out.find("0001/0000000000000003.hadbp"), std::string::npos) << ls.out;
  auto r = run("restore", {"--to", dir / "r.duckdb", "--seq", "3", "--json"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out).at("snapshot_seq"), 3);
  EXPECT_EQ(file_digest(dir / "r.duckdb"), bytes.digest());
  EXPECT_EQ(run("compact", {}).rc, 5);
  EXPECT_EQ(run("verify", {}).rc, 0);
}

// The library's warnings reach stderr through its log (duckblock/log.h):
// shown by default, gone with -q. s3rver ignores If-None-Match, which the
// store notes once per process when it first needs a conditional PUT.
TEST_F(S3Cli, LibraryWarningsOnStderrUnlessQuiet) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  auto snap = run("snapshot", {db});
  ASSERT_EQ(snap.rc, 0) << describe(snap);
  EXPECT_NE(snap.err.find("duckblock: the S3 server at " + endpoint + " ignores If-None-Match"), std::string::npos)
      << describe(snap);
  bytes.modify(db);
  auto push = run("push", {db, "-q"});
  ASSERT_EQ(push.rc, 0) << describe(push);
  EXPECT_EQ(push.err.find("If-None-Match"), std::string::npos) << describe(push);
}

TEST_F(S3Cli, RejectedCredentialsFailClearlyWithoutTouchingFiles) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  std::string existing = dir / "existing.duckdb";
  write_file_atomic(existing, std::vector<uint8_t>(4096, 9));
  std::string before = file_digest(existing);
  auto r = run("restore", {"--to", existing, "--force"}, {{"AWS_SECRET_ACCESS_KEY", "wrong"}});
  EXPECT_EQ(r.rc, 6) << describe(r);
  EXPECT_NE(r.err.find("secret access key"), std::string::npos) << describe(r);
  EXPECT_EQ(file_digest(existing), before);
  auto ls = run("ls", {}, {{"AWS_SECRET_ACCESS_KEY", "wrong"}});
  EXPECT_EQ(ls.rc, 6) << describe(ls);
}

// An endpoint that answers with a web page instead of S3 XML: restore and
// push fail naming the endpoint; neither takes the page for "no database".
TEST_F(S3Cli, AnHtmlAnswerIsAnErrorNotAMissingDatabase) {
  if (!test::s3_test_server().launched) GTEST_SKIP() << "needs the launched s3rver";
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  test::FaultProxy proxy(test::s3_test_server().port,
                         [](const test::RecordedRequest&, uint64_t) { return test::Fault::kHtml; });
  for (auto args : std::vector<std::vector<std::string>>{{"restore", "--to", dir / "r.duckdb"},
                                                         {"push", db, "--spool", dir / "spool"},
                                                         {"ls", "--json"}}) {
    std::string cmd = args[0];
    args.erase(args.begin());
    auto r = run(cmd, args, {{"AWS_ENDPOINT_URL_S3", proxy.endpoint()}});
    EXPECT_EQ(r.rc, 1) << cmd << describe(r);
    EXPECT_NE(r.err.find(proxy.endpoint() + " answered with"), std::string::npos) << cmd << describe(r);
    EXPECT_EQ(r.err.find("has no database"), std::string::npos) << cmd << describe(r);
    EXPECT_EQ(r.out, "") << cmd;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "r.duckdb"));
}

// kill -9 in the middle of a restore's download leaves its temp file beside
// the target; the next restore there removes it (its process is gone).
TEST_F(S3Cli, ARestoreKilledMidDownloadLeavesNothingAfterTheNextRun) {
  if (!test::s3_test_server().launched) GTEST_SKIP() << "needs the launched s3rver";
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run("snapshot", {db}).rc, 0);
  bytes.modify(db);
  ASSERT_EQ(run("push", {db}).rc, 0);
  // Incrementals (generation 0000) stall: the restore hangs inside one.
  test::FaultProxy proxy(test::s3_test_server().port, [](const test::RecordedRequest& r, uint64_t) {
    return r.method == "GET" && r.target.find("/0000/") != std::string::npos ? test::Fault::kStall
                                                                             : test::Fault::kNone;
  });
  std::filesystem::create_directories(dir / "out");
  auto env_proxy = env;
  env_proxy["AWS_ENDPOINT_URL_S3"] = proxy.endpoint();
  pid_t pid = test::cli_spawn(test::cli_args("restore", {"--to", dir / "out/r.duckdb"}, {"--store", url, "--db", "app"}),
                              dir.path(), env_proxy, dir / "k.out", dir / "k.err");
  auto temp_files = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir / "out")) {
      if (e.path().filename().string().rfind(".duckblock-dl-", 0) == 0) out.push_back(e.path().string());
    }
    return out;
  };
  for (;;) {  // until the incremental's GET is held (its temp file exists by then)
    bool stalled = false;
    for (const auto& r : proxy.requests()) stalled |= r.fault == test::Fault::kStall;
    siginfo_t info{};
    if (stalled || (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ASSERT_EQ(test::cli_wait(pid), 128 + SIGKILL) << test::slurp(dir / "k.err");
  ASSERT_EQ(temp_files().size(), 1u) << "the killed restore should have left its download";
  EXPECT_FALSE(std::filesystem::exists(dir / "out/r.duckdb"));

  auto again = run("restore", {"--to", dir / "out/r.duckdb"});
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(file_digest(dir / "out/r.duckdb"), bytes.digest());
  EXPECT_TRUE(temp_files().empty());
  std::set<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir / "out")) left.insert(e.path().filename().string());
  EXPECT_EQ(left, (std::set<std::string>{"r.duckdb", "r.duckdb.duckblock"}));
}

// Overlapping cron jobs: while one push holds the spool, a second push or
// snapshot on it fails at once (exit 9) naming the spool and the holder's
// pid, and changes nothing. The first is held inside Replicator::add (after
// it took the lock): the proxy answers the command's own two LISTs and
// stalls the next, and the test then stops the process, so it holds the
// lock for as long as the test needs. Killed with -9, it leaves no lock
// behind: the kernel drops the flock.
TEST_F(S3Cli, ASecondPushOnTheSameSpoolFailsAtOnceNamingTheHolder) {
  if (!test::s3_test_server().launched) GTEST_SKIP() << "needs the launched s3rver";
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  test::FaultProxy proxy(test::s3_test_server().port, [](const test::RecordedRequest& r, uint64_t i) {
    bool list = r.method == "GET" && r.target.find("list-type=2") != std::string::npos;
    return list && i >= 2 ? test::Fault::kStall : test::Fault::kNone;
  });
  std::string spool = dir / "spool";
  auto env_proxy = env;
  env_proxy["AWS_ENDPOINT_URL_S3"] = proxy.endpoint();
  pid_t holder = test::cli_spawn(test::cli_args("push", {db, "--spool", spool}, {"--store", url, "--db", "app"}),
                                 dir.path(), env_proxy, dir / "holder.out", dir / "holder.err");
  std::string lock = spool + "/app/lock";
  std::string holder_says = "pid " + std::to_string(holder) + " on ";
  for (;;) {  // until it holds the lock (or ends, which fails below)
    if (std::filesystem::exists(lock) && test::slurp(lock).find(holder_says) != std::string::npos) break;
    siginfo_t info{};
    if (::waitid(P_PID, holder, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == holder) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(::kill(holder, SIGSTOP), 0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, holder, &info, WEXITED | WNOHANG | WNOWAIT), 0);
  ASSERT_EQ(info.si_pid, 0) << "the first push ended before the test could hold it:\n"
                            << test::slurp(dir / "holder.err");

  for (const char* verb : {"push", "snapshot"}) {
    auto second = run(verb, {db, "--spool", spool});
    EXPECT_EQ(second.rc, 9) << verb << describe(second);
    EXPECT_NE(second.err.find(spool + "/app"), std::string::npos) << describe(second);
    EXPECT_NE(second.err.find(holder_says), std::string::npos) << describe(second);
    EXPECT_EQ(second.out, "");
  }
  EXPECT_FALSE(std::filesystem::exists(spool + "/app/state.json")) << "a refused push wrote spool state";
  auto ls = run("ls", {"--json"});
  EXPECT_EQ(ls.rc, 4) << "a refused push wrote to the store: " << describe(ls);

  ::kill(holder, SIGKILL);
  EXPECT_EQ(test::cli_wait(holder), 128 + SIGKILL);
  auto after = run("push", {db, "--spool", spool});
  EXPECT_EQ(after.rc, 0) << describe(after);
}

}  // namespace
}  // namespace duckblock
