// The S3 object store. Every operation of the store contract maps onto the
// S3 REST API:
//   put            PUT Object for objects up to part_size, else a multipart
//                  upload with parallel parts (aborted on any failure, so a
//                  half-written object never becomes visible: S3 shows an
//                  object only when its PUT or CompleteMultipartUpload ends)
//   put_if_absent  the same with If-None-Match: * (412 = AlreadyExists)
//   get            ranged GETs: the first range streams straight to the sink,
//                  the rest are fetched in parallel and written in order
//   head           HEAD Object
//   list           ListObjectsV2, paginated, with start-after
//   remove         DeleteObjects, up to 1000 keys a request
// Requests that fail in a way a retry can fix (5xx, 408, 429, SlowDown,
// timeouts, resets, clock skew) are sent again with capped exponential backoff
// and jitter; everything else surfaces S3's error code and message.
#include "s3_store.h"

#include <curl/curl.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/log.h"
#include "http.h"
#include "xml.h"

namespace duckblock {
namespace s3 {

namespace {

// ---- XML ------------------------------------------------------------------
// Answers are parsed by xml.h (expat). Requests are built here: the only
// values that need escaping are keys and ETags.

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += "&#" + std::to_string(int(c)) + ";";
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

// The Code of an S3 <Error> answer, "" if the body is not one.
std::string error_code(std::string_view body) {
  auto doc = parse_xml(body);
  if (!doc || doc->name != "Error") return "";
  return doc->child_text("Code").value_or("");
}

// ---- time -----------------------------------------------------------------

int64_t parse_iso8601_ms(const std::string& s) {  // 2026-11-25T11:47:30.000Z
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec) != 6) {
    return 0;
  }
  size_t dot = s.find('.');
  if (dot != std::string::npos) ms = std::atoi(s.substr(dot + 1, 3).c_str());
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t(timegm(&tm)) * 1000 + ms;
}

int64_t parse_http_date_ms(const std::string& s) {
  time_t t = curl_getdate(s.c_str(), nullptr);
  return t < 0 ? 0 : int64_t(t) * 1000;
}

// ---- helpers --------------------------------------------------------------

size_t read_full(ByteSource& src, std::vector<uint8_t>& buf, size_t n) {
  buf.resize(n);
  size_t got = 0;
  while (got < n) {
    size_t r = src.read(buf.data() + got, n - got);
    if (r == 0) break;
    got += r;
  }
  buf.resize(got);
  return got;
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool retryable_code(const std::string& code) {
  return code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable" ||
         code == "Throttling" || code == "ThrottlingException" || code == "RequestTimeTooSkewed" ||
         code == "OperationAborted" || code == "ConditionalRequestConflict";
}

struct Failure {
  std::string description;  // "503 SlowDown: Please reduce your request rate."
};

}  // namespace

S3Target s3_target(const S3Config& c, const std::string& full_key) {
  size_t sep = c.endpoint.find("://");
  std::string scheme = c.endpoint.substr(0, sep);
  std::string hostport = c.endpoint.substr(sep + 3);
  std::string key_path = full_key.empty() ? "" : "/" + uri_encode(full_key, false);
  S3Target t;
  if (c.path_style) {
    t.host = hostport;
    t.canonical_uri = "/" + uri_encode(c.bucket, true) + key_path;
  } else {
    t.host = c.bucket + "." + hostport;
    t.canonical_uri = key_path.empty() ? "/" : key_path;
  }
  t.url = scheme + "://" + t.host + t.canonical_uri;
  return t;
}

namespace {

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(S3Config c)
      : c_(std::move(c)),
        http_(HttpOptions{c_.connect_timeout_ms, c_.stall_timeout_s, c_.verify_tls, c_.connect_to}) {
    if (c_.conditional_put == ConditionalPut::kTrust) cond_state_ = 1;
    if (c_.conditional_put == ConditionalPut::kHeadCheck) cond_state_ = 0;
  }

  void put(const std::string& key, ByteSource& data) override { put_impl(key, data, false); }

