#include "service/admin_http.h"

#include <asio.hpp>

#include <map>

namespace tern::service {

struct AdminHttpServer::Impl : std::enable_shared_from_this<AdminHttpServer::Impl> {
  struct Conn {
    explicit Conn(asio::ip::tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
    asio::ip::tcp::socket sock;
    asio::steady_timer timer;
    std::string buf;
    std::string out;
  };
  asio::ip::tcp::acceptor acceptor;
  std::map<std::string, HttpHandler> handlers;
  std::map<std::uint64_t, std::shared_ptr<Conn>> open;  // by acceptance order
  std::uint64_t next_serial = 0;

  asio::steady_timer retry;

  Impl(asio::io_context& io, const asio::ip::tcp::endpoint& ep) : acceptor(io, ep), retry(io) {}

  void accept() {
    acceptor.async_accept([self = shared_from_this()](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (ec) {  // e.g. out of file descriptors: back off instead of spinning on the error
        self->retry.expires_after(std::chrono::milliseconds(50));
        self->retry.async_wait([self](std::error_code e) {
          if (!e) self->accept();
        });
        return;
      }
      if (self->open.size() >= kMaxConnections) self->finish(self->victim());
      self->serve(std::move(s));
      self->accept();
    });
  }

  // The connection to close for a new one at the cap: the oldest that has delivered nothing, not
  // even into the kernel's buffer. A probe whose request is there but not yet read is not idle:
  // while the accept loop drains a backlog of idle sockets, its read has not had a turn, and
  // "the oldest" alone closed it (issue 17: /status failed under the idle-socket flood). With
  // every connection holding a request, the oldest goes.
  std::uint64_t victim() {
    for (auto& [serial, c] : open) {
      std::error_code ec;
      if (c->buf.empty() && c->sock.available(ec) == 0 && !ec) return serial;
    }
    return open.begin()->first;
  }

  void finish(std::uint64_t serial) {
    auto it = open.find(serial);
    if (it == open.end()) return;
    std::error_code ignore;
    it->second->sock.shutdown(asio::ip::tcp::socket::shutdown_both, ignore);
    it->second->sock.close(ignore);
    it->second->timer.cancel();
    open.erase(it);
  }

  void serve(asio::ip::tcp::socket s) {
    auto c = std::make_shared<Conn>(std::move(s));
    std::uint64_t serial = next_serial++;
    open.emplace(serial, c);
    c->timer.expires_after(std::chrono::milliseconds(kRequestTimeoutMs));
    c->timer.async_wait([w = weak_from_this(), serial](std::error_code ec) {
      if (auto self = w.lock(); self && !ec) self->finish(serial);
    });
    asio::async_read_until(
        c->sock, asio::dynamic_buffer(c->buf, kMaxRequestBytes), "\r\n\r\n",
        [self = shared_from_this(), c, serial](std::error_code ec, std::size_t) {
          if (ec == asio::error::operation_aborted || !c->sock.is_open()) return;  // timed out or evicted
          HttpResponse r;
          if (ec) {
            r = {400, "text/plain", "bad request\n"};
          } else {
            auto sp1 = c->buf.find(' ');
            auto sp2 = c->buf.find(' ', sp1 + 1);
            std::string method = c->buf.substr(0, sp1);
            std::string path = sp1 == std::string::npos ? "" : c->buf.substr(sp1 + 1, sp2 - sp1 - 1);
            auto it = self->handlers.find(path);
            if (method != "GET") r = {405, "text/plain", "method not allowed\n"};
            else if (it == self->handlers.end()) r = {404, "text/plain", "not found\n"};
            else r = it->second();
          }
          const char* reason = r.status == 200 ? "OK" : r.status == 503 ? "Service Unavailable" : "Error";
          c->out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason + "\r\nContent-Type: " +
                   r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
                   "\r\nConnection: close\r\n\r\n" + r.body;
          asio::async_write(c->sock, asio::buffer(c->out), [self, serial](std::error_code, std::size_t) { self->finish(serial); });
        });
  }
};

AdminHttpServer::AdminHttpServer(asio::io_context& io, const std::string& host, std::uint16_t port)
    : impl_(std::make_shared<Impl>(io, asio::ip::tcp::endpoint(asio::ip::make_address(host), port))) {}

AdminHttpServer::~AdminHttpServer() {
  std::error_code ignore;
  impl_->acceptor.close(ignore);
  impl_->retry.cancel();
  while (!impl_->open.empty()) impl_->finish(impl_->open.begin()->first);
}

void AdminHttpServer::handle(const std::string& path, HttpHandler h) { impl_->handlers[path] = std::move(h); }
void AdminHttpServer::start() { impl_->accept(); }
std::uint16_t AdminHttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace tern::service
