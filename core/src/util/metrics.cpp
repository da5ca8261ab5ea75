// Prometheus text exposition and its HTTP listener. See duckblock/metrics.h.
//
// Why a listener of our own: no C++ Prometheus client is packaged in Debian
// (apt-cache search prometheus lists Go and Perl clients only), and
// prometheus-cpp's exposer would bring civetweb, a whole web server, for one
// GET. The exposition format is plain text; serving it needs a socket, a
// thread and a request line.
#include "duckblock/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/log.h"

namespace duckblock {

namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// One metric family: its header, then one line per sample.
struct Family {
  std::string& out;
  Family(std::string& o, const char* name, const char* type, const char* help) : out(o), name_(name) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& labels, const std::string& value) { out += name_ + "{" + labels + "} " + value + "\n"; }
  std::string name_;
};

using LeaderValue = std::function<std::optional<int64_t>(const ReplicationStatus&)>;
using FollowerValue = std::function<std::optional<int64_t>(const FollowerSample&)>;

struct Def {
  const char* name;
  const char* type;
  const char* help;
};

}  // namespace

int64_t metrics_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<int64_t> replication_lag_ms(const ReplicationStatus& s, int64_t now_ms) {
  if (s.pending_segments == 0) return 0;
  if (s.last_upload_ms == 0) return std::nullopt;
  return std::max<int64_t>(0, now_ms - s.last_upload_ms);
}