  void put_if_absent(const std::string& key, ByteSource& data) override {
    check_key(key);
    if (conditional_put_honoured()) {
      put_impl(key, data, true);
      return;
    }
    // The server ignores If-None-Match (s3rver does): check with HEAD first,
    // one writer of a key at a time within this process. Another process can
    // still race us between the HEAD and the PUT; the header is sent anyway
    // so that a server which does honour it refuses.
    KeyLock lock(*this, key);
    if (head(key)) throw already_exists(key);
    put_impl(key, data, true);
  }

  void get(const std::string& key, ByteSink& out, std::optional<ByteRange> range) override {
    check_key(key);
    std::string full = c_.prefix + key;
    std::string what = "GET " + c_.url + key;
    uint64_t start = range ? range->offset : 0;
    std::optional<uint64_t> limit;  // exclusive end the caller asked for
    if (range) limit = range->offset + std::min(range->length, UINT64_MAX - range->offset);
    if (range && range->length == 0) {
      if (!head(key)) throw not_found(key);
      return;
    }
    // With one stream the first request asks for everything ("bytes=N-" when
    // there is no end); otherwise for one chunk, and the rest follows in
    // parallel once the size is known.
    std::optional<uint64_t> first_len;
    if (c_.download_concurrency > 1) first_len = c_.download_chunk;
    if (limit) first_len = std::min<uint64_t>(first_len.value_or(UINT64_MAX), *limit - start);

    // The first range streams straight into the sink. A retry after a
    // dropped connection resumes where the bytes stopped, pinned with
    // If-Match to the version it started reading.
    uint64_t delivered = 0;
    std::string etag;
    Call call;
    call.method = "GET";
    call.full_key = full;
    call.what = what;
    call.before_attempt = [&](Call& cl) {
      cl.headers.clear();
      cl.headers.emplace_back("Range", "bytes=" + std::to_string(start + delivered) + "-" +
                                           (first_len ? std::to_string(start + *first_len - 1) : ""));
      if (!etag.empty()) cl.headers.emplace_back("If-Match", etag);
    };
    bool empty_object = false;
    call.on_headers = [&](const HttpResponse& r) {
      if (r.status == 206 && etag.empty()) etag = r.header("etag");
      // "bytes 0-0/0": an empty object (S3 may answer 416 instead). Some
      // servers announce one byte they do not have; read nothing.
      std::string cr = r.header("content-range");
      if (r.status == 206 && cr.size() > 2 && cr.compare(cr.size() - 2, 2, "/0") == 0) {
        empty_object = true;
        return false;
      }
      return true;
    };
    call.on_body = [&](const char* p, size_t n) {
      out.write(p, n);
      delivered += n;
    };
    HttpResponse r = send(call);
    if (r.status == 416 || empty_object) return;  // the range starts at or past the end (or the object is empty)
    if (r.status == 412 && !etag.empty()) throw changed(key);
    if (r.status < 200 || r.status >= 300) fail(r, call);
    if (r.status == 200) {
      if (start != 0 || limit) throw Error(ErrorKind::kRemote, what + ": the server ignored the Range header");
      return;  // the whole object
    }
    // 206: "bytes a-b/total"
    std::string cr = r.header("content-range");
    size_t slash = cr.rfind('/');
    if (slash == std::string::npos || cr.substr(slash + 1) == "*") {
      throw Error(ErrorKind::kRemote, what + ": unexpected Content-Range '" + cr + "'");
    }
    uint64_t total = std::stoull(cr.substr(slash + 1));
    if (etag.empty()) etag = r.header("etag");
    uint64_t end = limit ? std::min(total, *limit) : total;
    if (!first_len) return;  // one stream: it was all of it
    uint64_t next = start + *first_len;
    if (next >= end) return;

    get_remaining_ranges(key, full, what, etag, next, end, out);
  }

