#pragma once
// Accepts TCP connections on an Asio acceptor and serves Cap'n Proto two-party RPC on each, with
// `bootstrap` as the capability a client gets first. Runs on the loop thread's KJ event loop
// (kj_asio.h). A connection that sends garbage fails inside capnp's RPC layer and is closed;
// the listener and the other connections carry on.
//
// Limits per connection (docs/security.md): messages up to RpcLimits::max_message_bytes (the
// largest request is one proposal of raft max_entry_bytes); capnp's flow limit stops reading a
// connection whose calls in progress hold more than flow_limit_bytes; a connection whose unsent
// replies exceed max_unsent_bytes (a client that does not read) is closed, as is one that sends
// nothing within header_timeout or nothing at all for idle_timeout. At max_connections the oldest
// connection that has sent nothing (then: the oldest still in its TLS handshake), and is older
// than eviction_grace, is closed for the new one, so idle sockets cannot lock clients out for
// longer than a moment. A client that keeps more than max_held_answers replies without sending
// Finish is closed (answer_guard.h), as is the one holding the most once the node's total is hit.
//
// TLS (set_tls, issue 17): every accepted connection first completes a TLS handshake (kj-tls over
// the bridge's AsioStream) and only then gets an RPC system; until then it holds a slot like any
// other connection, the header timeout bounds the whole handshake, and a connection still in its
// handshake may be evicted for a new one at max_connections. A failed handshake (plaintext, a
// missing or untrusted client certificate, garbage) closes the connection and is counted.
#include <asio.hpp>
#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "service/net/rate_limited.h"

namespace kj {
class TlsContext;
}

namespace tern::net {

struct RpcLimits {
  std::size_t max_connections = 1024;
  std::size_t max_message_bytes = 12 << 20;  // raft max_entry_bytes (8 MiB) + encoding overhead
  std::size_t flow_limit_bytes = 1 << 20;    // call messages in progress before reading pauses
  std::size_t max_unsent_bytes = 16 << 20;   // replies not yet taken by the client
  // Queued replies, counted: each holds its own allocation (kilobytes for a 100-byte reply), so
  // bytes alone would let 16 MiB of small replies cost the node a gigabyte.
  std::size_t max_unsent_messages = 4096;
  // Replies the client has not released with Finish (answer_guard.h): capnp keeps each one, with
  // its reply message, until Finish. A client library sends Finish as soon as it has taken a
  // reply, so a legitimate client holds a few (one per reply it is still reading) — or, if it
  // waits for a whole pipelined batch before dropping the replies, one per call of the batch:
  // ternd raises this to --client-max-in-flight. Calls still in progress are not counted
  // (flow_limit_bytes bounds those).
  std::size_t max_held_answers = 1024;
  std::size_t max_held_answer_bytes = 16 << 20;
  // The same, summed over every connection: at most this much, the connection holding the most is
  // closed (each retained small reply costs several KiB of allocation, whatever its size).
  std::size_t max_held_answers_total = 16384;
  std::size_t max_held_answer_bytes_total = 128 << 20;
  std::chrono::milliseconds header_timeout{5000};
  // At max_connections, connections younger than this are never evicted for a new one.
  std::chrono::milliseconds eviction_grace{1000};
  std::chrono::milliseconds idle_timeout{300000};
};

struct RpcListenerStats {
  std::uint64_t accepted = 0;
  std::uint64_t evicted = 0;      // closed for a newer connection at max_connections
  std::uint64_t refused = 0;      // new connections refused at max_connections
  std::uint64_t slow_readers = 0; // closed: too many unsent replies
  std::uint64_t timed_out = 0;    // closed: header or idle timeout (a TLS handshake not done in time too)
  std::uint64_t unfinished = 0;   // closed: too many replies never Finished (answer_guard.h)
  std::uint64_t tls_handshakes = 0;        // TLS handshakes completed
  std::uint64_t tls_handshake_failures = 0;  // closed: the TLS handshake failed
};

class RpcListener final : private kj::TaskSet::ErrorHandler {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kDefaultMaxConnections = 1024;
  static constexpr std::chrono::milliseconds kSweepInterval{100};

  // The capability each accepted connection gets first: one for all connections, or a new one
  // per connection from a factory (per-connection state such as the client API's admission
  // limits lives in it and goes with the connection).
  using BootstrapFactory = std::function<capnp::Capability::Client()>;
  RpcListener(asio::io_context& io, capnp::Capability::Client bootstrap,
              std::function<void(const std::string&)> warn, RpcLimits limits = {});
  RpcListener(asio::io_context& io, BootstrapFactory bootstrap, std::function<void(const std::string&)> warn,
              RpcLimits limits = {});
  ~RpcListener();
  // Binds and starts accepting; returns the bound port. Throws std::system_error on failure.
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  void stop();
  // Serve TLS on connections accepted from now on (null: plaintext); `client_certs`: the context
  // verifies client certificates, and a connection without one is refused. Connections already
  // open keep the context they started with, so new certificates can be swapped in while running.
  void set_tls(std::shared_ptr<kj::TlsContext> tls, bool client_certs) {
    tls_ = std::move(tls);
    tls_client_certs_ = client_certs;
  }
  bool tls() const { return tls_ != nullptr; }
  std::size_t connections() const { return conns_.size(); }
  std::uint64_t rejected() const {
    return stats_.evicted + stats_.refused + stats_.slow_readers + stats_.timed_out + stats_.unfinished +
           stats_.tls_handshake_failures;
  }
  const RpcListenerStats& stats() const { return stats_; }

 public:
  struct Conn;

 private:
  void accept();
  void sweep();
  void close(std::uint64_t id, const std::string& why);
  void start(std::uint64_t id, Conn& c);
  void start_rpc(std::uint64_t id, Conn& c, kj::AsyncIoStream& stream);
  kj::Promise<void> handshake(std::uint64_t id, Conn& c);
  void hung_up_silently(std::uint64_t id);
  void handshake_failed(std::uint64_t id, const kj::Exception& e);
  Clock::duration eviction_grace() const {
    return std::min<Clock::duration>(limits_.eviction_grace, limits_.header_timeout);
  }
  void too_many_held(std::uint64_t id, const std::string& why);
  void limit_held_total();
  void taskFailed(kj::Exception&& e) override;

  asio::io_context& io_;
  BootstrapFactory bootstrap_;
  RateLimitedWarn warn_;
  RpcLimits limits_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  asio::steady_timer sweep_timer_;
  std::map<std::uint64_t, kj::Own<Conn>> conns_;
  std::uint64_t next_id_ = 0;
  RpcListenerStats stats_;
  std::shared_ptr<kj::TlsContext> tls_;
  bool tls_client_certs_ = false;
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);  // shared with pending handlers
  kj::TaskSet tasks_;
};

}  // namespace tern::net
