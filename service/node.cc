#include "service/node.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <deque>
#include <string_view>

#include "common/assert.h"
#include "service/config.h"

namespace tern::service {

using Clock = std::chrono::steady_clock;

#ifdef TERN_PLANTED_BUGS
namespace {
// Planted bug "ack-before-fsync" (test builds only, docs/testing.md): a WAL batch is reported
// durable at once and written (and synced) kLateWrite later, in order. What the node
// acknowledged meanwhile (its votes, its AppendEntries replies, its own share of a commit) is
// gone if the process dies then: what acknowledging before the fsync loses in a power cut, a
// kill -9 loses here (a correct node's written bytes would survive a kill -9 in the page cache).
bool planted_ack_before_fsync() {
  static const bool on = [] {
    const char* e = std::getenv("TERN_PLANTED_BUG");
    return e != nullptr && std::string_view(e) == "ack-before-fsync";
  }();
  return on;
}
constexpr auto kLateWrite = std::chrono::milliseconds(200);
struct LateWrite {
  Clock::time_point due;
  storage::Wal* wal;
  storage::WriteBatch batch;
};
// One Node per ternd process; loop thread only.
std::deque<LateWrite>& late_writes() {
  static std::deque<LateWrite> q;
  return q;
}
void write_due() {
  auto& q = late_writes();
  while (!q.empty() && q.front().due <= Clock::now()) {
    if (auto r = q.front().wal->write(q.front().batch); !r) {
      spdlog::critical("WAL write failed: {}", r.error().message);
      std::abort();
    }
    q.pop_front();
  }
}
}  // namespace
#endif

Node::Node(asio::io_context& io, NodeOptions options, Metrics& metrics)
    : io_(io), opt_(std::move(options)), metrics_(metrics), tick_timer_(io) {}

Node::~Node() {
  stop();
  *alive_ = false;
  snapshot_pool_.join();  // a snapshot being written completes; its result is dropped
  replica_.reset();       // joins the WAL's disk thread; its callbacks see alive_ == false
}

Result<std::unique_ptr<Node>, std::string> Node::open(asio::io_context& io, NodeOptions options,
                                                      std::unique_ptr<Applier> applier, Metrics& metrics) {
  std::unique_ptr<Node> n(new Node(io, options, metrics));
  net::PeerTransportOptions to;
  to.cluster_id = options.cluster_id;
  to.self = options.id;
  to.secret = options.peer_secret;
  to.warn = [](const std::string& s) { spdlog::warn("{}", s); };
  Node* self = n.get();
  n->transport_ = std::make_unique<net::PeerTransport>(io, to, [self](raft::Message m) {
    if (self->replica_) (void)self->replica_->step(std::move(m));
  });
  ReplicaEnv env;
  env.transport = self;
  env.clock = self;
  env.executor = self;
  auto r = Replica::open(env, std::move(options), std::move(applier), metrics);
  if (!r) return fail(r.error());
  n->replica_ = std::move(*r);
  return n;
}

void Node::start() {
  auto self = opt_.initial_cluster.find(opt_.id);
  TERN_ASSERT_MSG(self != opt_.initial_cluster.end(), "this node's peer address is not in the initial cluster");
  auto addr = parse_host_port(self->second);
  TERN_ASSERT_MSG(addr.has_value(), "this node's peer address is not host:port");
  transport_->listen(addr->host, addr->port);
  next_tick_ = Clock::now() + opt_.tick;
  tick_timer_.expires_at(next_tick_);
  tick_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) on_tick();
  });
  replica_->start();
}

void Node::stop() {
  if (stopped_) return;
  stopped_ = true;
  tick_timer_.cancel();
  if (replica_) replica_->stop();
  if (transport_) transport_->stop();
}

void Node::on_tick() {
  if (stopped_) return;
  replica_->tick();
  // Fixed-rate ticks; after a stall, skip the missed ones rather than firing a burst.
  next_tick_ += opt_.tick;
  auto now = Clock::now();
  if (next_tick_ < now) next_tick_ = now + opt_.tick;
  tick_timer_.expires_at(next_tick_);
  tick_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) on_tick();
  });
}