  // One range of an object being read in parallel, pinned to `etag`.
  std::vector<uint8_t> get_range(const std::string& key, const std::string& full, const std::string& what,
                                 const std::string& etag, uint64_t off, uint64_t len) {
    std::vector<uint8_t> buf;
    buf.reserve(len);
    Call cl;
    cl.method = "GET";
    cl.full_key = full;
    cl.what = what;
    cl.before_attempt = [&](Call& x) {
      x.headers.clear();
      x.headers.emplace_back("Range", "bytes=" + std::to_string(off + buf.size()) + "-" +
                                          std::to_string(off + len - 1));
      if (!etag.empty()) x.headers.emplace_back("If-Match", etag);
    };
    cl.on_body = [&](const char* p, size_t n) {
      if (buf.size() + n > len) throw Error(ErrorKind::kRemote, what + ": the server sent more than the range");
      buf.insert(buf.end(), p, p + n);
    };
    HttpResponse resp = send(cl);
    if (resp.status == 412) throw changed(key);
    if (resp.status != 206 && resp.status != 200) fail(resp, cl);
    if (buf.size() != len) {
      throw Error(ErrorKind::kRemote, what + ": got " + std::to_string(buf.size()) + " bytes for a range of " +
                                          std::to_string(len));
    }
    return buf;
  }

  // [next, end) of an object whose first range get() read:
  // download_concurrency ranges in flight, written to `out` in order.
  void get_remaining_ranges(const std::string& key, const std::string& full, const std::string& what,
                            const std::string& etag, uint64_t next, uint64_t end, ByteSink& out) {
    std::deque<std::future<std::vector<uint8_t>>> window;
    try {
      while (next < end || !window.empty()) {
        while (next < end && window.size() < size_t(std::max(1, c_.download_concurrency))) {
          uint64_t len = std::min<uint64_t>(c_.download_chunk, end - next);
          window.push_back(
              std::async(std::launch::async, [=, this] { return get_range(key, full, what, etag, next, len); }));
          next += len;
        }
        std::vector<uint8_t> buf = window.front().get();
        window.pop_front();
        out.write(buf.data(), buf.size());
      }
    } catch (...) {
      for (auto& f : window) {
        if (f.valid()) f.wait();  // the one whose get() threw is spent
      }
      throw;
    }
  }

  std::optional<ObjectInfo> head(const std::string& key) override {
    check_key(key);
    Call call;
    call.method = "HEAD";
    call.full_key = c_.prefix + key;
    call.what = "HEAD " + c_.url + key;
    HttpResponse r = send(call);
    if (r.status == 404) return std::nullopt;
    if (r.status < 200 || r.status >= 300) fail(r, call);
    ObjectInfo info;
    info.key = key;
    info.size = std::strtoull(r.header("content-length").c_str(), nullptr, 10);
    info.modified_ms = parse_http_date_ms(r.header("last-modified"));
    return info;
  }

