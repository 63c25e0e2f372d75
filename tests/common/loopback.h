#pragma once
// Plain-socket helpers for tests that talk to real processes on 127.0.0.1: a free port, a
// connection, and one request/answer exchange. Header-only; std and POSIX only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace tern::testing {

// A free TCP port on 127.0.0.1 (bound and released; the kernel does not hand it out again soon).
inline std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("free_port: bind failed");
  }
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A connected socket to 127.0.0.1:port with a 2 s receive timeout, or -1.
inline int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

struct Exchange {
  bool connected = false;
  std::string answer;   // everything read (bounded: 64 reads)
  bool closed = false;  // the server closed the connection (read returned 0 or an error)
};

// Writes `bytes` to 127.0.0.1:port and reads until the server closes, 2 s pass without data, or
// 64 reads were made.
inline Exchange exchange(std::uint16_t port, const std::string& bytes) {
  Exchange e;
  int fd = connect_loopback(port);
  if (fd < 0) return e;
  e.connected = true;
  (void)::write(fd, bytes.data(), bytes.size());
  char buf[4096];
  for (int i = 0; i < 64; ++i) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      e.closed = true;
      break;
    }
    if (n < 0) break;  // timed out: still open
    e.answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return e;
}

// One raw request; the answer, or empty if the port does not answer.
inline std::string http_request(std::uint16_t port, const std::string& raw) { return exchange(port, raw).answer; }

}  // namespace tern::testing
