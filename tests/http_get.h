// A scrape as Prometheus does it: an HTTP GET over a real TCP connection,
// and the value of one sample in the exposition text. Header-only, with
// plain sockets, so that a test host that links nothing of duckblock (the
// extension's) can use it too.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace duckblock::test {

struct HttpResponse {
  int status = 0;
  std::string headers, body;
};

// `method` `path` HTTP/1.1 to 127.0.0.1:`port`; reads until the server
// closes the connection (it sends Connection: close).
inline HttpResponse http_request(uint16_t port, const std::string& path, const std::string& method = "GET") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string raw;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  HttpResponse r;
  auto sp = raw.find(' ');
  if (raw.rfind("HTTP/1.", 0) != 0 || sp == std::string::npos) return r;
  r.status = std::stoi(raw.substr(sp + 1, 3));
  auto end = raw.find("\r\n\r\n");
  r.headers = raw.substr(0, end);
  if (end != std::string::npos) r.body = raw.substr(end + 4);
  return r;
}

// The value of the sample `series` (name{labels} exactly as exposed), or
// nullopt if the text has no such line.
inline std::optional<double> metric_value(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      auto eol = text.find('\n', pos);
      return std::stod(text.substr(pos + series.size() + 1, eol - pos - series.size() - 1));
    }
    pos += series.size();
  }
  return std::nullopt;
}

// A TCP socket listening on 127.0.0.1 on a free port (a port in use, for
// as long as it is open). Returns the fd; `port` gets the port.
inline int listen_on_free_port(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 1) != 0) {
    throw std::runtime_error("cannot listen on a free port");
  }
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

}  // namespace duckblock::test
