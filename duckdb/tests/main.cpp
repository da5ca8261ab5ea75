// duckblock_duckdb_tests: the end-to-end suites, with an "s3" store backend
// (tests/store_backends.cpp) on the S3 test server. Under ctest the s3rver
// fixture's server is used (DUCKBLOCK_TEST_S3RVER_FILE names it); run by
// hand, the first S3 test starts one with scripts/s3rver.sh and it is
// stopped at exit. DUCKBLOCK_TEST_S3_URL (with DUCKBLOCK_TEST_S3_ENDPOINT,
// ...) points the suites at another server instead.
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>

#include "store_backends.h"

namespace {

std::string g_launched_pid, g_launched_dir;

void use_port(int port) {
  std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  ::setenv("DUCKBLOCK_TEST_S3_ENDPOINT", endpoint.c_str(), 1);
  ::setenv("DUCKBLOCK_TEST_S3_PATH_STYLE", "1", 1);
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  ::unsetenv("AWS_SESSION_TOKEN");
  ::unsetenv("AWS_PROFILE");
}

void prepare_s3rver() {
  static std::once_flag once;
  std::call_once(once, [] {
    int port = 0, pid = 0;
    if (const char* file = std::getenv("DUCKBLOCK_TEST_S3RVER_FILE"); file && *file) {
      FILE* f = fopen(file, "r");
      bool ok = f && fscanf(f, "%d %d", &port, &pid) == 2;
      if (f) fclose(f);
      if (!ok) throw std::runtime_error(std::string("no s3rver described in ") + file);
      use_port(port);
      return;
    }
    char tmpl[] = "/tmp/duckblock-duckdb-s3rver-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    g_launched_dir = tmpl;
    std::string cmd = std::string("bash ") + DUCKBLOCK_SOURCE_DIR + "/scripts/s3rver.sh start " + g_launched_dir +
                      "/data duckblock-test --parent " + std::to_string(::getpid());
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("cannot run " + cmd);
    char line[256] = {0};
    bool got = fgets(line, sizeof line, p) != nullptr;
    int rc = ::pclose(p);
    if (!got || rc != 0 || sscanf(line, "%d %d", &port, &pid) != 2) {
      throw std::runtime_error("s3rver did not start (" + cmd + ")");
    }
    g_launched_pid = std::to_string(pid);
    use_port(port);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* url = std::getenv("DUCKBLOCK_TEST_S3_URL"); !url || !*url) {
    // Set before InitGoogleTest, which lists the suites' backends.
    ::setenv("DUCKBLOCK_TEST_S3_URL", "s3://duckblock-test/", 1);
    duckblock::test::prepare_s3_backend = prepare_s3rver;
  }
  testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  if (!g_launched_pid.empty()) {
    std::string cmd = std::string("bash ") + DUCKBLOCK_SOURCE_DIR + "/scripts/s3rver.sh stop " + g_launched_pid;
    if (std::system(cmd.c_str()) != 0) fprintf(stderr, "could not stop s3rver %s\n", g_launched_pid.c_str());
    std::error_code ec;
    std::filesystem::remove_all(g_launched_dir, ec);
  }
  return rc;
}
