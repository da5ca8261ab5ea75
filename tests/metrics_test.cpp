// Prometheus metrics (duckblock/metrics.h): the exposition text, the HTTP
// listener scraped over a real TCP connection, a leader's counters moving
// with a real Replicator, and `duckblock follow --metrics-addr` scraped
// while a push reaches it.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cli_util.h"
#include "duckblock/error.h"
#include "duckblock/metrics.h"
#include "duckblock/page_reader.h"
#include "duckblock/replicator.h"
#include "duckblock/store.h"
#include "http_get.h"
#include "test_util.h"

namespace duckblock {
namespace {

using test::http_request;
using test::metric_value;

// Every metric's HELP and TYPE come once, before its samples; counters end
// in _total; every sample line is name{labels} integer.
void expect_well_formed(const std::string& text) {
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::istringstream in(text);
  std::string line;
  static const std::regex sample(R"(^([a-z_]+)\{([a-z_]+="(?:[^"\\]|\\.)*",?)+\} -?[0-9]+$)");
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      auto name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "HELP twice for " << name;
      EXPECT_EQ(name.rfind("duckblock_", 0), 0u) << name;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_TRUE(helped.count(name)) << "TYPE before HELP for " << name;
      EXPECT_TRUE(types.emplace(name, type).second) << "TYPE twice for " << name;
      EXPECT_TRUE(type == "gauge" || type == "counter") << line;
      bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
      EXPECT_EQ(type == "counter", total) << name << " is a " << type;
    } else {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: '" << line << "'";
      EXPECT_TRUE(types.count(m[1].str())) << "sample before its TYPE: " << line;
    }
  }
}

TEST(Metrics, TextFormatOfLeadersAndFollowers) {
  ReplicationStatus a;
  a.db = "sales";
  a.spooled_seq = 7;
  a.uploaded_seq = 5;
  a.pending_segments = 2;
  a.bytes_shipped = 1234;
  a.segments_shipped = 6;
  a.upload_retries = 3;
  a.last_upload_ms = 1000;
  a.last_error = "PUT failed";
  a.log_bytes_shipped = 99;
  a.log_segments_shipped = 4;
  a.log_pending_bytes = 10;
  a.log_lag_ms = 250;
  ReplicationStatus b;
  b.db = "we\"ird\\name\n";  // label values are escaped
  b.pending_segments = 1;    // waiting, nothing ever uploaded: lag unknown
  FollowerSample f;
  f.db = "sales";
  f.alias = "rep";
  f.applied_seq = 4;
  f.head_seq = 6;
  f.last_current_ms = 4000;
  f.polls = 9;
  f.errors = 2;
  f.error = true;
  std::string text = render_metrics({a, b}, {f}, 5000);
  expect_well_formed(text);
  EXPECT_EQ(metric_value(text, "duckblock_shipped_seq{db=\"sales\"}"), 5);
  EXPECT_EQ(metric_value(text, "duckblock_replication_lag_seq{db=\"sales\"}"), 2);
  EXPECT_EQ(metric_value(text, "duckblock_replication_lag_ms{db=\"sales\"}"), 4000);
  EXPECT_EQ(metric_value(text, "duckblock_shipped_bytes_total{db=\"sales\"}"), 1234);
  EXPECT_EQ(metric_value(text, "duckblock_shipped_objects_total{db=\"sales\"}"), 6);
  EXPECT_EQ(metric_value(text, "duckblock_upload_retries_total{db=\"sales\"}"), 3);
  EXPECT_EQ(metric_value(text, "duckblock_error{db=\"sales\"}"), 1);
  EXPECT_EQ(metric_value(text, "duckblock_log_shipped_bytes_total{db=\"sales\"}"), 99);
  EXPECT_EQ(metric_value(text, "duckblock_log_shipped_objects_total{db=\"sales\"}"), 4);
  EXPECT_EQ(metric_value(text, "duckblock_commit_lag_ms{db=\"sales\"}"), 250);
  EXPECT_EQ(metric_value(text, "duckblock_follower_applied_seq{db=\"sales\",alias=\"rep\"}"), 4);
  EXPECT_EQ(metric_value(text, "duckblock_follower_lag_seq{db=\"sales\",alias=\"rep\"}"), 2);
  EXPECT_EQ(metric_value(text, "duckblock_follower_lag_ms{db=\"sales\",alias=\"rep\"}"), 1000);
  EXPECT_EQ(metric_value(text, "duckblock_follower_errors_total{db=\"sales\",alias=\"rep\"}"), 2);
  EXPECT_EQ(metric_value(text, "duckblock_shipped_seq{db=\"we\\\"ird\\\\name\\n\"}"), 0) << text;
  // No number is made up for a lag that cannot be known.
  EXPECT_EQ(text.find("duckblock_replication_lag_ms{db=\"we"), std::string::npos) << text;
  EXPECT_EQ(render_metrics({}, {}, 0), "");
}