  std::vector<ObjectInfo> list(const std::string& prefix, const std::string& start_after) override {
    std::vector<ObjectInfo> out;
    std::string token;
    std::string after = start_after.empty() ? "" : c_.prefix + start_after;
    std::string last_listed;  // the last key of all pages so far
    for (;;) {
      Call call;
      call.method = "GET";
      call.full_key = "";
      call.what = "LIST " + c_.url + prefix;
      call.query = {{"list-type", "2"}, {"prefix", c_.prefix + prefix}};
      if (!token.empty()) call.query.emplace_back("continuation-token", token);
      else if (!after.empty()) call.query.emplace_back("start-after", after);
      HttpResponse r = send(call);
      if (r.status != 200) fail(r, call);
      XmlElement doc = parse_s3_answer(r.body, "ListBucketResult", call.what, c_.endpoint);
      std::string last;
      for (const XmlElement* item : doc.all("Contents")) {
        ObjectInfo info;
        auto full = item->child_text("Key");
        auto size = item->child_text("Size");
        if (!full || full->empty() || !size || size->empty() ||
            size->find_first_not_of("0123456789") != std::string::npos || size->size() > 19) {
          throw Error(ErrorKind::kRemote, call.what + ": " + c_.endpoint +
                                              " listed an object without a valid Key and Size (body starts '" +
                                              body_excerpt(r.body) + "')");
        }
        // Keys ascend across pages: a server whose paging repeats itself
        // would otherwise be listed forever, into ever more memory.
        if (!last_listed.empty() && *full <= last_listed) {
          throw Error(ErrorKind::kRemote, call.what + ": " + c_.endpoint + " listed '" + *full +
                                              "' again or out of order after '" + last_listed +
                                              "': its listing does not advance");
        }
        last = last_listed = *full;
        if (full->compare(0, c_.prefix.size(), c_.prefix) != 0) continue;
        info.key = full->substr(c_.prefix.size());
        info.size = std::strtoull(size->c_str(), nullptr, 10);
        info.modified_ms = parse_iso8601_ms(item->child_text("LastModified").value_or(""));
        if (!start_after.empty() && info.key <= start_after) continue;
        out.push_back(std::move(info));
      }
      if (doc.child_text("IsTruncated").value_or("false") != "true") break;
      const std::string previous_token = token;
      token = doc.child_text("NextContinuationToken").value_or("");
      if (!token.empty() && token == previous_token) {
        throw Error(ErrorKind::kRemote, call.what + ": " + c_.endpoint +
                                            " answered with the continuation token it was given: its listing does "
                                            "not advance");
      }
      if (token.empty()) {
        // No token (some servers): continue after the last key instead.
        if (last.empty()) break;
        after = last;
      }
    }
    // S3 sorts by UTF-8 bytes already; sorting again costs little and keeps
    // the contract with servers that do not.
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  void remove(const std::vector<std::string>& keys) override {
    for (const auto& k : keys) check_key(k);
    for (size_t i = 0; i < keys.size(); i += 1000) {
      std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>";
      for (size_t j = i; j < std::min(keys.size(), i + 1000); ++j) {
        body += "<Object><Key>" + xml_escape(c_.prefix + keys[j]) + "</Key></Object>";
      }
      body += "</Delete>";
      Call call;
      call.method = "POST";
      call.full_key = "";
      call.what = "DELETE " + c_.url + " (" + std::to_string(keys.size()) + " keys)";
      call.query = {{"delete", ""}};
      call.body = as_bytes(body);
      // DeleteObjects requires a body checksum.
      call.headers = {{"Content-MD5", base64(md5(call.body))}, {"Content-Type", "application/xml"}};
      HttpResponse r = send(call);
      if (r.status != 200) fail(r, call);
      XmlElement doc = parse_s3_answer(r.body, "DeleteResult", call.what, c_.endpoint);
      auto errors = doc.all("Error");
      if (!errors.empty()) {
        std::string k = errors[0]->child_text("Key").value_or("");
        std::string code = errors[0]->child_text("Code").value_or("");
        std::string msg = errors[0]->child_text("Message").value_or("");
        throw Error(ErrorKind::kRemote, call.what + ": " + std::to_string(errors.size()) +
                                            " key(s) not deleted, first '" + k + "': " + code + ": " + msg);
      }
    }
  }

  std::string url() const override { return c_.url; }

  S3Stats stats() const {
    S3Stats s;
    s.requests = requests_;
    s.retries = retries_;
    s.throttled = throttled_;
    s.transport_errors = transport_errors_;
    s.bytes_sent = bytes_sent_;
    s.bytes_received = bytes_received_;
    s.multipart_uploads = multipart_uploads_;
    s.multipart_aborts = multipart_aborts_;
    s.multipart_complete_ms = multipart_complete_ms_;
    s.conditional_put_honoured = cond_state_;
    return s;
  }

 private:
  struct Call {
    std::string method;
    std::string full_key;  // "" for the bucket
    KeyValues query;
    KeyValues headers;
    std::span<const uint8_t> body;
    std::string payload_hash;  // computed from body when empty
    std::function<void(const char*, size_t)> on_body;
    std::function<bool(const HttpResponse&)> on_headers;
    std::function<void(Call&)> before_attempt;
    std::string what;  // "PUT s3://bucket/prefix/key", for messages
    int attempts = 0;  // how many were sent
  };

  // One writer per key at a time within this store (head-check mode only).
  class KeyLock {
   public:
    KeyLock(S3Store& s, std::string key) : s_(s), key_(std::move(key)) {
      std::unique_lock lock(s_.keys_mu_);
      s_.keys_cv_.wait(lock, [&] { return !s_.busy_keys_.count(key_); });
      s_.busy_keys_.insert(key_);
    }
    ~KeyLock() {
      std::lock_guard lock(s_.keys_mu_);
      s_.busy_keys_.erase(key_);
      s_.keys_cv_.notify_all();
    }

   private:
    S3Store& s_;
    std::string key_;
  };

  static void check_key(const std::string& key) {
    if (key.empty() || key.front() == '/' || key.find('\0') != std::string::npos) {
      throw Error(ErrorKind::kInvalidArgument, "invalid object key '" + key + "'");
    }
  }

  Error not_found(const std::string& key) const {
    return Error(ErrorKind::kNotFound, "no object at " + c_.url + key);
  }
  Error already_exists(const std::string& key) const {
    return Error(ErrorKind::kAlreadyExists, "an object already exists at " + c_.url + key);
  }
  Error changed(const std::string& key) const {
    return Error(ErrorKind::kRetryable, "GET " + c_.url + key + ": the object was replaced while it was being read");
  }

  std::chrono::milliseconds backoff(int attempt) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    int64_t base = c_.backoff_base.count();
    int64_t cap = c_.backoff_cap.count();
    int64_t d = std::min<int64_t>(cap, base << std::min(attempt, 20));
    // Half fixed, half random ("equal jitter"): clients that failed together
    // spread out, yet none comes back at once.
    int64_t half = d / 2;
    return std::chrono::milliseconds(half + (half > 0 ? int64_t(rng() % uint64_t(half + 1)) : 0));
  }