// (Over 80 lines: most of it is the table of metric definitions, one
// entry per metric, which reads best in one place.)
std::string render_metrics(const std::vector<ReplicationStatus>& leaders,
                           const std::vector<FollowerSample>& followers, int64_t now_ms) {
  std::string out;
  auto i = [](uint64_t v) { return std::optional<int64_t>(static_cast<int64_t>(v)); };
  if (!leaders.empty()) {
    const std::vector<std::pair<Def, LeaderValue>> defs = {
        {{"duckblock_spooled_seq", "gauge", "Last sequence number written to the local spool."},
         [&](const ReplicationStatus& s) { return i(s.spooled_seq); }},
        {{"duckblock_shipped_seq", "gauge", "Last sequence number the store has."},
         [&](const ReplicationStatus& s) { return i(s.uploaded_seq); }},
        {{"duckblock_replication_lag_seq", "gauge", "Sequence numbers spooled but not yet in the store."},
         [&](const ReplicationStatus& s) { return i(s.spooled_seq > s.uploaded_seq ? s.spooled_seq - s.uploaded_seq : 0); }},
        {{"duckblock_replication_lag_ms", "gauge",
          "Milliseconds the store has not advanced while segments wait in the spool (0: none wait)."},
         [&](const ReplicationStatus& s) { return replication_lag_ms(s, now_ms); }},
        {{"duckblock_pending_segments", "gauge", "Segments in the spool waiting to upload."},
         [&](const ReplicationStatus& s) { return i(s.pending_segments); }},
        {{"duckblock_last_snapshot_seq", "gauge", "Sequence number of the newest snapshot in the store."},
         [&](const ReplicationStatus& s) { return i(s.last_snapshot_seq); }},
        {{"duckblock_shipped_bytes_total", "counter", "Encoded checkpoint segment bytes uploaded."},
         [&](const ReplicationStatus& s) { return i(s.bytes_shipped); }},
        {{"duckblock_shipped_objects_total", "counter", "Checkpoint segments (incrementals and snapshots) uploaded."},
         [&](const ReplicationStatus& s) { return i(s.segments_shipped); }},
        {{"duckblock_log_shipped_bytes_total", "counter", "Encoded log (commit) bytes uploaded."},
         [&](const ReplicationStatus& s) { return i(s.log_bytes_shipped); }},
        {{"duckblock_log_shipped_objects_total", "counter", "Log segments uploaded."},
         [&](const ReplicationStatus& s) { return i(s.log_segments_shipped); }},
        {{"duckblock_log_pending_bytes", "gauge", "Committed log bytes not yet in the store."},
         [&](const ReplicationStatus& s) { return i(s.log_pending_bytes); }},
        {{"duckblock_commit_lag_ms", "gauge", "Age of the oldest committed log bytes not yet in the store (0: none)."},
         [&](const ReplicationStatus& s) { return std::optional<int64_t>(s.log_lag_ms); }},
        {{"duckblock_upload_retries_total", "counter", "Uploads that failed and were retried."},
         [&](const ReplicationStatus& s) { return i(s.upload_retries); }},
        {{"duckblock_error", "gauge", "1 while the last upload attempt failed (see duckblock_status() or the log)."},
         [&](const ReplicationStatus& s) { return i(s.last_error ? 1 : 0); }},
        {{"duckblock_fenced", "gauge", "1 once another writer took the chain: nothing more is uploaded."},
         [&](const ReplicationStatus& s) { return i(s.fenced ? 1 : 0); }},
    };
    for (const auto& [def, value] : defs) {
      Family f(out, def.name, def.type, def.help);
      for (const auto& s : leaders) {
        // A value that cannot be known yet (a lag with nothing ever
        // uploaded) is left out rather than reported as a number it is not.
        if (auto v = value(s)) f.sample("db=\"" + escape_label(s.db) + "\"", std::to_string(*v));
      }
    }
  }
  if (!followers.empty()) {
    const std::vector<std::pair<Def, FollowerValue>> defs = {
        {{"duckblock_follower_applied_seq", "gauge", "Last sequence number applied to the replica."},
         [&](const FollowerSample& s) { return i(s.applied_seq); }},
        {{"duckblock_follower_head_seq", "gauge", "The store's head at the follower's last successful poll."},
         [&](const FollowerSample& s) { return i(s.head_seq); }},
        {{"duckblock_follower_lag_seq", "gauge", "Sequence numbers the replica is behind that head."},
         [&](const FollowerSample& s) { return i(s.head_seq > s.applied_seq ? s.head_seq - s.applied_seq : 0); }},
        {{"duckblock_follower_lag_ms", "gauge",
          "Milliseconds since the replica was last known to be at the store's head."},
         [&](const FollowerSample& s) {
           return s.last_current_ms ? std::optional<int64_t>(std::max<int64_t>(0, now_ms - s.last_current_ms))
                                    : std::nullopt;
         }},
        {{"duckblock_follower_log_index", "gauge", "Log segments of the replica's checkpoint applied."},
         [&](const FollowerSample& s) { return i(s.log_index); }},
        {{"duckblock_follower_log_bytes", "gauge", "Length of the replica's log (commits since its checkpoint)."},
         [&](const FollowerSample& s) { return i(s.log_bytes); }},
        {{"duckblock_follower_polls_total", "counter", "Polls of the store."},
         [&](const FollowerSample& s) { return i(s.polls); }},
        {{"duckblock_follower_errors_total", "counter", "Polls that failed (retried at the next poll)."},
         [&](const FollowerSample& s) { return i(s.errors); }},
        {{"duckblock_follower_error", "gauge", "1 while the last poll failed."},
         [&](const FollowerSample& s) { return i(s.error ? 1 : 0); }},
    };
    for (const auto& [def, value] : defs) {
      Family f(out, def.name, def.type, def.help);
      for (const auto& s : followers) {
        if (auto v = value(s)) {
          f.sample("db=\"" + escape_label(s.db) + "\",alias=\"" + escape_label(s.alias) + "\"", std::to_string(*v));
        }
      }
    }
  }
  return out;
}

