#include "s3_fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <stdexcept>

#include "duckblock/sha256.h"

namespace duckblock::test {

namespace {

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

bool write_all(int fd, const std::string& s) { return write_all(fd, s.data(), s.size()); }

void reset_close(int fd) {
  linger l{1, 0};  // SO_LINGER 0: close sends RST, as a dropped connection does
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

std::string http_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::string xml_answer(int status, const std::string& reason, const std::string& code,
                       const std::string& extra_headers = "") {
  std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + "</Code><Message>" +
                     "injected by the test proxy</Message><RequestId>proxy</RequestId></Error>";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: application/xml\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Reads from fd into buf until buf holds "\r\n\r\n"; returns the head's end
// (after the blank line) or npos on EOF.
size_t read_head(int fd, std::string& buf) {
  for (;;) {
    size_t end = buf.find("\r\n\r\n");
    if (end != std::string::npos) return end + 4;
    char tmp[65536];
    ssize_t r = ::recv(fd, tmp, sizeof tmp, 0);
    if (r <= 0) return std::string::npos;
    buf.append(tmp, size_t(r));
  }
}

}  // namespace

FaultProxy::FaultProxy(int upstream_port, Policy policy) : upstream_port_(upstream_port), policy_(std::move(policy)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("proxy: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FaultProxy::~FaultProxy() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : workers_) t.join();
}

void FaultProxy::set_policy(Policy policy) {
  std::lock_guard lock(mu_);
  policy_ = std::move(policy);
}

std::vector<RecordedRequest> FaultProxy::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

void FaultProxy::accept_loop() {
  while (!stopping_) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard lock(mu_);
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { serve(fd); });
  }
}

void FaultProxy::serve(int fd) {
  std::string buf;
  auto forget = [&](bool reset) {
    {
      std::lock_guard lock(mu_);
      open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    }
    if (reset) reset_close(fd);
    else ::close(fd);
  };
  for (;;) {
    size_t head_end = read_head(fd, buf);
    if (head_end == std::string::npos) return forget(false);
    std::string head = buf.substr(0, head_end);
    buf.erase(0, head_end);

    RecordedRequest rec;
    size_t line_end = head.find("\r\n");
    std::string request_line = head.substr(0, line_end);
    size_t sp1 = request_line.find(' '), sp2 = request_line.rfind(' ');
    rec.method = request_line.substr(0, sp1);
    rec.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string upstream_head = request_line + "\r\n";
    size_t pos = line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == pos || e == std::string::npos) break;
      std::string line = head.substr(pos, e - pos);
      pos = e + 2;
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      rec.headers[name] = value;
      if (name != "connection") upstream_head += line + "\r\n";
    }
    // The upstream connection lasts one request, which keeps relaying simple.
    upstream_head += "Connection: close\r\n\r\n";

    uint64_t body_len = std::strtoull(rec.header("content-length").c_str(), nullptr, 10);
    while (buf.size() < body_len) {
      char tmp[65536];
      ssize_t r = ::recv(fd, tmp, sizeof tmp, 0);
      if (r <= 0) return forget(false);
      buf.append(tmp, size_t(r));
    }
    std::string body = buf.substr(0, body_len);
    buf.erase(0, body_len);
    rec.body_size = body_len;
    rec.body_sha256 = to_hex(sha256({reinterpret_cast<const uint8_t*>(body.data()), body.size()}));

    Fault fault = Fault::kNone;
    {
      std::lock_guard lock(mu_);
      uint64_t index = next_index_++;
      if (policy_) fault = policy_(rec, index);
      rec.fault = fault;
      requests_.push_back(rec);
    }
    if (fault != Fault::kNone) faults_++;

    switch (fault) {
      case Fault::k503:
        if (!write_all(fd, xml_answer(503, "Service Unavailable", "ServiceUnavailable"))) return forget(false);
        continue;
      case Fault::kSlowDown:
        if (!write_all(fd, xml_answer(503, "Slow Down", "SlowDown"))) return forget(false);
        continue;
      case Fault::kSkew:
        if (!write_all(fd, xml_answer(403, "Forbidden", "RequestTimeTooSkewed",
                                      "Date: " + http_date(std::time(nullptr) + 3600) + "\r\n"))) {
          return forget(false);
        }
        continue;
      case Fault::kPreconditionFailed:
        if (!write_all(fd, xml_answer(412, "Precondition Failed", "PreconditionFailed"))) return forget(false);
        continue;
      case Fault::kBadRequest:
        if (!write_all(fd, xml_answer(400, "Bad Request", "InvalidArgument"))) return forget(false);
        continue;
      case Fault::kOk:
        if (!write_all(fd, "HTTP/1.1 200 OK\r\nETag: \"proxy\"\r\nContent-Length: 0\r\n\r\n")) return forget(false);
        continue;
      case Fault::kListLoop:
      case Fault::kListLoopEmpty: {
        std::string keys;
        if (fault == Fault::kListLoop) {
          for (const char* k : {"loop/a", "loop/b"}) {
            keys += std::string("<Contents><Key>") + k + "</Key><Size>1</Size></Contents>";
          }
        }
        std::string page = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name>" + keys +
                           "<IsTruncated>true</IsTruncated><NextContinuationToken>again</NextContinuationToken>"
                           "</ListBucketResult>";
        if (!write_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: " +
                               std::to_string(page.size()) + "\r\n\r\n" + page)) {
          return forget(false);
        }
        continue;
      }
      case Fault::kHtml:
      case Fault::kHtml502: {
        std::string page = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>It works!</body></html>\n";
        std::string status = fault == Fault::kHtml ? "200 OK" : "502 Bad Gateway";
        if (!write_all(fd, "HTTP/1.1 " + status + "\r\nContent-Type: text/html\r\nContent-Length: " +
                               std::to_string(page.size()) + "\r\n\r\n" + page)) {
          return forget(false);
        }
        continue;
      }
      case Fault::kResetBefore:
        return forget(true);
      case Fault::kStall: {
        // Say nothing until the client hangs up (its stall timeout) or the
        // proxy stops.
        for (int i = 0; i < 100 && !stopping_; ++i) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 100) > 0) {
            char tmp[4096];
            if (::recv(fd, tmp, sizeof tmp, 0) <= 0) break;
          }
        }
        return forget(false);
      }
      case Fault::kNone:
      case Fault::kResetMidBody:
        break;
    }

    int up = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(uint16_t(upstream_port_));
    if (::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || !write_all(up, upstream_head) ||
        !write_all(up, body)) {
      ::close(up);
      return forget(true);
    }
    std::string resp;
    for (;;) {
      char tmp[65536];
      ssize_t r = ::recv(up, tmp, sizeof tmp, 0);
      if (r <= 0) break;
      resp.append(tmp, size_t(r));
    }
    ::close(up);
    if (fault == Fault::kResetMidBody) {
      size_t resp_head = resp.find("\r\n\r\n");
      size_t cut = resp_head == std::string::npos ? resp.size() / 2 : resp_head + 4 + (resp.size() - resp_head - 4) / 2;
      write_all(fd, resp.data(), cut);
      return forget(true);
    }
    write_all(fd, resp);
    // The server answered "Connection: close"; so does the proxy.
    return forget(false);
  }
}

FaultProxy::Policy random_faults(double rate, std::vector<Fault> kinds, uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [rate, kinds, rng](const RecordedRequest&, uint64_t) {
    std::uniform_real_distribution<double> u(0, 1);
    if (u(*rng) >= rate) return Fault::kNone;
    return kinds[(*rng)() % kinds.size()];
  };
}

}  // namespace duckblock::test