  // Sends the call, retrying what can be retried. Returns the final answer
  // (2xx, 3xx or a non-retryable error status, which the caller judges).
  HttpResponse send(Call& call) {
    S3Target target = s3_target(c_, call.full_key);
    std::string query = canonical_query(call.query);
    std::string payload_hash = call.payload_hash.empty() ? sha256_hex(call.body) : call.payload_hash;
    std::string last;
    int max = std::max(1, c_.max_attempts);
    for (int attempt = 1; attempt <= max; ++attempt) {
      if (attempt > 1) {
        retries_++;
        std::this_thread::sleep_for(backoff(attempt - 1));
      }
      if (call.before_attempt) call.before_attempt(call);
      call.attempts = attempt;
      std::string date = amz_date(std::chrono::system_clock::now() + std::chrono::milliseconds(clock_offset_ms_.load()));
      SigningInput in;
      in.method = call.method;
      in.canonical_uri = target.canonical_uri;
      in.query = call.query;
      in.headers = {{"host", target.host}, {"x-amz-date", date}, {"x-amz-content-sha256", payload_hash}};
      if (!c_.credentials.session_token.empty()) {
        in.headers.emplace_back("x-amz-security-token", c_.credentials.session_token);
      }
      for (const auto& h : call.headers) in.headers.push_back(h);
      in.payload_hash = payload_hash;
      SigningResult sig = sign_v4(in, c_.credentials, c_.region, "s3", date);

      HttpRequest req;
      req.method = call.method;
      req.url = target.url + (query.empty() ? "" : "?" + query);
      req.headers = in.headers;
      req.headers.emplace_back("Authorization", sig.authorization);
      req.headers.emplace_back("User-Agent", "duckblock");
      req.body = call.body;
      req.on_body = call.on_body;
      req.on_headers = call.on_headers;
      requests_++;
      bytes_sent_ += call.body.size();
      HttpResponse r;
      try {
        r = http_.perform(req);
      } catch (const TransportError& e) {
        if (!e.retryable()) {
          throw Error(ErrorKind::kRemote, call.what + ": " + e.what());
        }
        transport_errors_++;
        last = e.what();
        continue;
      }
      bytes_received_ += r.body_bytes;
      if (r.status < 400) return r;
      std::string code = error_code(r.body);
      if (code == "RequestTimeTooSkewed") {
        // Our clock is off: adopt the server's, as AWS SDKs do, and sign again.
        int64_t server = parse_http_date_ms(r.header("date"));
        if (server > 0) clock_offset_ms_ = server - wall_clock_ms();
      }
      bool retry = retryable_status(r.status) || retryable_code(code);
      if (!retry) return r;
      if (r.status == 503 || r.status == 429 || code == "SlowDown") throttled_++;
      last = describe(r);
    }
    throw Error(ErrorKind::kRetryable,
                call.what + ": gave up after " + std::to_string(max) + " attempts; last: " + last);
  }

