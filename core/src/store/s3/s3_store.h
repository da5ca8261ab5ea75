// The S3 backend: an ObjectStore over the S3 REST API (AWS S3 and
// S3-compatible services). This header is for the library's own use and its
// tests: it exposes the resolved configuration, the URL building and the
// request counters; applications open stores with open_store("s3://...").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "duckblock/store.h"
#include "sigv4.h"

namespace duckblock::s3 {

// How put_if_absent relies on the server's conditional PUT (If-None-Match: *).
enum class ConditionalPut {
  kAuto,       // probe once per store: use the header if the server honours it, else fall back to kHeadCheck
  kTrust,      // send the header and trust the server to refuse (AWS S3 since 2024, MinIO, R2)
  kHeadCheck,  // best effort: HEAD first, serialised within this process; not atomic across processes
};

struct S3Config {
  std::string bucket;
  std::string prefix;    // "" or ending in '/'
  std::string endpoint;  // scheme://host[:port], no trailing slash
  std::string region = "us-east-1";
  bool path_style = false;
  bool verify_tls = true;
  Credentials credentials;
  std::string url;  // what url() reports: s3://bucket/prefix/

  // Transfers. Objects up to part_size go in one PUT; larger ones in parts of
  // part_size, upload_concurrency at a time. Downloads fetch ranges of
  // download_chunk bytes, download_concurrency at a time. Memory in use per
  // transfer is bounded by (concurrency + 1) * part or chunk size.
  size_t part_size = 8u << 20;
  int upload_concurrency = 4;
  size_t download_chunk = 8u << 20;
  int download_concurrency = 4;

  // Retries: attempts per request, full-jitter exponential backoff
  // min(cap, base * 2^attempt).
  int max_attempts = 6;
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{5000};
  long connect_timeout_ms = 10000;
  long stall_timeout_s = 30;

  ConditionalPut conditional_put = ConditionalPut::kAuto;
  std::string connect_to;  // tests only: see HttpOptions::connect_to
};

// Counters since the store was made. retries counts every request that was
// sent again (after a 5xx, SlowDown, timeout, reset, clock skew).
struct S3Stats {
  uint64_t requests = 0;
  uint64_t retries = 0;
  uint64_t throttled = 0;         // 503 / SlowDown / 429 answers among those
  uint64_t transport_errors = 0;  // timeouts, resets, refused connections
  uint64_t bytes_sent = 0;        // request bodies, including re-sent ones
  uint64_t bytes_received = 0;
  uint64_t multipart_uploads = 0;
  uint64_t multipart_aborts = 0;
  uint64_t multipart_complete_ms = 0;  // time spent waiting on CompleteMultipartUpload
  int conditional_put_honoured = -1;  // -1 not known yet, 0 ignored by the server, 1 honoured
};

// Resolves an s3:// URL with the options, the environment and the shared
// credentials file into a complete configuration. Throws Error(kInvalidArgument)
// for a bad URL or endpoint and Error(kAuth) when no usable credentials exist.
S3Config s3_config_from_url(const std::string& url, const StoreOptions& options);

std::unique_ptr<ObjectStore> make_s3_store(const S3Config& config);

// The counters of a store made by make_s3_store; throws if it is another kind.
S3Stats s3_stats(const ObjectStore& store);

// The request URL for a full object key ("" for the bucket itself) and the
// canonical URI that is signed, for path-style or virtual-host addressing.
struct S3Target {
  std::string url;            // without query
  std::string host;           // Host header value (with :port when not default)
  std::string canonical_uri;  // the encoded path
};
S3Target s3_target(const S3Config& config, const std::string& full_key);

}  // namespace duckblock::s3
