#include "service/net/rpc_listener.h"

#include "service/net/answer_guard.h"
#include "service/net/kj_asio.h"

#include <kj/compat/tls.h>

#include <optional>

namespace tern::net {

using Clock = std::chrono::steady_clock;

struct RpcListener::Conn {
  explicit Conn(asio::ip::tcp::socket s) : stream(kj::heap<AsioStream>(std::move(s))) {}
  static capnp::ReaderOptions options(const RpcLimits& limits) {
    capnp::ReaderOptions o;
    // Also bounds amplification: capnp charges a zero-sized list element (e.g. in a capability
    // table) one word, so no message costs more than its limit in words.
    o.traversalLimitInWords = limits.max_message_bytes / sizeof(capnp::word);
    o.nestingLimit = 16;
    return o;
  }
  // Starts RPC on `s`: the AsioStream itself, or the TLS stream over it.
  // `held_too_many`: the client keeps too many replies without Finish (answer_guard.h).
  void serve(kj::AsyncIoStream& s, capnp::Capability::Client bootstrap, const RpcLimits& limits,
             std::function<void(const std::string&)> held_too_many) {
    network = kj::heap<capnp::TwoPartyVatNetwork>(s, capnp::rpc::twoparty::Side::SERVER, options(limits));
    guard = kj::heap<AnswerGuard>(*network, limits.max_held_answers, limits.max_held_answer_bytes, std::move(held_too_many));
    rpc = kj::heap(capnp::makeRpcServer(*guard, kj::mv(bootstrap)));
    rpc->setFlowLimit(limits.flow_limit_bytes / sizeof(capnp::word));
  }
  bool serving() const { return network.get() != nullptr; }

  // Declaration order is destruction order reversed: RPC first, then the TLS stream and a pending
  // handshake (both read and write `stream`), then the context they use, then the socket.
  kj::Own<AsioStream> stream;
  std::shared_ptr<kj::TlsContext> tls_context;
  bool tls_client_certs = false;  // as set_tls said when the connection arrived
  kj::Maybe<kj::Promise<void>> handshake;
  kj::Own<kj::AsyncIoStream> tls;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<AnswerGuard> guard;  // the RPC system's view of `network`
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
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
    : RpcListener(io,
                  // Shared by every connection (capnp clients copy only from non-const references).
                  [cap = std::make_shared<capnp::Capability::Client>(kj::mv(bootstrap))]() -> capnp::Capability::Client {
                    return *cap;
                  },
                  std::move(warn), limits) {}

RpcListener::RpcListener(asio::io_context& io, BootstrapFactory bootstrap, std::function<void(const std::string&)> warn,
                         RpcLimits limits)
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
    std::size_t unsent = c->stream->unsent_bytes() + (c->serving() ? c->network->getCurrentQueueSize() : 0);
    std::size_t queued = c->serving() ? c->network->getCurrentQueueCount() : 0;
    if (unsent > limits_.max_unsent_bytes || queued > limits_.max_unsent_messages) {
      ++stats_.slow_readers;
      close(id, std::to_string(queued) + " replies (" + std::to_string(unsent) + " bytes) unread; limits " +
                    std::to_string(limits_.max_unsent_messages) + " and " + std::to_string(limits_.max_unsent_bytes));
    } else if (c->seen_bytes == 0 && now - c->opened > limits_.header_timeout) {
      ++stats_.timed_out;
      close(id, "nothing sent within the header timeout");
    } else if (!c->serving() && now - c->opened > limits_.header_timeout) {
      ++stats_.timed_out;
      close(id, "TLS handshake not completed within the header timeout");
    } else if (now - c->last_active > limits_.idle_timeout) {
      ++stats_.timed_out;
      close(id, "idle");
    }
  }
  for (auto id : dead) conns_.erase(id);
  limit_held_total();
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
    // At the cap, make room by closing the oldest connection that is not yet a proven client:
    // first one that has sent nothing (no byte read, none waiting in the kernel), then one still
    // in its TLS handshake. Never one younger than eviction_grace: a client that has just
    // connected and not yet written (descheduled between connect() and write() on a busy host)
    // is indistinguishable from an idle socket, and the newest silent connection is exactly that
    // client when a flood arrives behind it. With no candidate the new connection is refused; the
    // header timeout closes silent sockets anyway.
    std::size_t live = 0;
    for (auto& [id, c] : conns_) live += c->aborted ? 0 : 1;
    if (live >= limits_.max_connections) {
      // Ids grow: the first match is the oldest. The kernel is asked (one ioctl) only about
      // connections that have sent nothing so far, and only at the cap, and the search stops at
      // the first silent one: asking all 1024 on every accept stalled the loop under a flood.
      std::optional<std::uint64_t> silent, handshaking;
      auto now = Clock::now();
      for (auto& [id, c] : conns_) {
        if (c->aborted || now - c->opened < eviction_grace()) continue;
        note_activity(*c, now);
        bool sent = c->seen_bytes != 0 || c->stream->bytes_waiting() != 0;
        if (!sent) {
          silent = id;
          break;
        }
        if (!c->serving() && !handshaking) handshaking = id;
      }
      if (auto victim = silent ? silent : handshaking) {
        ++stats_.evicted;
        close(*victim, "connection limit (" + std::to_string(limits_.max_connections) + ") reached; closing the oldest connection that " +
                           (silent ? "has sent nothing" : "has not finished TLS") + " (#" + std::to_string(*victim) + ")");
      } else {
        ++stats_.refused;
        warn_("rpc listener: connection limit (" + std::to_string(limits_.max_connections) + ") reached; refusing a connection");
        accept();
        return;  // the socket closes as it goes out of scope
      }
    }
    ++stats_.accepted;
    std::uint64_t id = next_id_++;
    auto conn = kj::heap<Conn>(std::move(socket));
    Conn& c = *conn;
    conns_.emplace(id, kj::mv(conn));
    start(id, c);
    accept();
  });
}