  static std::string describe(const HttpResponse& r) {
    auto doc = parse_xml(r.body);
    bool s3_error = doc && doc->name == "Error";
    std::string code = s3_error ? doc->child_text("Code").value_or("") : "";
    std::string msg = s3_error ? doc->child_text("Message").value_or("") : "";
    std::string out = "HTTP " + std::to_string(r.status);
    if (!code.empty()) out += " " + code;
    if (!msg.empty()) out += ": " + msg;
    std::string rid = s3_error ? doc->child_text("RequestId").value_or("") : "";
    if (rid.empty()) rid = r.header("x-amz-request-id");
    if (!rid.empty()) out += " (request id " + rid + ")";
    // Not S3's answer (a proxy's or load balancer's page): show its start.
    if (!s3_error && !body_excerpt(r.body).empty()) {
      out += " (not an S3 error document; body starts '" + body_excerpt(r.body) + "')";
    }
    return out;
  }

  // Turns a final error answer into the Error the caller should see.
  [[noreturn]] void fail(const HttpResponse& r, const Call& call) const {
    std::string code = error_code(r.body);
    std::string text = call.what + ": " + describe(r);
    const std::string& id = c_.credentials.access_key_id;
    const std::string& src = c_.credentials.source;
    if (r.status == 404 || code == "NoSuchKey" || code == "NoSuchBucket") {
      if (code == "NoSuchBucket") {
        throw Error(ErrorKind::kNotFound, call.what + ": bucket '" + c_.bucket + "' does not exist at " + c_.endpoint);
      }
      throw Error(ErrorKind::kNotFound, text);
    }
    if (code == "SignatureDoesNotMatch") {
      throw Error(ErrorKind::kAuth, text + " — the secret access key for access key id '" + id + "' (from " + src +
                                        ") is wrong");
    }
    if (code == "InvalidAccessKeyId") {
      throw Error(ErrorKind::kAuth, text + " — the server does not know access key id '" + id + "' (from " + src + ")");
    }
    if (code == "ExpiredToken" || code == "InvalidToken" || code == "TokenRefreshRequired") {
      throw Error(ErrorKind::kAuth, text + " — the session token from " + src + " is expired or invalid");
    }
    if (code == "AuthorizationHeaderMalformed") {
      throw Error(ErrorKind::kAuth, text + " — check the region (" + c_.region + ")");
    }
    if (r.status == 403) {
      throw Error(ErrorKind::kAuth, text + (code.empty() ? " (no error code in a HEAD answer)" : "") +
                                        " — access key id '" + id + "' (from " + src +
                                        ") was refused: wrong secret, or no permission on bucket '" + c_.bucket + "'");
    }
    throw Error(ErrorKind::kRemote, text);
  }

  // Probes once whether the server refuses a conditional PUT on an existing
  // key; reports on stderr when it does not, since put_if_absent is then
  // only best effort.
  bool conditional_put_honoured() {
    std::lock_guard lock(cond_mu_);
    if (cond_state_ >= 0) return cond_state_ == 1;
    static std::atomic<uint64_t> counter{0};
    std::string key = ".duckblock-conditional-put-probe-" + std::to_string(wall_clock_ms()) + "-" +
                      std::to_string(counter++) + "-" + std::to_string(std::random_device{}());
    auto put_probe = [&](bool conditional) {
      Call call;
      call.method = "PUT";
      call.full_key = c_.prefix + key;
      call.what = "PUT " + c_.url + key;
      if (conditional) call.headers = {{"If-None-Match", "*"}};
      return send(call);
    };
    HttpResponse first = put_probe(false);
    if (first.status >= 300) {
      Call what;
      what.what = "PUT " + c_.url + key;
      fail(first, what);
    }
    HttpResponse second = put_probe(true);
    cond_state_ = second.status == 412 ? 1 : 0;
    try {
      remove({key});
    } catch (const Error&) {
      // A probe left behind is harmless; the next probe uses another name.
    }
    if (cond_state_ == 0) {
      duckblock::log(LogLevel::kWarn, "the S3 server at " + c_.endpoint +
                               " ignores If-None-Match on PUT; put_if_absent falls back to a HEAD check, which is "
                               "atomic only within this process");
    }
    return cond_state_ == 1;
  }

