#include "service/net/rpc_listener.h"

#include "service/net/kj_asio.h"

namespace tern::net {

struct RpcListener::Conn {
  Conn(asio::ip::tcp::socket s, capnp::Capability::Client bootstrap)
      : stream(kj::heap<AsioStream>(std::move(s))),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, options()),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  static capnp::ReaderOptions options() {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = 16 << 20;  // 128 MiB per message: far above the request size limit
    return o;
  }
  kj::Own<AsioStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

RpcListener::RpcListener(asio::io_context& io, capnp::Capability::Client bootstrap,
                         std::function<void(const std::string&)> warn, std::size_t max_connections)
    : io_(io),
      bootstrap_(kj::mv(bootstrap)),
      warn_(std::move(warn)),
      max_connections_(max_connections),
      acceptor_(io),
      retry_(io),
      tasks_(*this) {}

RpcListener::~RpcListener() {
  stop();
  conns_.clear();  // capnp objects before the KJ loop (kj_asio.h)
}

std::uint16_t RpcListener::listen(const std::string& host, std::uint16_t port) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(host), port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  accept();
  return acceptor_.local_endpoint().port();
}

void RpcListener::stop() {
  if (*stopped_) return;
  *stopped_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
}

void RpcListener::accept() {
  acceptor_.async_accept([this, stopped = stopped_](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (*stopped) return;
    if (ec) {  // e.g. out of file descriptors: back off instead of spinning on the error
      if (warn_) warn_("rpc listener: accept: " + ec.message());
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([this, stopped](const asio::error_code& e) {
        if (!e && !*stopped) accept();
      });
      return;
    }
    if (conns_.size() >= max_connections_) {
      // The socket closes as it goes out of scope; one warning per burst, not per connection.
      if (rejected_++ % 1000 == 0 && warn_)
        warn_("rpc listener: connection limit (" + std::to_string(max_connections_) + ") reached; refusing connections");
    } else {
      std::uint64_t id = next_id_++;
      auto conn = kj::heap<Conn>(std::move(socket), bootstrap_);
      auto disconnected = conn->network.onDisconnect();
      conns_.emplace(id, kj::mv(conn));
      // Drop the connection's RPC state once the peer is gone (or sent garbage).
      tasks_.add(disconnected.then([this, id] { conns_.erase(id); }));
    }
    accept();
  });
}

void RpcListener::taskFailed(kj::Exception&& e) {
  if (warn_) warn_(std::string("rpc connection: ") + e.getDescription().cStr());
}

}  // namespace tern::net
