// A loopback HTTP proxy that sits between the S3 store and the test server.
// It records every request (method, target, headers, a hash of the body) and,
// as a policy decides, answers in the server's place with a fault: 503,
// SlowDown, a reset connection (before or in the middle of the answer), a
// stall, a clock-skew refusal, or a fixed status. Everything else is
// forwarded. Tests use it to check what the S3 server itself does not: the
// headers we send, how we retry, how we abort.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace duckblock::test {

enum class Fault {
  kNone,            // forward to the server
  k503,             // 503 ServiceUnavailable
  kSlowDown,        // 503 SlowDown
  kResetBefore,     // close the connection with a reset before answering
  kResetMidBody,    // forward, then reset half way through the answer's body
  kStall,           // answer nothing until the client gives up
  kSkew,            // 403 RequestTimeTooSkewed, with the server's Date an hour ahead
  kPreconditionFailed,  // 412, as a server that honours If-None-Match would answer
  kBadRequest,      // 400 InvalidArgument (not retryable)
  kOk,              // 200 with an empty body, without forwarding
  kHtml,            // 200 with an HTML page, as a captive portal or a misrouted proxy answers
  kHtml502,         // 502 with an HTML page, as a load balancer answers
  kListLoop,        // a truncated listing page, always the same keys and continuation token
  kListLoopEmpty,   // a truncated listing page with no keys, always the same token
};

struct RecordedRequest {
  std::string method;
  std::string target;                          // path and query as sent
  std::map<std::string, std::string> headers;  // lower-case names
  uint64_t body_size = 0;
  std::string body_sha256;  // hex
  Fault fault = Fault::kNone;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class FaultProxy {
 public:
  using Policy = std::function<Fault(const RecordedRequest&, uint64_t index)>;
  explicit FaultProxy(int upstream_port, Policy policy = nullptr);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_policy(Policy policy);
  std::vector<RecordedRequest> requests();
  uint64_t faults_injected() const { return faults_; }

 private:
  void accept_loop();
  void serve(int fd);

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> faults_{0};
  std::mutex mu_;
  Policy policy_;
  std::vector<RecordedRequest> requests_;
  uint64_t next_index_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
};

// A policy that injects the given faults at `rate` (0..1), chosen with a
// seeded generator so a run is repeatable.
FaultProxy::Policy random_faults(double rate, std::vector<Fault> kinds, uint64_t seed);

}  // namespace duckblock::test