Result<void, NodeError> Node::inject_partition(const std::vector<raft::NodeId>& peers) {
  if (!opt_.fault_injection)
    return fail(NodeError{NodeErrc::invalid, raft::NodeId{}, "fault injection is disabled (--debug-fault-injection 1)"});
  transport_->set_blocked(std::set<raft::NodeId>(peers.begin(), peers.end()));
  spdlog::warn("fault injection: peer traffic with {} node(s) dropped", peers.size());
  return {};
}

void Node::update_metrics() {
  replica_->update_metrics();
  const auto& ts = transport_->stats();
  metrics_.set_counter("tern_snapshots_sent_total", ts.snapshots_sent);
  metrics_.set_counter("tern_peer_frames_sent_total", ts.frames_sent);
  metrics_.set_counter("tern_peer_frames_received_total", ts.frames_received);
  metrics_.set_counter("tern_peer_frames_dropped_total", ts.dropped);
  metrics_.set_counter("tern_peer_frames_rejected_total", ts.rejected);
  metrics_.set_counter("tern_peer_connects_total", ts.connects);
  metrics_.set_counter("tern_peer_frames_blocked_total", ts.blocked);
  metrics_.set_counter("tern_peer_frames_malformed_total", ts.malformed);
  metrics_.set_counter("tern_peer_auth_failures_total", ts.auth_failed);
  metrics_.set_counter("tern_peer_handshakes_total", ts.handshakes);
  metrics_.set_counter("tern_peer_connections_timed_out_total", ts.timed_out);
  metrics_.set_counter("tern_peer_connections_evicted_total", ts.evicted);
}

void Node::send(const raft::Message& m) {
  if (std::holds_alternative<raft::InstallSnapshotRequest>(m.body)) {
    transport_->send_snapshot(m);
  } else {
    transport_->send(m);
  }
}

void Node::set_peer(raft::NodeId id, const std::string& address) {
  if (auto addr = parse_host_port(address)) transport_->set_peer(id, addr->host, addr->port);
}

void Node::remove_peer(raft::NodeId id) { transport_->remove_peer(id); }

std::uint64_t Node::wall_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void Node::post(std::function<void()> fn) {
  asio::post(io_, [alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

void Node::write(storage::Wal& wal, storage::WriteBatch batch, WalDone done) {
#ifdef TERN_PLANTED_BUGS
  if (planted_ack_before_fsync()) {
    raft::Index last = batch.entries.empty() ? wal.last_index() : batch.entries.back().index;
    late_writes().push_back(LateWrite{Clock::now() + kLateWrite, &wal, std::move(batch)});
    auto timer = std::make_shared<asio::steady_timer>(io_, kLateWrite);
    timer->async_wait([timer, alive = alive_](const asio::error_code&) {
      if (*alive) write_due();
    });
    done(last);
    return;
  }
#endif
  if (batch.entries.size() <= opt_.inline_write_max_entries && !batch.reset_to) {
    // A small batch (light load): write and sync on the loop thread. Two thread hand-offs cost
    // more latency than they save here; heavier batches go to the disk thread and overlap with
    // the loop's work (group commit).
    done(wal.write(batch));
    return;
  }
  auto shared = std::make_shared<WalDone>(std::move(done));
  auto r = wal.submit(std::move(batch), [this, shared, alive = alive_](Result<raft::Index, storage::StorageError> res) {
    asio::post(io_, [shared, alive, res = std::move(res)] {
      if (*alive) (*shared)(res);
    });
  });
  if (!r) (*shared)(fail(r.error()));
}

void Node::save_snapshot(std::function<SnapshotResult()> work, std::function<void(SnapshotResult)> done) {
  asio::post(snapshot_pool_, [this, work = std::move(work), done = std::move(done), alive = alive_]() mutable {
    auto f = work();
    asio::post(io_, [alive, done = std::move(done), f = std::move(f)] {
      if (*alive) done(f);
    });
  });
}

}  // namespace tern::service
