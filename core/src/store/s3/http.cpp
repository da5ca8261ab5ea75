#include "http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "duckblock/error.h"

namespace duckblock::s3 {

namespace {

struct GlobalInit {
  GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

void ensure_global_init() {
  static GlobalInit init;  // thread-safe once; curl_global_init is not
}

struct Transfer {
  const HttpRequest* req = nullptr;
  HttpResponse* resp = nullptr;
  size_t upload_pos = 0;
  std::exception_ptr error;
  bool stopped = false;  // on_headers asked to skip the body
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  std::string line(data, len);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after a 100 Continue, say): start over.
    t->resp->headers.clear();
    size_t sp = line.find(' ');
    t->resp->status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    return len;
  }
  if (line.empty()) {
    // The end of the headers. Interim (1xx) answers are followed by more.
    if (t->resp->status >= 200 && t->req->on_headers) {
      try {
        if (!t->req->on_headers(*t->resp)) {
          t->stopped = true;
          return 0;  // aborts the transfer
        }
      } catch (...) {
        t->error = std::current_exception();
        return 0;
      }
    }
    return len;
  }
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && (line[v] == ' ' || line[v] == '\t')) ++v;
    t->resp->headers.emplace_back(std::move(name), line.substr(v));
  }
  return len;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  t->resp->body_bytes += len;
  bool ok = t->resp->status >= 200 && t->resp->status < 300;
  if (ok && t->req->on_body) {
    try {
      t->req->on_body(data, len);
    } catch (...) {
      t->error = std::current_exception();
      return 0;  // makes curl stop with CURLE_WRITE_ERROR
    }
  } else if (t->resp->body.size() < (ok ? SIZE_MAX : (1u << 20))) {
    t->resp->body.append(data, len);  // an error body: keep the start only
  }
  return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t left = t->req->body.size() - t->upload_pos;
  size_t len = std::min(left, size * n);
  std::memcpy(buf, t->req->body.data() + t->upload_pos, len);
  t->upload_pos += len;
  return len;
}

// Rewinding lets curl resend the body itself when it must (an auth or
// redirect negotiation); our own retries build a fresh transfer anyway.
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || size_t(offset) > t->req->body.size()) return CURL_SEEKFUNC_FAIL;
  t->upload_pos = size_t(offset);
  return CURL_SEEKFUNC_OK;
}

bool retryable_code(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return "";
}

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) { ensure_global_init(); }

HttpClient::~HttpClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpClient::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  CURL* h = curl_easy_init();
  if (!h) throw TransportError("cannot create a curl handle", false);
  return h;
}

void HttpClient::release(void* handle) {
  std::lock_guard lock(mu_);
  idle_.push_back(handle);
}

namespace {

// A CR or LF would end a header early and inject another one. Values come
// from settings checked when the store is made; this is the last line of
// defence for all of them. A value may be a secret: it is not shown.
void check_sendable(const HttpRequest& req) {
  auto is_ctl = [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; };
  for (const auto& [k, v] : req.headers) {
    if (k.empty() || std::any_of(k.begin(), k.end(), is_ctl) || k.find(':') != std::string::npos ||
        std::any_of(v.begin(), v.end(), is_ctl)) {
      bool name_ok = !k.empty() && std::none_of(k.begin(), k.end(), is_ctl);
      throw Error(ErrorKind::kInvalidArgument,
                  "refusing to send " + req.method + " with a header" + (name_ok ? " ('" + k + "')" : "") +
                      " that contains a control character or a bad name (the value is not shown)");
    }
  }
  if (std::any_of(req.url.begin(), req.url.end(), is_ctl)) {
    throw Error(ErrorKind::kInvalidArgument, "refusing to send " + req.method + " to a URL with a control character");
  }
}

// The request's method, and its body for PUT and POST.
void set_method(CURL* h, const HttpRequest& req, Transfer& t) {
  const std::string& m = req.method;
  if (m == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (m == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(req.body.size()));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &t);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
  } else if (m == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req.body.size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.empty() ? "" : reinterpret_cast<const char*>(req.body.data()));
  } else if (m != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m.c_str());
  }

}

// Options every transfer sets: the URL, timeouts, TLS, buffers, callbacks,
// proxies.
void set_transfer_options(CURL* h, const HttpOptions& options, const HttpRequest& req, Transfer& t, char* errbuf) {
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // keys may contain "." or ".." segments; send them verbatim
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, options.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, options.stall_timeout_s);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  // Loopback endpoints never go through a proxy from the environment.
  std::string noproxy = "127.0.0.1,localhost,::1";
  if (const char* np = std::getenv("no_proxy"); np && *np) noproxy = std::string(np) + "," + noproxy;
  curl_easy_setopt(h, CURLOPT_NOPROXY, noproxy.c_str());
}

}  // namespace

HttpResponse HttpClient::perform(const HttpRequest& req) {
  check_sendable(req);
  CURL* h = static_cast<CURL*>(acquire());
  // curl_easy_reset keeps the handle's live connections and caches: that is
  // the connection reuse.
  curl_easy_reset(h);
  HttpResponse resp;
  Transfer t;
  t.req = &req;
  t.resp = &resp;
  char errbuf[CURL_ERROR_SIZE] = {0};

  set_transfer_options(h, options_, req, t, errbuf);
  curl_slist* connect_to = nullptr;
  if (!options_.connect_to.empty()) {
    connect_to = curl_slist_append(nullptr, ("::" + options_.connect_to).c_str());
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
  }

  set_method(h, req, t);

  const std::string& m = req.method;
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : req.headers) {
    headers = curl_slist_append(headers, (k + ": " + v).c_str());
  }
  // No "Expect: 100-continue" round trip before each body, and no default
  // content type: we sign exactly the headers we send.
  headers = curl_slist_append(headers, "Expect:");
  if (m == "POST" || m == "PUT") headers = curl_slist_append(headers, "Content-Type:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  curl_slist_free_all(connect_to);
  if (rc != CURLE_OK && t.stopped && !t.error) {
    // Stopped on purpose after the headers: the connection has an unread
    // body, so it is not reused.
    curl_easy_cleanup(h);
    return resp;
  }
  if (rc != CURLE_OK) {
    // A failed transfer may leave the connection in an unknown state: drop
    // the handle (and its connections) rather than pool it.
    curl_easy_cleanup(h);
    if (t.error) std::rethrow_exception(t.error);
    std::string what = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    throw TransportError(what + " (curl code " + std::to_string(int(rc)) + ")", retryable_code(rc));
  }
  release(h);
  return resp;
}

}  // namespace duckblock::s3
