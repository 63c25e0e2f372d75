#include "service/net/rpc_listener.h"

#include "service/net/kj_asio.h"

#include <optional>

namespace tern::net {

using Clock = std::chrono::steady_clock;

struct RpcListener::Conn {
  Conn(asio::ip::tcp::socket s, capnp::Capability::Client bootstrap, const RpcLimits& limits)
      : stream(kj::heap<AsioStream>(std::move(s))),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, options(limits)),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
    rpc.setFlowLimit(limits.flow_limit_bytes / sizeof(capnp::word));
  }
  static capnp::ReaderOptions options(const RpcLimits& limits) {
    capnp::ReaderOptions o;
    // Also bounds amplification: capnp charges a zero-sized list element (e.g. in a capability
    // table) one word, so no message costs more than its limit in words.
    o.traversalLimitInWords = limits.max_message_bytes / sizeof(capnp::word);
    o.nestingLimit = 16;
    return o;
  }
  kj::Own<AsioStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  Clock::time_point opened = Clock::now(), last_active = opened;
  std::uint64_t seen_bytes = 0;    // read so far
  std::uint64_t seen_written = 0;  // handed to the kernel so far
  bool aborted = false;
};

namespace {
void note_activity(RpcListener::Conn& c, Clock::time_point now) {
  if (c.stream->bytes_read() != c.seen_bytes || c.stream->bytes_written() != c.seen_written) {
    c.seen_bytes = c.stream->bytes_read();
    c.seen_written = c.stream->bytes_written();
    c.last_active = now;
  }
}
}  // namespace

RpcListener::RpcListener(asio::io_context& io, capnp::Capability::Client bootstrap,
                         std::function<void(const std::string&)> warn, RpcLimits limits)
    : io_(io),
      bootstrap_(kj::mv(bootstrap)),
      warn_(std::move(warn)),
      limits_(limits),
      acceptor_(io),
      retry_(io),
      sweep_timer_(io),
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
  sweep();
  return acceptor_.local_endpoint().port();
}

void RpcListener::stop() {
  if (*stopped_) return;
  *stopped_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
  sweep_timer_.cancel();
}

void RpcListener::close(std::uint64_t id, const std::string& why) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  warn_("rpc connection closed: " + why);
  // Closing the socket fails capnp's pending reads and writes, and its disconnect handler drops
  // the connection's state; the next sweep drops whatever is left if capnp did not notice.
  it->second->aborted = true;
  it->second->stream->abort();
}

void RpcListener::sweep() {
  auto now = Clock::now();
  std::vector<std::uint64_t> dead;
  for (auto& [id, c] : conns_) {
    if (c->aborted) {
      dead.push_back(id);
      continue;
    }
    note_activity(*c, now);
    std::size_t unsent = c->stream->unsent_bytes() + c->network.getCurrentQueueSize();
    std::size_t queued = c->network.getCurrentQueueCount();
    if (unsent > limits_.max_unsent_bytes || queued > limits_.max_unsent_messages) {
      ++stats_.slow_readers;
      close(id, std::to_string(queued) + " replies (" + std::to_string(unsent) + " bytes) unread; limits " +
                    std::to_string(limits_.max_unsent_messages) + " and " + std::to_string(limits_.max_unsent_bytes));
    } else if (c->seen_bytes == 0 && now - c->opened > limits_.header_timeout) {
      ++stats_.timed_out;
      close(id, "nothing sent within the header timeout");
    } else if (now - c->last_active > limits_.idle_timeout) {
      ++stats_.timed_out;
      close(id, "idle");
    }
  }
  for (auto id : dead) conns_.erase(id);
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this, stopped = stopped_](const asio::error_code& ec) {
    if (!ec && !*stopped) sweep();
  });
}

void RpcListener::accept() {
  acceptor_.async_accept([this, stopped = stopped_](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (*stopped) return;
    if (ec) {  // e.g. out of file descriptors: back off instead of spinning on the error
      warn_("rpc listener: accept: " + ec.message());
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([this, stopped](const asio::error_code& e) {
        if (!e && !*stopped) accept();
      });
      return;
    }
    // At the cap, make room by closing the newest connection that has sent nothing yet: a client
    // with calls stays, and so does one that connected earlier and is about to send; a flood of
    // silent sockets only replaces itself. With none silent, the new connection is refused. The
    // header timeout closes silent sockets in any case.
    std::size_t live = 0;
    std::optional<std::uint64_t> victim;
    auto now = Clock::now();
    for (auto& [id, c] : conns_) {
      if (c->aborted) continue;
      ++live;
      note_activity(*c, now);
      if (c->seen_bytes == 0) victim = id;  // ids grow: the last one is the newest
    }
    if (live >= limits_.max_connections) {
      if (victim) {
        ++stats_.evicted;
        close(*victim, "connection limit (" + std::to_string(limits_.max_connections) +
                           ") reached; closing the newest connection that has sent nothing (#" + std::to_string(*victim) + ")");
      } else {
        ++stats_.refused;
        warn_("rpc listener: connection limit (" + std::to_string(limits_.max_connections) + ") reached; refusing a connection");
        accept();
        return;  // the socket closes as it goes out of scope
      }
    }
    ++stats_.accepted;
    std::uint64_t id = next_id_++;
    auto conn = kj::heap<Conn>(std::move(socket), bootstrap_, limits_);
    auto disconnected = conn->network.onDisconnect();
    conns_.emplace(id, kj::mv(conn));
    // Drop the connection's RPC state once the peer is gone (or sent garbage).
    tasks_.add(disconnected.then([this, id] { conns_.erase(id); }));
    accept();
  });
}

void RpcListener::taskFailed(kj::Exception&& e) { warn_(std::string("rpc connection: ") + e.getDescription().cStr()); }

}  // namespace tern::net