MetricsAddress parse_metrics_address(const std::string& text, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidArgument,
                 what + " is '" + text + "': " + why + " (use HOST:PORT, e.g. 127.0.0.1:9464)");
  };
  auto colon = text.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  MetricsAddress a;
  if (colon > 0) a.host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    throw bad("the port is not a number");
  }
  unsigned long p = std::stoul(port);
  if (p > 65535) throw bad("the port is above 65535");
  a.port = static_cast<uint16_t>(p);
  in_addr tmp{};
  if (::inet_pton(AF_INET, a.host.c_str(), &tmp) != 1) throw bad("the host is not a numeric IPv4 address");
  return a;
}

struct MetricsServer::Impl {
  MetricsAddress address;
  std::function<std::string()> render;
  int listen_fd = -1;
  int wake[2] = {-1, -1};  // written by the destructor to end poll()
  std::thread thread;

  void serve(int fd);
  void loop();
};

namespace {

void send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the scraper went away: nothing to tell it
    off += static_cast<size_t>(n);
  }
}

std::string response(const char* status, const char* type, const std::string& body) {
  return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace

void MetricsServer::Impl::serve(int fd) {
  // The request line is all that matters; headers are read up to the blank
  // line (or 8 KiB), waiting at most 5 s for a slow or silent client so that
  // it cannot hold the one serving thread.
  std::string req;
  char buf[2048];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  std::string line = req.substr(0, req.find("\r\n"));
  std::string path;
  bool get = line.rfind("GET ", 0) == 0;
  if (get) path = line.substr(4, line.find(' ', 4) == std::string::npos ? std::string::npos : line.find(' ', 4) - 4);
  path = path.substr(0, path.find('?'));
  if (get && path == "/metrics") {
    std::string body;
    try {
      body = render();
    } catch (const std::exception& e) {
      log(LogLevel::kWarn, std::string("metrics: cannot read the status: ") + e.what());
      send_all(fd, response("500 Internal Server Error", "text/plain; charset=utf-8", std::string(e.what()) + "\n"));
      return;
    }
    send_all(fd, response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body));
  } else {
    send_all(fd, response("404 Not Found", "text/plain; charset=utf-8", "duckblock serves GET /metrics only\n"));
  }
}

void MetricsServer::Impl::loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) return;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up before we accepted it
    serve(fd);
    ::close(fd);
  }
}

MetricsServer::MetricsServer(const MetricsAddress& address, std::function<std::string()> render)
    : impl_(std::make_unique<Impl>()) {
  impl_->address = address;
  impl_->render = std::move(render);
  std::string where = address.host + ":" + std::to_string(address.port);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(address.port);
  if (::inet_pton(AF_INET, address.host.c_str(), &sa.sin_addr) != 1) {
    throw Error(ErrorKind::kInvalidArgument, "metrics address " + where + ": the host is not a numeric IPv4 address");
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("metrics: cannot create a socket");
  // SO_REUSEADDR lets a restarted process take its port back from sockets
  // still in TIME_WAIT; it does not let two listeners share a port.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) {
      throw Error(ErrorKind::kIO, "metrics: " + where +
                                      " is already in use by another program (or another duckblock): choose another "
                                      "port");
    }
    throw_errno("metrics: cannot listen on " + where, err);
  }
  if (::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    throw_errno("metrics: cannot listen on " + where, err);
  }
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  impl_->address.port = ntohs(sa.sin_port);
  impl_->listen_fd = fd;
  if (::pipe2(impl_->wake, O_CLOEXEC) != 0) {
    ::close(fd);
    throw_errno("metrics: cannot create a pipe");
  }
  // The thread takes no signals: a host (the CLI's follow) waits for
  // SIGINT/SIGTERM on its own thread, and a signal delivered here instead
  // would end the process without its clean stop.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

MetricsServer::~MetricsServer() {
  char c = 0;
  while (::write(impl_->wake[1], &c, 1) < 0 && errno == EINTR) {
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  ::close(impl_->listen_fd);
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

uint16_t MetricsServer::port() const { return impl_->address.port; }
const std::string& MetricsServer::host() const { return impl_->address.host; }

}  // namespace duckblock