  void put_impl(const std::string& key, ByteSource& data, bool conditional) {
    check_key(key);
    size_t part = c_.part_size;
    if (auto rem = data.remaining(); rem && *rem > uint64_t(part) * 10000) {
      // S3 allows 10,000 parts: make them big enough.
      part = size_t((*rem + 9999) / 10000);
      part = (part + (1u << 20) - 1) & ~size_t((1u << 20) - 1);
    }
    std::vector<uint8_t> first;
    read_full(data, first, part);
    if (first.size() < part) {
      put_single(key, first, conditional);
      return;
    }
    std::vector<uint8_t> second;
    read_full(data, second, part);
    if (second.empty()) {
      put_single(key, first, conditional);
      return;
    }
    put_multipart(key, std::move(first), std::move(second), data, part, conditional);
  }

  void put_single(const std::string& key, const std::vector<uint8_t>& bytes, bool conditional) {
    Call call;
    call.method = "PUT";
    call.full_key = c_.prefix + key;
    call.what = "PUT " + c_.url + key;
    call.body = bytes;
    if (conditional) call.headers = {{"If-None-Match", "*"}};
    HttpResponse r = send(call);
    if (r.status >= 200 && r.status < 300) return;
    if (r.status == 412 && conditional) {
      // After a retry, a 412 may be our own first attempt having landed: an
      // object with our bytes' MD5 as its ETag is ours.
      if (call.attempts > 1) {
        Call h;
        h.method = "HEAD";
        h.full_key = call.full_key;
        h.what = "HEAD " + c_.url + key;
        HttpResponse hr = send(h);
        if (hr.status == 200 && hr.header("etag") == "\"" + hex(md5(bytes)) + "\"") return;
      }
      throw already_exists(key);
    }
    fail(r, call);
  }

