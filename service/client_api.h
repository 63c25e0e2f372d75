#pragma once
// The client API (client/api/tern.capnp) served on --client-addr: sessions, writes, reads at
// three consistency levels, watches (docs/client.md). Each call is validated completely before
// anything is proposed (a command that enters the log must never surprise `apply`), then maps
// onto one Node operation. Runs on the node's loop thread, like the rest of the RPC system.
#include <capnp/capability.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <set>
#include <vector>

#include "service/node.h"
#include "service/sm_applier.h"
#include "service/watch_hub.h"

namespace tern::service {

struct ClientApiLimits {
  std::size_t notes_per_call = 256;  // notifications per WatchSink.notify call
  std::size_t max_sessions = 65536;  // session objects served by this node (open + attached)
  // A notify call unanswered this long means a watcher that does not read: its watches are
  // dropped (the library re-watches if it is merely slow) and replies waiting on them go out.
  std::chrono::milliseconds notify_timeout{10000};
  // A request slower than this is logged at info with its request id (all are at debug).
  std::chrono::milliseconds slow_request{1000};
  // Requests (reads, writes, watches, session opens) per second per connection, all its sessions
  // together; 0: unlimited. A token bucket holding one second's worth: a connection over it is
  // answered slowDown, which the library backs off from.
  std::uint32_t requests_per_second = 0;
  // Requests of one connection (all its sessions) waiting for their answers; one more is answered
  // slowDown. Keep-alives and closes are never refused.
  std::size_t requests_in_flight = 4096;
};

// What one client connection may still do (ClientApiLimits): its admission token bucket and its
// requests in flight. Shared by the connection's bootstrap object and every session opened or
// attached through it; goes when the last of them goes.
struct ConnectionBudget {
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled = std::chrono::steady_clock::now();
  std::size_t in_flight = 0;
};

class ClientApi final : public EventSink {
 public:
  // `sm` is the node's state machine (owned by the node; it feeds this object as its EventSink,
  // from recovery on); the hub is this server's watch hub. bind() the node before serving.
  ClientApi(const SmApplier& sm, WatchHub& hub, ClientApiLimits limits = {});
  void bind(Node& node) { node_ = &node; }
  ~ClientApi() override;

  // The server object of the Tern interface for one connection (the client port's bootstrap,
  // next to Admin: see make_bootstrap), with that connection's budget. Make one per connection
  // (net::RpcListener's bootstrap factory).
  kj::Own<capnp::Capability::Server> tern_server();

  // Called about once a second on the loop thread: drops sinks stuck past notify_timeout.
  void sweep(std::chrono::steady_clock::time_point now);
  std::size_t sessions() const { return sessions_.size(); }

  // EventSink: the state machine's events, in index order, on the loop thread.
  void publish(const std::vector<sm::Event>& events) override;
  void restored(std::uint64_t index) override;

  // Internal: the per-session objects register here to be woken when events arrive.
  class SessionImpl;
  void attach(SessionImpl* s) { sessions_.insert(s); }
  void detach(SessionImpl* s) {
    sessions_.erase(s);
    watching_.erase(s);
  }
  // Sessions with a watcher: the only ones events and the sweep concern (a node may serve
  // 100,000 sessions of which a few watch; visiting every one per applied batch cost ~1 µs each).
  void set_watching(SessionImpl* s, bool on) {
    if (on) watching_.insert(s);
    else watching_.erase(s);
  }
  Node& node() { return *node_; }
  const SmApplier& sm() const { return sm_; }

  // A session's keep-alive. Every node batches its sessions' keep-alives into keep_alive_batch
  // entries (one entry per batch, not per session; docs/data-model.md): while one batch is being
  // committed the next one gathers, as a WAL group commit does, so a lone keep-alive leaves at
  // once and 100,000 sessions cost a few entries a second, not tens of thousands. `done` gets the
  // session's own answer and the entry's index, or the node's error for the whole batch.
  using KeepAliveDone = std::function<void(Result<std::pair<sm::Response, std::uint64_t>, NodeError>)>;
  void keep_alive(std::uint64_t session, std::uint64_t secret, KeepAliveDone done);
  std::uint64_t keep_alive_batches() const { return keep_alive_batches_; }  // entries proposed
  WatchHub& hub() { return hub_; }
  const ClientApiLimits& limits() const { return limits_; }

 private:
  Node* node_ = nullptr;
  const SmApplier& sm_;
  WatchHub& hub_;
  ClientApiLimits limits_;
  std::set<SessionImpl*> sessions_;
  std::set<SessionImpl*> watching_;  // a subset of sessions_

  struct PendingKeepAlive {
    std::uint64_t session = 0, secret = 0;
    KeepAliveDone done;
  };
  void flush_keep_alives();
  std::vector<PendingKeepAlive> keep_alives_;  // waiting for the batch in flight to finish
  bool keep_alive_in_flight_ = false;
  std::uint64_t keep_alive_batches_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for callbacks after the end
};

// The client port's bootstrap capability: serves both the Admin interface (operators' tools,
// service/proto/admin.capnp) and the Tern client interface, chosen by the interface of each call.
capnp::Capability::Client make_bootstrap(kj::Own<capnp::Capability::Server> admin,
                                         kj::Own<capnp::Capability::Server> tern);

}  // namespace tern::service