TEST(Metrics, ServesGetMetricsOnlyOverHttp) {
  int calls = 0;
  MetricsServer server(MetricsAddress{}, [&] {
    ++calls;
    return std::string("duckblock_x{db=\"a\"} ") + std::to_string(calls) + "\n";
  });
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.host(), "127.0.0.1");
  auto r = http_request(server.port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r.headers;
  EXPECT_EQ(r.body, "duckblock_x{db=\"a\"} 1\n");
  EXPECT_EQ(http_request(server.port(), "/metrics?x=1").body, "duckblock_x{db=\"a\"} 2\n");
  EXPECT_EQ(http_request(server.port(), "/").status, 404);
  EXPECT_EQ(http_request(server.port(), "/metricsx").status, 404);
  EXPECT_EQ(http_request(server.port(), "/metrics", "POST").status, 404);
  EXPECT_EQ(calls, 2);
}

TEST(Metrics, APortInUseIsAnErrorNamingIt) {
  uint16_t port = 0;
  int held = test::listen_on_free_port(port);
  try {
    MetricsServer server(MetricsAddress{"127.0.0.1", port}, [] { return std::string(); });
    ADD_FAILURE() << "a second listener on port " << port;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIO);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port) + " is already in use"),
              std::string::npos)
        << e.what();
  }
  ::close(held);
}

TEST(Metrics, AddressesAreHostColonPort) {
  auto a = parse_metrics_address("127.0.0.1:9464", "--metrics-addr");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9464);
  EXPECT_EQ(parse_metrics_address(":9000", "x").host, "127.0.0.1");
  EXPECT_EQ(parse_metrics_address("0.0.0.0:0", "x").port, 0);
  for (const char* bad : {"9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:9x", "[::1]:80"}) {
    try {
      parse_metrics_address(bad, "--metrics-addr");
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("--metrics-addr"), std::string::npos) << e.what();
    }
  }
}

// The leader's counters come from Replicator::status(): they move when a
// checkpoint reaches the store.
TEST(Metrics, LeaderCountersMoveWithUploads) {
  test::TempDir dir;
  test::DbBytes bytes{7};
  std::string db = dir / "app.duckdb";
  bytes.write(db, 8);
  std::shared_ptr<ObjectStore> store = open_store("file://" + dir / "store");
  ReplicatorOptions o;
  o.spool_dir = dir / "spool";
  Replicator rep(store, o);
  FilePageReader reader(db);
  rep.add("app", reader);
  rep.sync("app");
  MetricsServer server(MetricsAddress{}, [&] { return render_metrics({rep.status("app")}, {}, metrics_now_ms()); });
  auto before = http_request(server.port(), "/metrics").body;
  expect_well_formed(before);
  auto objects0 = metric_value(before, "duckblock_shipped_objects_total{db=\"app\"}");
  auto bytes0 = metric_value(before, "duckblock_shipped_bytes_total{db=\"app\"}");
  ASSERT_TRUE(objects0 && bytes0) << before;
  EXPECT_GE(*objects0, 1);
  EXPECT_EQ(metric_value(before, "duckblock_replication_lag_ms{db=\"app\"}"), 0);

  bytes.modify(db);
  FilePageReader reader2(db);
  auto pushed = rep.push_checkpoint("app", reader2);
  ASSERT_GT(pushed.seq, 0u);
  rep.sync("app");
  auto after = http_request(server.port(), "/metrics").body;
  EXPECT_EQ(metric_value(after, "duckblock_shipped_seq{db=\"app\"}"), static_cast<double>(pushed.seq)) << after;
  EXPECT_EQ(metric_value(after, "duckblock_shipped_objects_total{db=\"app\"}"), *objects0 + 1) << after;
  EXPECT_GT(*metric_value(after, "duckblock_shipped_bytes_total{db=\"app\"}"), *bytes0);
  EXPECT_EQ(metric_value(after, "duckblock_error{db=\"app\"}"), 0);
}

