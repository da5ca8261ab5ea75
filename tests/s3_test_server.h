// The S3 server the S3 tests run against: s3rver on 127.0.0.1 with a fresh
// directory and bucket (scripts/s3rver.sh). Under ctest the s3rver fixture
// starts one for the whole run and passes it in DUCKBLOCK_TEST_S3RVER_FILE;
// run by hand, the suite (duckblock_s3_tests, duckblock_duckdb_tests) starts
// its own on first use and stops it at exit. DUCKBLOCK_TEST_S3_URL (with
// DUCKBLOCK_TEST_S3_ENDPOINT, ...) points the suites elsewhere instead. The
// library that holds this also holds the suites' main().
#pragma once

#include <string>

#include "s3_store.h"

namespace duckblock::test {

struct S3TestServer {
  bool launched = false;  // false: an external server from DUCKBLOCK_TEST_S3_* variables
  int port = 0;
  std::string endpoint;   // http://127.0.0.1:PORT
  std::string bucket;
};

// Starts the server if this process has not yet (thread-safe).
const S3TestServer& s3_test_server();

// A configuration for the launched server: its credentials, a fresh prefix,
// small parts and fast retries so tests stay quick. endpoint overrides the
// server's (to go through a FaultProxy).
s3::S3Config s3_test_config(const std::string& endpoint = "");

}  // namespace duckblock::test