void RpcListener::start_rpc(std::uint64_t id, Conn& c, kj::AsyncIoStream& stream) {
  c.serve(stream, bootstrap_(), limits_, [this, id](const std::string& why) { too_many_held(id, why); });
  // Drop the connection's RPC state once the peer is gone (or sent garbage).
  tasks_.add(c.network->onDisconnect().then([this, id] { conns_.erase(id); }));
}

namespace {
// kj-tls wants an identity for the stream it wraps; the TLS identity it returns is what counts.
class TcpPeer final : public kj::PeerIdentity {
 public:
  kj::String toString() override { return kj::str("tcp"); }
};
}  // namespace

void RpcListener::start(std::uint64_t id, Conn& c) {
  c.tls_context = tls_;
  c.tls_client_certs = tls_client_certs_;
  // An RPC system, and a TLS session, cost CPU and tens of kilobytes: spend them once the client
  // has sent something, so that a silent socket costs a socket and a buffer.
  c.handshake = c.stream->when_readable()
                    .then([this, id, &c]() -> kj::Promise<void> {
                      // Readable with nothing to read: the client hung up without a byte. Drop it
                      // without a TLS session, an RPC system or an exception: when a flood of
                      // silent sockets closes at once, a failed handshake each (SSL objects, kj
                      // exceptions with stack traces) held the loop for hundreds of milliseconds
                      // (issue 17: a /status probe failed under the idle-socket flood).
                      if (c.stream->bytes_waiting() == 0) {
                        hung_up_silently(id);
                        return kj::READY_NOW;
                      }
                      if (!c.tls_context) {
                        start_rpc(id, c, *c.stream);
                        return kj::READY_NOW;
                      }
                      return handshake(id, c);
                    },
                          [this, id](kj::Exception&& e) { handshake_failed(id, e); })  // closed by us: not counted
                    .eagerlyEvaluate(nullptr);
}

