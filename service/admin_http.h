#pragma once
// Plain-HTTP admin endpoints on --admin-addr (/livez, /readyz, /status, /metrics). Asio stays in
// the .cc: callers pass the io_context as an opaque pointer-sized handle.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace asio {
class io_context;
}

namespace tern::service {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// GET path -> response; unknown paths are 404. Handlers run on the io_context's thread.
using HttpHandler = std::function<HttpResponse()>;

class AdminHttpServer {
 public:
  // Named bounds: request head size and concurrent connections.
  static constexpr std::size_t kMaxRequestBytes = 8 * 1024;
  static constexpr std::size_t kMaxConnections = 64;
  // A connection must deliver its request and take the reply within this; at kMaxConnections the
  // oldest connection is closed for the new one, so idle sockets cannot make the probes fail.
  static constexpr int kRequestTimeoutMs = 2000;

  AdminHttpServer(asio::io_context& io, const std::string& host, std::uint16_t port);
  ~AdminHttpServer();
  void handle(const std::string& path, HttpHandler h);
  void start();
  std::uint16_t port() const;  // the bound port (useful with port 0)

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tern::service