  void put_multipart(const std::string& key, std::vector<uint8_t> first, std::vector<uint8_t> second,
                     ByteSource& data, size_t part_size, bool conditional) {
    std::string full = c_.prefix + key;
    std::string what = "PUT " + c_.url + key;
    Call create;
    create.method = "POST";
    create.full_key = full;
    create.what = what + " (create multipart upload)";
    create.query = {{"uploads", ""}};
    HttpResponse cr = send(create);
    if (cr.status != 200) fail(cr, create);
    std::string upload_id =
        parse_s3_answer(cr.body, "InitiateMultipartUploadResult", create.what, c_.endpoint).child_text("UploadId").value_or("");
    if (upload_id.empty()) throw Error(ErrorKind::kRemote, create.what + ": no UploadId in the answer");
    multipart_uploads_++;

    // Parts go up upload_concurrency at a time; the window is in part order,
    // so the ETags are collected in order as it drains.
    std::vector<std::string> etags;
    std::deque<std::future<std::string>> window;
    uint64_t total = 0;
    auto upload_part = [this, full, what, upload_id](int number, std::vector<uint8_t> buf) {
      Call call;
      call.method = "PUT";
      call.full_key = full;
      call.what = what + " (part " + std::to_string(number) + ")";
      call.query = {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}};
      call.body = buf;
      HttpResponse r = send(call);
      if (r.status != 200) fail(r, call);
      std::string etag = r.header("etag");
      if (etag.empty()) throw Error(ErrorKind::kRemote, call.what + ": no ETag in the answer");
      return etag;
    };
    try {
      std::vector<uint8_t> next = std::move(second);
      std::vector<uint8_t> current = std::move(first);
      int number = 0;
      for (;;) {
        ++number;
        if (number > 10000) throw Error(ErrorKind::kInvalidArgument, what + ": object too large for 10,000 parts");
        total += current.size();
        while (window.size() >= size_t(std::max(1, c_.upload_concurrency))) {
          etags.push_back(window.front().get());
          window.pop_front();
        }
        window.push_back(std::async(std::launch::async, upload_part, number, std::move(current)));
        if (next.empty()) break;
        current = std::move(next);
        // Unknown-length sources: grow the parts so 10,000 of them still
        // hold a very large object.
        size_t size = part_size * (1 + size_t(number) / 1000);
        next = std::vector<uint8_t>();
        read_full(data, next, size);
      }
      while (!window.empty()) {
        etags.push_back(window.front().get());
        window.pop_front();
      }

      std::string body = "<CompleteMultipartUpload>";
      for (size_t i = 0; i < etags.size(); ++i) {
        body += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + xml_escape(etags[i]) +
                "</ETag></Part>";
      }
      body += "</CompleteMultipartUpload>";
      auto t0 = std::chrono::steady_clock::now();
      complete_multipart(key, full, upload_id, body, total, conditional);
      multipart_complete_ms_ += uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - t0).count());
    } catch (...) {
      for (auto& f : window) {
        if (f.valid()) f.wait();  // the one whose get() threw is spent
      }
      abort_multipart(full, upload_id, what);
      throw;
    }
  }

  void complete_multipart(const std::string& key, const std::string& full, const std::string& upload_id,
                          const std::string& body, uint64_t total, bool conditional) {
    std::string what = "PUT " + c_.url + key + " (complete multipart upload)";
    // CompleteMultipartUpload can answer 200 and still fail (the error is in
    // the body), so retryable errors there are retried here.
    for (int attempt = 1;; ++attempt) {
      Call call;
      call.method = "POST";
      call.full_key = full;
      call.what = what;
      call.query = {{"uploadId", upload_id}};
      call.body = as_bytes(body);
      call.headers = {{"Content-Type", "application/xml"}};
      if (conditional) call.headers.emplace_back("If-None-Match", "*");
      HttpResponse r = send(call);
      if (r.status == 200) {
        // Success and failure both come with status 200: the root says which.
        auto doc = parse_xml(r.body);
        if (!doc || doc->name != "Error") {
          parse_s3_answer(r.body, "CompleteMultipartUploadResult", what, c_.endpoint);  // throws if not that
          return;
        }
        std::string code = doc->child_text("Code").value_or("");
        if (retryable_code(code) && attempt < c_.max_attempts) {
          retries_++;
          std::this_thread::sleep_for(backoff(attempt));
          continue;
        }
        throw Error(ErrorKind::kRemote, what + ": " + describe(r));
      }
      if (r.status == 412 && conditional) throw already_exists(key);
      if (r.status == 404 && error_code(r.body) == "NoSuchUpload" && call.attempts > 1) {
        // An earlier attempt completed the upload but its answer was lost.
        if (auto info = head(key); info && info->size == total) return;
      }
      fail(r, call);
    }
  }

  void abort_multipart(const std::string& full, const std::string& upload_id, const std::string& what) {
    multipart_aborts_++;
    try {
      Call call;
      call.method = "DELETE";
      call.full_key = full;
      call.what = what + " (abort multipart upload)";
      call.query = {{"uploadId", upload_id}};
      send(call);
    } catch (const Error&) {
      // Best effort: the parts are invisible either way, and a bucket
      // lifecycle rule (AbortIncompleteMultipartUpload) reclaims them.
    }
  }

  S3Config c_;
  HttpClient http_;
  std::atomic<int64_t> clock_offset_ms_{0};
  std::atomic<uint64_t> requests_{0}, retries_{0}, throttled_{0}, transport_errors_{0}, bytes_sent_{0},
      bytes_received_{0}, multipart_uploads_{0}, multipart_aborts_{0}, multipart_complete_ms_{0};
  std::mutex cond_mu_;
  std::atomic<int> cond_state_{-1};
  std::mutex keys_mu_;
  std::condition_variable keys_cv_;
  std::set<std::string> busy_keys_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_s3_store(const S3Config& config) { return std::make_unique<S3Store>(config); }

S3Stats s3_stats(const ObjectStore& store) {
  auto* s = dynamic_cast<const S3Store*>(&store);
  if (!s) throw Error(ErrorKind::kInvalidArgument, "not an S3 store: " + store.url());
  return s->stats();
}

}  // namespace s3

std::unique_ptr<ObjectStore> make_s3_store_from_url(const std::string& url, const StoreOptions& options) {
  return s3::make_s3_store(s3::s3_config_from_url(url, options));
}

}  // namespace duckblock
