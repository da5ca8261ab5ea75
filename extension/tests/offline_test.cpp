// The extension while its store cannot be reached: a loopback proxy between
// the extension and the s3rver of the ctest fixture resets every connection
// while `offline` is set (the store's requests fail as they do when the
// network is down, retries and all), and forwards them otherwise.
//
// With a spool, ATTACH and checkpoints need no store and the segments upload
// once it answers; with no spool, the database still opens and replication
// starts at the first checkpoint after the store answers. Both show in
// duckblock_status(). Waits are on conditions (bounded only to fail a hang).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "host_util.h"
#include "http_get.h"
#include "s3_fault_proxy.h"

namespace fs = std::filesystem;
using namespace duckblock::ext_test;
using duckblock::test::Fault;
using duckblock::test::FaultProxy;
using duckblock::test::RecordedRequest;

namespace {

class ExtensionOffline : public ::testing::Test {
 protected:
  void SetUp() override {
    int port = s3rver_port();
    if (port == 0) GTEST_SKIP() << "needs the s3rver ctest fixture (ctest -L extension)";
    use_s3rver_credentials();
    proxy = std::make_unique<FaultProxy>(
        port, [this](const RecordedRequest&, uint64_t) { return offline ? Fault::kResetBefore : Fault::kNone; });
    char tmpl[] = "/tmp/duckblock-ext-offline-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    store = "s3://duckblock-test/" + fs::path(dir).filename().string() + "/";
  }
  void TearDown() override {
    if (!dir.empty() && !HasFailure()) fs::remove_all(dir);
  }

  std::unique_ptr<Host> host() {
    auto h = std::make_unique<Host>();
    q(*h->con, "SET duckblock_s3_endpoint = '" + proxy->endpoint() + "'");
    q(*h->con, "SET duckblock_s3_region = 'us-east-1'");
    q(*h->con, "SET duckblock_s3_path_style = true");
    q(*h->con, "SET duckblock_store = '" + store + "'");
    return h;
  }

  int64_t count(Host& h, const std::string& table) {
    return q(*h.con, "SELECT count(*) FROM " + table)->GetValue(0, 0).GetValue<int64_t>();
  }

  // The duckblock_error gauge of `db` that duckblock_metrics_port serves.
  std::optional<double> error_gauge(Host& h, const std::string& db) {
    uint16_t port = 0;
    ::close(duckblock::test::listen_on_free_port(port));  // free a moment ago
    q(*h.con, "SET duckblock_metrics_port = " + std::to_string(port));
    auto body = duckblock::test::http_request(port, "/metrics").body;
    q(*h.con, "SET duckblock_metrics_port = 0");
    return duckblock::test::metric_value(body, "duckblock_error{db=\"" + db + "\"}");
  }

  // sales.duckdb replicated while the store answers (so it has a spool);
  // returns the seq shipped.
  uint64_t replicate_while_online() {
    auto h = host();
    q(*h->con, "ATTACH 'duckblock://" + dir + "/sales.duckdb' AS lead");
    q(*h->con, "CREATE TABLE lead.t AS SELECT range AS id FROM range(100)");
    q(*h->con, "CHECKPOINT lead");
    return q(*h->con, "SELECT shipped_seq FROM duckblock_sync('sales')")->GetValue(0, 0).GetValue<uint64_t>();
  }

