// Metrics in the Prometheus text exposition format (version 0.0.4), and the
// small HTTP listener that serves them (GET /metrics). The values are read
// from the status the replication objects already keep (ReplicationStatus
// for a leader, a follower's position); nothing here counts on its own.
// Names and meanings: README.md "Metrics".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duckblock/replicator.h"

namespace duckblock {

// A follower's state as a scrape sees it, filled from FollowerBehavior (the
// CLI) or from the extension's follower status.
struct FollowerSample {
  std::string db;     // the name in the store
  std::string alias;  // what the follower is called locally (the CLI: the db)
  uint64_t applied_seq = 0;
  uint64_t head_seq = 0;         // the store's head at the last successful poll
  int64_t last_current_ms = 0;   // when the replica was last known to be at the head (0: never)
  uint64_t log_index = 0;        // log segments of its checkpoint applied
  uint64_t log_bytes = 0;        // the length of its log
  uint64_t polls = 0;
  uint64_t errors = 0;           // polls that failed
  bool error = false;            // the last poll failed
};

// How long the store has not advanced while segments wait in the spool:
// 0 when nothing waits, nullopt when something waits and nothing was ever
// uploaded (no time to measure from).
std::optional<int64_t> replication_lag_ms(const ReplicationStatus& s, int64_t now_ms);

// The exposition text of every leader and follower given (either may be
// empty): HELP and TYPE once per metric, one sample per database, labelled
// db="..." (followers also alias="...").
std::string render_metrics(const std::vector<ReplicationStatus>& leaders,
                           const std::vector<FollowerSample>& followers, int64_t now_ms);

// Milliseconds since the epoch.
int64_t metrics_now_ms();

// "HOST:PORT" (or ":PORT", host 127.0.0.1) as --metrics-addr takes it.
// Throws Error(kInvalidArgument) naming `what`.
struct MetricsAddress {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
};
MetricsAddress parse_metrics_address(const std::string& text, const std::string& what);

// Answers GET /metrics with 200 and render()'s text, anything else with 404,
// on its own thread, one connection at a time (a scraper asks every few
// seconds; nothing here needs more). The constructor binds and listens, so a
// port already in use fails there: Error(kIO) naming the address.
class MetricsServer {
 public:
  // Port 0 binds a free port (see port()). The host must be a numeric IPv4
  // address ("127.0.0.1" keeps the metrics on this machine; "0.0.0.0"
  // exposes them on every interface).
  MetricsServer(const MetricsAddress& address, std::function<std::string()> render);
  ~MetricsServer();  // stops listening and joins the thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;
  const std::string& host() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace duckblock