kj::Promise<void> RpcListener::handshake(std::uint64_t id, Conn& c) {
  bool client_certs = c.tls_client_certs;
  // The TLS stream borrows the AsioStream: the connection owns both (see Conn).
  kj::AuthenticatedStream raw{kj::Own<kj::AsyncIoStream>(c.stream.get(), kj::NullDisposer::instance), kj::heap<TcpPeer>()};
  return c.tls_context->wrapServer(kj::mv(raw))
                    .then(
                        [this, id, &c, client_certs](kj::AuthenticatedStream s) {
                          auto& who = kj::downcast<kj::TlsPeerIdentity>(*s.peerIdentity);
                          // kj-tls may end a handshake the client hung up on as if it had
                          // succeeded (OpenSSL's SSL_ERROR_SYSCALL without an error); with client
                          // certificates required, no certificate means no handshake.
                          if (client_certs && !who.hasCertificate()) {
                            handshake_failed(id, KJ_EXCEPTION(DISCONNECTED, "no client certificate"));
                            return;
                          }
                          ++stats_.tls_handshakes;
                          c.tls = kj::mv(s.stream);
                          start_rpc(id, c, *c.tls);
                        },
                        [this, id](kj::Exception&& e) { handshake_failed(id, e); });
}

void RpcListener::hung_up_silently(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  it->second->aborted = true;
  it->second->stream->abort();
  // This runs inside the handshake promise, which the connection owns: drop it afterwards.
  asio::post(io_, [this, id, stopped = stopped_] {
    if (!*stopped) conns_.erase(id);
  });
}

void RpcListener::handshake_failed(std::uint64_t id, const kj::Exception& e) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  // A connection we closed ourselves (timeout, eviction) was counted there.
  if (!it->second->aborted) {
    if (it->second->tls_context) ++stats_.tls_handshake_failures;
    close(id, std::string(it->second->tls_context ? "TLS handshake failed: " : "before the first byte: ") + e.getDescription().cStr());
  }
  // This runs inside the handshake promise, which the connection owns: drop it afterwards.
  asio::post(io_, [this, id, stopped = stopped_] {
    if (!*stopped) conns_.erase(id);
  });
}

void RpcListener::too_many_held(std::uint64_t id, const std::string& why) {
  // Called from inside capnp's send of a reply: close from a fresh handler.
  asio::post(io_, [this, id, why, stopped = stopped_] {
    if (*stopped) return;
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second->aborted) return;
    ++stats_.unfinished;
    close(id, why);
  });
}

// Per-connection limits bound one client; this bounds the sum, so that many connections each just
// under the limit cannot add up (1024 x 1024 small replies would be gigabytes). The connection
// holding the most goes first: the greedy client, not the one that happened to cross the line.
void RpcListener::limit_held_total() {
  std::size_t answers = 0, bytes = 0;
  for (auto& [id, c] : conns_)
    if (!c->aborted && c->guard) {
      answers += c->guard->held().answers;
      bytes += c->guard->held().bytes;
    }
  while (answers > limits_.max_held_answers_total || bytes > limits_.max_held_answer_bytes_total) {
    Conn* worst = nullptr;
    std::uint64_t worst_id = 0;
    for (auto& [id, c] : conns_)
      if (!c->aborted && c->guard && (worst == nullptr || c->guard->held().bytes > worst->guard->held().bytes ||
                                      (c->guard->held().bytes == worst->guard->held().bytes &&
                                       c->guard->held().answers > worst->guard->held().answers))) {
        worst = c.get();
        worst_id = id;
      }
    if (worst == nullptr || worst->guard->held().answers == 0) return;
    answers -= worst->guard->held().answers;
    bytes -= worst->guard->held().bytes;
    ++stats_.unfinished;
    close(worst_id, std::to_string(worst->guard->held().answers) + " replies never Finished; the node's total (" +
                        std::to_string(limits_.max_held_answers_total) + " replies, " +
                        std::to_string(limits_.max_held_answer_bytes_total) + " bytes) is reached");
  }
}

void RpcListener::taskFailed(kj::Exception&& e) { warn_(std::string("rpc connection: ") + e.getDescription().cStr()); }

}  // namespace tern::net
