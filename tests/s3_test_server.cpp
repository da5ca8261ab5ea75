// The one s3rver launcher of the test suites, and their main(): a small
// library (duckblock_s3_test_support) that duckblock_s3_tests and
// duckblock_duckdb_tests both link. See s3_test_server.h.
#include "s3_test_server.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <stdexcept>

#include "store_backends.h"

namespace duckblock::test {

namespace {

struct Launched {
  S3TestServer info;
  std::string pid;
  std::string root;  // the temp directory: the server's data/ and data.log
  ~Launched() {
    if (!pid.empty()) {
      std::string cmd = std::string("bash ") + DUCKBLOCK_SOURCE_DIR + "/scripts/s3rver.sh stop " + pid;
      if (std::system(cmd.c_str()) != 0) fprintf(stderr, "could not stop s3rver %s\n", pid.c_str());
      std::error_code ec;
      std::filesystem::remove_all(root, ec);
    }
  }
};

Launched* launch() {
  auto* l = new Launched;
  l->info.bucket = "duckblock-test";
  if (const char* url = std::getenv("DUCKBLOCK_TEST_S3_EXTERNAL"); url && *url) {
    l->info.launched = false;
    if (const char* ep = std::getenv("DUCKBLOCK_TEST_S3_ENDPOINT")) l->info.endpoint = ep;
    return l;
  }
  auto use = [&](int port) {
    l->info.launched = true;
    l->info.port = port;
    l->info.endpoint = "http://127.0.0.1:" + std::to_string(port);
    // The contract suite's "s3" backend opens stores through open_store with
    // these, like a user would.
    ::setenv("DUCKBLOCK_TEST_S3_ENDPOINT", l->info.endpoint.c_str(), 1);
    ::setenv("DUCKBLOCK_TEST_S3_PATH_STYLE", "1", 1);
    ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    ::setenv("AWS_REGION", "us-east-1", 1);
    ::unsetenv("AWS_SESSION_TOKEN");
    ::unsetenv("AWS_PROFILE");
  };
  // Under ctest the s3rver fixture has started one server for the run.
  if (const char* file = std::getenv("DUCKBLOCK_TEST_S3RVER_FILE"); file && *file) {
    FILE* f = fopen(file, "r");
    int port = 0, pid = 0;
    bool ok = f && fscanf(f, "%d %d", &port, &pid) == 2;
    if (f) fclose(f);
    if (!ok) throw std::runtime_error(std::string("no s3rver described in ") + file + " (the s3rver_start test)");
    use(port);
    return l;
  }
  char tmpl[] = "/tmp/duckblock-s3rver-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  l->root = tmpl;
  std::string cmd = std::string("bash ") + DUCKBLOCK_SOURCE_DIR + "/scripts/s3rver.sh start " + l->root + "/data " +
                    l->info.bucket + " --parent " + std::to_string(::getpid());
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + cmd);
  char line[256] = {0};
  bool got = fgets(line, sizeof line, p) != nullptr;
  int rc = ::pclose(p);
  int port = 0, pid = 0;
  if (!got || rc != 0 || sscanf(line, "%d %d", &port, &pid) != 2) {
    throw std::runtime_error("s3rver did not start (" + cmd + ")");
  }
  l->pid = std::to_string(pid);
  use(port);
  return l;
}

std::unique_ptr<Launched> g_server;
std::once_flag g_once;

}  // namespace

const S3TestServer& s3_test_server() {
  std::call_once(g_once, [] { g_server.reset(launch()); });
  return g_server->info;
}

s3::S3Config s3_test_config(const std::string& endpoint) {
  static std::atomic<int> counter{0};
  const auto& server = s3_test_server();
  s3::S3Config c;
  c.bucket = server.bucket;
  c.prefix = "cfg" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "/";
  c.endpoint = endpoint.empty() ? server.endpoint : endpoint;
  c.region = "us-east-1";
  c.path_style = true;
  c.credentials = {"S3RVER", "S3RVER", "", "the test"};
  c.url = "s3://" + c.bucket + "/" + c.prefix;
  c.part_size = 5u << 20;  // S3's smallest part
  c.download_chunk = 1u << 20;
  c.backoff_base = std::chrono::milliseconds(5);
  c.backoff_cap = std::chrono::milliseconds(50);
  c.max_attempts = 8;
  c.stall_timeout_s = 1;
  c.connect_timeout_ms = 2000;
  return c;
}

}  // namespace duckblock::test

// The suites (duckblock_s3_tests: the S3 ones and the store contract suite;
// duckblock_duckdb_tests: the end-to-end ones), their "s3" store backend
// (store_backends.cpp) pointed at the launched server.
int main(int argc, char** argv) {
  if (const char* url = std::getenv("DUCKBLOCK_TEST_S3_URL"); url && *url) {
    ::setenv("DUCKBLOCK_TEST_S3_EXTERNAL", "1", 1);
  } else {
    // Set before InitGoogleTest, which lists the contract suite's backends.
    ::setenv("DUCKBLOCK_TEST_S3_URL", "s3://duckblock-test/", 1);
    duckblock::test::prepare_s3_backend = [] { duckblock::test::s3_test_server(); };
  }
  testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  duckblock::test::g_server.reset();
  return rc;
}
