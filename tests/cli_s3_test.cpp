// The `duckblock` command line against the S3 test server (s3rver, started by
// the ctest fixture or on first use): the same user flows as cli_test.cpp
// over s3:// URLs, with credentials and endpoint from the environment and
// flags, and rejected credentials.
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "duckblock/io.h"
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

}  // namespace
}  // namespace duckblock
