#pragma once
// Accepts TCP connections on an Asio acceptor and serves Cap'n Proto two-party RPC on each, with
// `bootstrap` as the capability a client gets first. Runs on the loop thread's KJ event loop
// (kj_asio.h). A connection that sends garbage fails inside capnp's RPC layer and is closed;
// the listener and the other connections carry on.
#include <asio.hpp>
#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace tern::net {

class RpcListener final : private kj::TaskSet::ErrorHandler {
 public:
  static constexpr std::size_t kDefaultMaxConnections = 1024;

  RpcListener(asio::io_context& io, capnp::Capability::Client bootstrap,
              std::function<void(const std::string&)> warn, std::size_t max_connections = kDefaultMaxConnections);
  ~RpcListener();
  // Binds and starts accepting; returns the bound port. Throws std::system_error on failure.
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  void stop();
  std::size_t connections() const { return conns_.size(); }
  std::uint64_t rejected() const { return rejected_; }

 private:
  struct Conn;
  void accept();
  void taskFailed(kj::Exception&& e) override;

  asio::io_context& io_;
  capnp::Capability::Client bootstrap_;
  std::function<void(const std::string&)> warn_;
  std::size_t max_connections_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  std::map<std::uint64_t, kj::Own<Conn>> conns_;
  std::uint64_t next_id_ = 0;
  std::uint64_t rejected_ = 0;
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);  // shared with pending handlers
  kj::TaskSet tasks_;
};

}  // namespace tern::net
