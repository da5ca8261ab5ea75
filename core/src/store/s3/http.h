// A small HTTP/1.1 client over libcurl for the S3 store. It keeps a pool of
// curl handles so that connections are reused across requests and threads
// (each handle keeps its own keep-alive connection), and it reports transport
// failures with whether a retry could help.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace duckblock::s3 {

struct HttpOptions {
  long connect_timeout_ms = 10000;
  // A transfer that moves no byte for this long is abandoned (a stall); there
  // is no total timeout, since a large object may legitimately take long.
  long stall_timeout_s = 30;
  bool verify_tls = true;
  // "HOST:PORT": connect every request there whatever the URL's host says
  // (like curl --connect-to). Lets tests route virtual-host style names to a
  // loopback server without touching DNS.
  std::string connect_to;
};

struct HttpResponse;

struct HttpRequest {
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::span<const uint8_t> body;
  // Receives the body of a 2xx response as it arrives (other responses' bodies
  // go to HttpResponse::body). May throw; the transfer stops and the
  // exception propagates from perform().
  std::function<void(const char*, size_t)> on_body;
  // Called once a final response's headers are in, before its body.
  // Returning false ends the transfer there: perform() returns the status
  // and headers without the body.
  std::function<bool(const HttpResponse&)> on_headers;
};

struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;  // non-2xx bodies, and 2xx bodies without on_body
  uint64_t body_bytes = 0;
  std::string header(const std::string& lower_name) const;
};

// A request that did not produce an HTTP response (connect failure, timeout,
// reset, TLS failure).
class TransportError : public std::runtime_error {
 public:
  TransportError(const std::string& msg, bool retryable)
      : std::runtime_error(msg), retryable_(retryable) {}
  bool retryable() const { return retryable_; }

 private:
  bool retryable_;
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResponse perform(const HttpRequest& request);

 private:
  void* acquire();
  void release(void* handle);

  HttpOptions options_;
  std::mutex mu_;
  std::vector<void*> idle_;
};

}  // namespace duckblock::s3