class CliMetrics : public ::testing::Test {
 protected:
  std::vector<std::string> store_args() const { return {"--store", "file://" + dir / "store", "--db", "db"}; }
  test::CliRun run_store(const std::string& cmd, std::vector<std::string> args) {
    return test::cli_run(test::cli_args(cmd, args, store_args()), dir.path());
  }
  test::TempDir dir;
  test::DbBytes bytes{42};
};

// The port `follow` printed on stderr ("follow: metrics on http://127.0.0.1:N/metrics").
uint16_t printed_port(const std::string& err) {
  std::smatch m;
  static const std::regex re(R"(metrics on http://127\.0\.0\.1:([0-9]+)/metrics)");
  if (!std::regex_search(err, m, re)) return 0;
  return static_cast<uint16_t>(std::stoi(m[1].str()));
}

TEST_F(CliMetrics, FollowServesItsPositionAndItMovesAfterAPush) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 16);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  std::string out = dir / "follow.out", err = dir / "follow.err";
  auto args = test::cli_args("follow", {"--to", dir / "f.duckdb", "--interval", "50ms", "--metrics-addr",
                                        "127.0.0.1:0"},
                             store_args());
  pid_t pid = test::cli_spawn(args, dir.path(), {}, out, err);
  ASSERT_TRUE(test::wait_for_text(err, "polling every", pid)) << test::slurp(err);
  uint16_t port = printed_port(test::slurp(err));
  ASSERT_NE(port, 0) << test::slurp(err);
  auto r = http_request(port, "/metrics");
  ASSERT_EQ(r.status, 200);
  expect_well_formed(r.body);
  const std::string applied = "duckblock_follower_applied_seq{db=\"db\",alias=\"db\"}";
  EXPECT_EQ(metric_value(r.body, applied), 0) << r.body;
  auto polls0 = metric_value(r.body, "duckblock_follower_polls_total{db=\"db\",alias=\"db\"}");
  ASSERT_TRUE(polls0) << r.body;
  EXPECT_GE(*polls0, 1);
  EXPECT_EQ(metric_value(r.body, "duckblock_follower_error{db=\"db\",alias=\"db\"}"), 0);
  EXPECT_EQ(http_request(port, "/").status, 404);

  bytes.modify(db);
  ASSERT_EQ(run_store("push", {db}).rc, 0);
  // The scrape itself is the condition (the ctest timeout bounds the wait).
  std::string body;
  while (metric_value(body = http_request(port, "/metrics").body, applied) != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(*metric_value(body, "duckblock_follower_polls_total{db=\"db\",alias=\"db\"}"), *polls0);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(test::cli_wait(pid), 0) << test::slurp(err);
  // Stopped: nothing listens any more.
  EXPECT_THROW(http_request(port, "/metrics"), std::runtime_error);
}

TEST_F(CliMetrics, FollowRefusesAPortInUseAndABadAddress) {
  std::string db = dir / "app.duckdb";
  bytes.write(db, 4);
  ASSERT_EQ(run_store("snapshot", {db}).rc, 0);
  uint16_t port = 0;
  int held = test::listen_on_free_port(port);
  auto r = run_store("follow", {"--to", dir / "f.duckdb", "--metrics-addr", "127.0.0.1:" + std::to_string(port)});
  ::close(held);
  EXPECT_EQ(r.rc, 1) << test::describe(r);
  EXPECT_NE(r.err.find("127.0.0.1:" + std::to_string(port) + " is already in use"), std::string::npos)
      << test::describe(r);
  EXPECT_FALSE(std::filesystem::exists(dir / "f.duckdb")) << "applied before failing";
  auto bad = run_store("follow", {"--to", dir / "f.duckdb", "--metrics-addr", "localhost"});
  EXPECT_EQ(bad.rc, 2) << test::describe(bad);
  EXPECT_NE(bad.err.find("--metrics-addr"), std::string::npos) << test::describe(bad);
}

}  // namespace
}  // namespace duckblock