  std::atomic<bool> offline{false};
  std::unique_ptr<FaultProxy> proxy;
  std::string dir, store;
};

TEST_F(ExtensionOffline, WithASpoolAttachAndCheckpointsNeedNoStore) {
  uint64_t before = replicate_while_online();
  offline = true;
  auto h = host();
  // The spool has the state to continue from: the ATTACH opens without the
  // store, and checkpoints spool.
  q(*h->con, "ATTACH 'duckblock://" + dir + "/sales.duckdb' AS lead");
  q(*h->con, "INSERT INTO lead.t SELECT range FROM range(50)");
  q(*h->con, "CHECKPOINT lead");
  auto st = q(*h->con, "SELECT shipped_seq, attached FROM duckblock_status()");
  EXPECT_EQ(st->GetValue(0, 0).GetValue<uint64_t>(), before);
  EXPECT_TRUE(st->GetValue(1, 0).GetValue<bool>());
  EXPECT_EQ(count(*h, "lead.t"), 150);
  // Nothing reaches the store meanwhile: the checkpoint waits in the spool.
  EXPECT_NE(q_error(*h->con, "CALL duckblock_sync('sales', timeout_ms := 200)"), "");
  st = q(*h->con, "SELECT shipped_seq, pending_segments FROM duckblock_status()");
  EXPECT_EQ(st->GetValue(0, 0).GetValue<uint64_t>(), before);
  EXPECT_GT(st->GetValue(1, 0).GetValue<uint64_t>(), 0u);

  // The store is back: what was spooled uploads, and the status says so.
  offline = false;
  q(*h->con, "CALL duckblock_sync('sales')");
  st = q(*h->con, "SELECT spooled_seq, shipped_seq, pending_segments, last_error FROM duckblock_status()");
  EXPECT_EQ(st->GetValue(0, 0), st->GetValue(1, 0));
  EXPECT_GT(st->GetValue(1, 0).GetValue<uint64_t>(), before);
  EXPECT_EQ(st->GetValue(2, 0).GetValue<uint64_t>(), 0u);
  EXPECT_TRUE(st->GetValue(3, 0).IsNull()) << st->GetValue(3, 0).ToString();
  auto f = host();
  q(*f->con, "CALL duckblock_follow('sales', '" + store + "', '" + dir + "/replica.duckdb', poll_interval_ms := 0)");
  EXPECT_EQ(count(*f, "sales.t"), 150);
}

TEST_F(ExtensionOffline, WithNoSpoolItOpensAndStartsOnceTheStoreAnswers) {
  offline = true;
  auto h = host();
  q(*h->con, "ATTACH 'duckblock://" + dir + "/fresh.duckdb' AS fresh");
  q(*h->con, "CREATE TABLE fresh.t AS SELECT range AS id FROM range(10)");
  q(*h->con, "CHECKPOINT fresh");
  auto st = q(*h->con, "SELECT name, attached, shipped_seq, last_error FROM duckblock_status()");
  ASSERT_EQ(st->RowCount(), 1u);
  EXPECT_EQ(st->GetValue(0, 0).ToString(), "fresh");
  EXPECT_FALSE(st->GetValue(1, 0).GetValue<bool>());  // not replicating yet
  EXPECT_NE(st->GetValue(3, 0).ToString().find("could not be reached"), std::string::npos)
      << st->GetValue(3, 0).ToString();
  EXPECT_EQ(error_gauge(*h, "fresh"), 1);  // the metrics say so too

  offline = false;
  // The background probe notices the store is back (bounded only to fail a hang).
  auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!q(*h->con, "SELECT last_error FROM duckblock_status()")->GetValue(0, 0).IsNull()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the store never counted as back";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The next checkpoint starts replication with the whole file.
  q(*h->con, "INSERT INTO fresh.t SELECT range FROM range(5)");
  q(*h->con, "CHECKPOINT fresh");
  st = q(*h->con, "SELECT attached, last_error FROM duckblock_sync('fresh')");
  EXPECT_TRUE(st->GetValue(0, 0).GetValue<bool>());
  EXPECT_TRUE(st->GetValue(1, 0).IsNull()) << st->GetValue(1, 0).ToString();
  auto f = host();
  q(*f->con, "CALL duckblock_follow('fresh', '" + store + "', '" + dir + "/replica.duckdb', poll_interval_ms := 0)");
  EXPECT_EQ(count(*f, "fresh.t"), 15);
}

// With a spool, ATTACH asks the store nothing. Every request fails here and
// would be retried a million times (AWS_MAX_ATTEMPTS): an ATTACH that waited
// for the store would not return before the ctest timeout. Once the store
// answers, the uploader checks the spool against the chain and uploads.
TEST_F(ExtensionOffline, WithASpoolAttachWaitsForNoRetries) {
  uint64_t before = replicate_while_online();
  offline = true;
  ::setenv("AWS_MAX_ATTEMPTS", "1000000", 1);
  auto h = host();
  q(*h->con, "ATTACH 'duckblock://" + dir + "/sales.duckdb' AS lead");
  ::unsetenv("AWS_MAX_ATTEMPTS");  // read when the store was opened
  q(*h->con, "INSERT INTO lead.t SELECT range FROM range(50)");
  q(*h->con, "CHECKPOINT lead");
  auto st = q(*h->con, "SELECT attached, shipped_seq, pending_segments FROM duckblock_status()");
  EXPECT_TRUE(st->GetValue(0, 0).GetValue<bool>());
  EXPECT_EQ(st->GetValue(1, 0).GetValue<uint64_t>(), before);
  EXPECT_GT(st->GetValue(2, 0).GetValue<uint64_t>(), 0u);
  EXPECT_EQ(count(*h, "lead.t"), 150);

  offline = false;
  q(*h->con, "CALL duckblock_sync('sales')");
  st = q(*h->con, "SELECT spooled_seq, shipped_seq, last_error FROM duckblock_status()");
  EXPECT_EQ(st->GetValue(0, 0), st->GetValue(1, 0));
  EXPECT_GT(st->GetValue(1, 0).GetValue<uint64_t>(), before);
  EXPECT_TRUE(st->GetValue(2, 0).IsNull()) << st->GetValue(2, 0).ToString();
}

// With a spool and nothing to upload, the status still says the store is
// unreachable (the uploader's check of the spool against the chain could
// not be made), and clears once it answers.
TEST_F(ExtensionOffline, WithASpoolTheStatusSaysTheStoreIsUnreachable) {
  replicate_while_online();
  offline = true;
  ::setenv("AWS_MAX_ATTEMPTS", "1", 1);  // unreachable after one failed request
  auto h = host();
  q(*h->con, "ATTACH 'duckblock://" + dir + "/sales.duckdb' AS lead");
  ::unsetenv("AWS_MAX_ATTEMPTS");
  auto last_error = [&] {
    auto v = q(*h->con, "SELECT last_error FROM duckblock_status()")->GetValue(0, 0);
    return v.IsNull() ? std::string() : v.ToString();
  };
  // Bounded only to fail a hang.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (last_error().find("the store could not be reached") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the status never said the store is unreachable";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(q(*h->con, "SELECT attached FROM duckblock_status()")->GetValue(0, 0).GetValue<bool>());
  EXPECT_NE(q_error(*h->con, "CALL duckblock_sync('sales', timeout_ms := 200)"), "");
  EXPECT_EQ(error_gauge(*h, "sales"), 1);

  offline = false;
  q(*h->con, "CALL duckblock_sync('sales')");
  EXPECT_EQ(last_error(), "");
  EXPECT_EQ(error_gauge(*h, "sales"), 0);
}

}  // namespace
