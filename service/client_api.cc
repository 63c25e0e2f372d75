#include "service/client_api.h"

#include <kj/async.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <string>

#include "client/api/tern.capnp.h"
#include "common/assert.h"
#include "service/node_await.h"
#include "service/proto/admin.capnp.h"
#include "service/sm/command.h"
#include "service/sm/query.h"

namespace tern::service {
namespace {

constexpr std::size_t kMaxOpsPerMulti = 1024;  // as service/sm/command.cc decodes

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }
std::string bytes(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }
kj::ArrayPtr<const kj::byte> as_data(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

void set_error(api::Result::Builder b, api::Errc e, const std::string& message, raft::NodeId hint = {}) {
  b.setErr(e);
  b.setMessage(message);
  b.setLeaderHint(hint.value);
}

void set_node_error(api::Result::Builder b, const NodeError& e) {
  api::Errc code = api::Errc::UNAVAILABLE;
  switch (e.code) {
    case NodeErrc::not_leader: code = api::Errc::NOT_LEADER; break;
    case NodeErrc::unknown_outcome: code = api::Errc::UNKNOWN_OUTCOME; break;
    case NodeErrc::busy: code = api::Errc::SLOW_DOWN; break;
    case NodeErrc::too_large: code = api::Errc::TOO_LARGE; break;
    case NodeErrc::timed_out: code = api::Errc::TIMED_OUT; break;
    case NodeErrc::shutting_down: code = api::Errc::UNAVAILABLE; break;
    // A leader handing over refuses new proposals for a moment (thesis §3.10): the client's
    // request is fine, so it retries — at the new leader the hint names, if any.
    case NodeErrc::transfer_in_progress: code = api::Errc::NOT_LEADER; break;
    case NodeErrc::conf_change_pending:
    case NodeErrc::invalid: code = api::Errc::BAD_REQUEST; break;
  }
  set_error(b, code, e.message, e.leader_hint);
}

void set_stat(api::Stat::Builder b, const sm::Stat& s) {
  b.setCreatedIndex(s.created_index);
  b.setModifiedIndex(s.modified_index);
  b.setChildIndex(s.child_index);
  b.setVersion(s.version);
  b.setChildVersion(s.child_version);
  b.setEphemeralOwner(s.ephemeral_owner);
  b.setLease(s.lease);
  b.setDataLength(s.data_length);
  b.setChildCount(s.child_count);
  b.setCtimeMs(s.ctime_ms);
  b.setMtimeMs(s.mtime_ms);
}

void set_response(api::Result::Builder b, const sm::Response& r, std::uint64_t index) {
  // Errc's first values are sm::Errc's own (client/api/tern.capnp).
  b.setErr(static_cast<api::Errc>(static_cast<std::uint16_t>(r.err)));
  if (r.err != sm::Errc::ok) b.setMessage(sm::errc_name(r.err));
  b.setIndex(index);
  b.setPath(r.path);
  b.setData(as_data(r.data));
  set_stat(b.initStat(), r.stat);
  b.setId(r.id);
  b.setTtlMs(r.ttl_ms);
  auto names = b.initNames(static_cast<unsigned>(r.names.size()));
  for (unsigned i = 0; i < r.names.size(); ++i) names.set(i, r.names[i]);
  auto results = b.initResults(static_cast<unsigned>(r.results.size()));
  for (unsigned i = 0; i < r.results.size(); ++i) set_response(results[i], r.results[i], index);
}

void set_answer(api::Result::Builder b, const std::string& answer, std::uint64_t index) {
  auto r = sm::decode_response(answer);
  // The state machine encodes every answer it gives: anything else is a bug here, not the client's.
  TERN_ASSERT_MSG(r.has_value(), "undecodable state machine answer");
  set_response(b, *r, index);
}

// A client's operation as a state machine operation, or nullopt if it cannot be one (the state
// machine validates the rest and answers with a typed error: nothing it is given can crash it).
std::optional<sm::Op> to_op(api::Op::Reader in, int depth) {
  auto type = static_cast<std::uint16_t>(in.getType());
  if (type < 1 || type > sm::max_op_type) return std::nullopt;
  if (type == static_cast<std::uint16_t>(sm::OpType::keep_alive_batch)) return std::nullopt;  // the nodes' own
  sm::Op op;
  op.type = static_cast<sm::OpType>(type);
  op.path = text(in.getPath());
  op.data = bytes(in.getData());
  op.version = in.getVersion();
  op.flags = in.getFlags();
  op.ttl_ms = in.getTtlMs();
  op.id = in.getId();
  op.recursive = in.getRecursive();
  auto ops = in.getOps();
  if (ops.size() > 0 && (depth > 0 || ops.size() > kMaxOpsPerMulti)) return std::nullopt;
  for (auto o : ops) {
    auto sub = to_op(o, depth + 1);
    if (!sub) return std::nullopt;
    op.ops.push_back(std::move(*sub));
  }
  return op;
}

std::optional<std::string> to_query(api::Query::Reader in) {
  auto type = static_cast<std::uint16_t>(in.getType());
  if (type < 1 || type > sm::max_query_type) return std::nullopt;
  sm::Query q;
  q.type = static_cast<sm::QueryType>(type);
  q.path = text(in.getPath());
  q.cursor = text(in.getCursor());
  q.limit = in.getLimit();
  q.id = in.getId();
  return sm::encode(q);
}

// Admission (ClientApiLimits, per connection): the in-flight bound, then the token bucket,
// refilled with time. False: answer slowDown (nothing was started).
bool admit(ConnectionBudget& b, const ClientApiLimits& limits) {
  if (b.in_flight >= limits.requests_in_flight) return false;
  auto rate = limits.requests_per_second;
  if (rate == 0) return true;
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - b.refilled).count();
  b.refilled = now;
  b.tokens = std::min<double>(rate, b.tokens + elapsed * rate);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

template <class Context>
kj::Promise<void> slow_down(Context& ctx, const ClientApiLimits& limits) {
  set_error(ctx.getResults().initResult(), api::Errc::SLOW_DOWN,
            "this connection is over " + std::to_string(limits.requests_per_second) + " requests per second or " +
                std::to_string(limits.requests_in_flight) + " in flight: back off");
  return kj::READY_NOW;
}

// Counts `p` as one of the connection's requests in flight until it settles (or is cancelled).
kj::Promise<void> counted(const std::shared_ptr<ConnectionBudget>& b, kj::Promise<void> p) {
  ++b->in_flight;
  return p.attach(kj::defer([b] { --b->in_flight; }));
}

// Proposes `c` (validated and size-checked first) and fills `out` with the outcome.
template <class Context>
kj::Promise<void> propose(ClientApi& api, Context ctx, const sm::Command& c, std::uint64_t request_id) {
  std::string command = sm::encode(c);
  const auto& limits = api.sm().state().limits();  // the applier's, as apply will check them
  if (command.size() > limits.max_request_bytes) {
    set_error(ctx.getResults().initResult(), api::Errc::TOO_LARGE,
              "request of " + std::to_string(command.size()) + " bytes; the limit is " +
                  std::to_string(limits.max_request_bytes));
    return kj::READY_NOW;
  }
  spdlog::debug("request {:016x}: session {} seq {} op {}", request_id, c.session, c.seq, static_cast<int>(c.op.type));
  Node& node = api.node();
  auto start = std::chrono::steady_clock::now();
  auto slow = api.limits().slow_request;
  // The request id goes with the command when this node forwards it, for the leader's log lines.
  return await_node<Result<Committed, NodeError>>([&](auto cb) { node.propose(std::move(command), std::move(cb), request_id); })
      .then([ctx, request_id, start, slow](auto holder) mutable {
        auto& r = **holder;
        auto out = ctx.getResults().initResult();
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        if (!r) {
          spdlog::info("request {:016x}: not committed after {} ms: {}", request_id, took.count(), r.error().message);
          return set_node_error(out, r.error());
        }
        if (took > slow)
          spdlog::info("request {:016x}: slow: committed at index {} after {} ms", request_id, r->index.value, took.count());
        else
          spdlog::debug("request {:016x}: committed at index {} after {} ms", request_id, r->index.value, took.count());
        set_answer(out, r->response, r->index.value);
      });
}

// A read at the requested consistency (docs/client.md, Reads).
template <class Context>
kj::Promise<void> serve_read(ClientApi& api, Context ctx) {
  auto params = ctx.getParams();
  auto query = to_query(params.getQuery());
  if (!query) {
    set_error(ctx.getResults().initResult(), api::Errc::BAD_REQUEST, "unknown query type");
    return kj::READY_NOW;
  }
  auto options = params.getOptions();
  auto consistency = options.getConsistency();
  std::uint64_t request_id = params.getRequestId();
  std::uint64_t applied = api.sm().state().applied_index();
  if (consistency == api::Consistency::SERIALIZABLE ||
      (consistency == api::Consistency::AT_LEAST && applied >= options.getMinIndex())) {
    set_answer(ctx.getResults().initResult(), api.sm().query(*query), applied);
    return kj::READY_NOW;
  }
  // Linearizable (or a state this node has not reached yet): ReadIndex, then the local state.
  Node& node = api.node();
  const SmApplier& sm = api.sm();
  return await_node<Result<ReadResult, NodeError>>([&](auto cb) {
           // The answer reflects the state machine when the query ran: the reply carries its
           // applied index (the watch ordering waits for it). Not the node's applied index, which
           // counts entries the state machine never sees (membership, addresses): a watcher would
           // wait for events through an index no event can reach (reads hung for the request
           // timeout after a member's client-address entry).
           node.read(std::move(*query), [&sm, cb = std::move(cb)](Result<ReadResult, NodeError> r) {
             if (r) r->index = raft::Index(sm.state().applied_index());
             cb(std::move(r));
           });
         })
      .then([ctx, request_id](auto holder) mutable {
        auto& r = **holder;
        auto out = ctx.getResults().initResult();
        if (!r) {
          spdlog::info("read {:016x}: {}", request_id, r.error().message);
          return set_node_error(out, r.error());
        }
        set_answer(out, r->response, r->index.value);
      });
}

void set_notification(api::Notification::Builder b, const Notification& n) {
  TERN_ASSERT(!n.watches.empty());
  b.setWatch(n.watches.front());
  if (n.watches.size() > 1) {
    auto more = b.initMoreWatches(static_cast<unsigned>(n.watches.size() - 1));
    for (unsigned i = 1; i < n.watches.size(); ++i) more.set(i - 1, n.watches[i]);
  }
  switch (n.type) {
    case Notification::Type::resync: b.setResync(n.resume_from); return;
    case Notification::Type::overflow: b.setOverflow(n.resume_from); return;
    case Notification::Type::event: break;
  }
  auto e = b.initEvent();
  e.setIndex(n.event.index);
  e.setType(static_cast<api::EventType>(static_cast<std::uint16_t>(n.event.type)));
  e.setPath(n.event.path);
  e.setData(as_data(n.event.data));
  e.setPrevData(as_data(n.event.prev_data));
  set_stat(e.initStat(), n.event.stat);
  e.setId(n.event.id);
  e.setToken(n.event.token);
}

// --- Handles (docs/client.md, Handles) -------------------------------------------------------
// A handle's capability is a thin object holding its ids and its session's capability: each of
// its methods is the session's own `write` or `read` of the id-based operation, so there is one
// path for validation, admission, exactly-once and event-before-reply ordering. Dropping one
// releases nothing: a client that vanishes loses its locks with its session's expiry, and a
// connection lost in a failover loses no lock (the library releases explicitly).

template <class Context>
kj::Promise<void> forward_write(api::Session::Client& session, Context ctx, std::uint64_t seq, std::uint64_t request_id,
                                api::OpType type, const std::string& path, const std::string& data, std::uint64_t id) {
  auto req = session.writeRequest();
  req.setSeq(seq);
  req.setRequestId(request_id);
  auto op = req.initOp();
  op.setType(type);
  op.setPath(path);
  op.setData(as_data(data));
  op.setId(id);
  return req.send().then([ctx](auto r) mutable { ctx.getResults().setResult(r.getResult()); });
}

template <class Context>
kj::Promise<void> forward_read(api::Session::Client& session, Context ctx, api::ReadOptions::Reader options,
                               std::uint64_t request_id, api::QueryType type, const std::string& path, std::uint64_t id) {
  auto req = session.readRequest();
  req.setRequestId(request_id);
  req.setOptions(options);
  auto q = req.initQuery();
  q.setType(type);
  q.setPath(path);
  q.setId(id);
  return req.send().then([ctx](auto r) mutable { ctx.getResults().setResult(r.getResult()); });
}

class LockImpl final : public api::Lock::Server {
 public:
  LockImpl(api::Session::Client session, std::string name) : session_(kj::mv(session)), name_(std::move(name)) {}
  kj::Promise<void> unlock(UnlockContext ctx) override {
    auto p = ctx.getParams();
    return forward_write(session_, ctx, p.getSeq(), p.getRequestId(), api::OpType::UNLOCK, name_, {}, 0);
  }
  kj::Promise<void> checkToken(CheckTokenContext ctx) override {
    auto p = ctx.getParams();
    return forward_read(session_, ctx, p.getOptions(), p.getRequestId(), api::QueryType::CHECK_TOKEN, name_, p.getToken());
  }

 private:
  api::Session::Client session_;
  std::string name_;
};

class LeaseImpl final : public api::Lease::Server {
 public:
  LeaseImpl(api::Session::Client session, std::uint64_t id) : session_(kj::mv(session)), id_(id) {}
  kj::Promise<void> keepAlive(KeepAliveContext ctx) override {
    auto p = ctx.getParams();
    return forward_write(session_, ctx, p.getSeq(), p.getRequestId(), api::OpType::KEEP_ALIVE_LEASE, {}, {}, id_);
  }
  kj::Promise<void> revoke(RevokeContext ctx) override {
    auto p = ctx.getParams();
    return forward_write(session_, ctx, p.getSeq(), p.getRequestId(), api::OpType::REVOKE_LEASE, {}, {}, id_);
  }
  kj::Promise<void> ttl(TtlContext ctx) override {
    auto p = ctx.getParams();
    return forward_read(session_, ctx, p.getOptions(), p.getRequestId(), api::QueryType::LEASE_TTL, {}, id_);
  }

 private:
  api::Session::Client session_;
  std::uint64_t id_;
};

class LeadershipImpl final : public api::Leadership::Server {
 public:
  LeadershipImpl(api::Session::Client session, std::string election)
      : session_(kj::mv(session)), election_(std::move(election)) {}
  kj::Promise<void> proclaim(ProclaimContext ctx) override {
    auto p = ctx.getParams();
    return forward_write(session_, ctx, p.getSeq(), p.getRequestId(), api::OpType::PROCLAIM, election_,
                         bytes(p.getValue()), 0);
  }
  kj::Promise<void> resign(ResignContext ctx) override {
    auto p = ctx.getParams();
    return forward_write(session_, ctx, p.getSeq(), p.getRequestId(), api::OpType::RESIGN, election_, {}, 0);
  }
  kj::Promise<void> leader(LeaderContext ctx) override {
    auto p = ctx.getParams();
    return forward_read(session_, ctx, p.getOptions(), p.getRequestId(), api::QueryType::LEADER, election_, 0);
  }

 private:
  api::Session::Client session_;
  std::string election_;
};

}  // namespace

// One open session, as the capability that acts for it: whoever holds it has presented the
// session's secret (open or attach), so every command it proposes carries that secret.
class ClientApi::SessionImpl final : public api::Session::Server, public kj::TaskSet::ErrorHandler {
 public:
  SessionImpl(ClientApi& api, std::uint64_t id, std::uint64_t secret, std::shared_ptr<ConnectionBudget> budget)
      : api_(api), id_(id), secret_(secret), budget_(std::move(budget)) {
    api_.attach(this);
  }
  ~SessionImpl() noexcept(false) {
    api_.detach(this);
    if (watcher_ != 0) api_.hub().remove_watcher(watcher_);
  }

  kj::Promise<void> write(WriteContext ctx) override {
    auto p = ctx.getParams();
    auto op = to_op(p.getOp(), 0);
    if (!op || op->type == sm::OpType::open_session || op->type == sm::OpType::close_session) {
      if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
      set_error(ctx.getResults().initResult(), api::Errc::BAD_REQUEST, "not an operation a session can write");
      return kj::READY_NOW;
    }
    return write_op(ctx, p.getSeq(), std::move(*op), p.getRequestId(), [](auto) {});
  }

  // Handles: the same write, answering a capability that holds the ids (see LockImpl).
  kj::Promise<void> lock(LockContext ctx) override {
    auto p = ctx.getParams();
    sm::Op op;
    op.type = sm::OpType::lock;
    op.path = text(p.getName());
    op.flags = p.getFlags();
    op.ttl_ms = p.getLockDelayMs();
    return write_op(ctx, p.getSeq(), std::move(op), p.getRequestId(), [this, name = text(p.getName())](auto results) {
      results.setLock(kj::heap<LockImpl>(thisCap(), name));
    });
  }

  kj::Promise<void> grantLease(GrantLeaseContext ctx) override {
    auto p = ctx.getParams();
    sm::Op op;
    op.type = sm::OpType::grant_lease;
    op.ttl_ms = p.getTtlMs();
    return write_op(ctx, p.getSeq(), std::move(op), p.getRequestId(), [this](auto results) {
      results.setLease(kj::heap<LeaseImpl>(thisCap(), results.getResult().getId()));
    });
  }

  kj::Promise<void> campaign(CampaignContext ctx) override {
    auto p = ctx.getParams();
    std::string name = text(p.getElection());
    sm::Op op;
    op.type = sm::OpType::campaign;
    op.path = name;
    op.data = bytes(p.getValue());
    return write_op(ctx, p.getSeq(), std::move(op), p.getRequestId(), [this, name](auto results) {
      results.setLeadership(kj::heap<LeadershipImpl>(thisCap(), name));
    });
  }

  kj::Promise<void> lockOf(LockOfContext ctx) override {
    ctx.getResults().setLock(kj::heap<LockImpl>(thisCap(), text(ctx.getParams().getName())));
    return kj::READY_NOW;
  }
  kj::Promise<void> leaseOf(LeaseOfContext ctx) override {
    ctx.getResults().setLease(kj::heap<LeaseImpl>(thisCap(), ctx.getParams().getId()));
    return kj::READY_NOW;
  }
  kj::Promise<void> leadershipOf(LeadershipOfContext ctx) override {
    ctx.getResults().setLeadership(kj::heap<LeadershipImpl>(thisCap(), text(ctx.getParams().getElection())));
    return kj::READY_NOW;
  }

  kj::Promise<void> read(ReadContext ctx) override {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    return counted(budget_, serve_read(api_, ctx).then([this, ctx]() mutable { return after_events(ctx); }));
  }

  kj::Promise<void> keepAlive(KeepAliveContext ctx) override {
    using Answer = Result<std::pair<sm::Response, std::uint64_t>, NodeError>;
    return await_node<Answer>([&](auto cb) { api_.keep_alive(id_, secret_, std::move(cb)); })
        .then([ctx](auto holder) mutable {
          auto& r = **holder;
          auto out = ctx.getResults().initResult();
          if (!r) return set_node_error(out, r.error());
          set_response(out, r->first, r->second);
        });
  }

  kj::Promise<void> close(CloseContext ctx) override {
    sm::Command c{id_, ctx.getParams().getSeq(), sm::Op{}, secret_};
    c.op.type = sm::OpType::close_session;
    return propose(api_, ctx, c, 0);
  }

  kj::Promise<void> watch(WatchContext ctx) override {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    auto p = ctx.getParams();
    auto spec = p.getSpec();
    auto out = ctx.getResults().initResult();
    auto kind = static_cast<std::uint16_t>(spec.getKind());
    if (kind > static_cast<std::uint16_t>(WatchKind::events)) {
      set_error(out, api::Errc::BAD_REQUEST, "unknown watch kind");
      return kj::READY_NOW;
    }
    if (watcher_ == 0) {
      watcher_ = api_.hub().add_watcher();
      api_.set_watching(this, true);
    }
    // Every watch of this session delivers to the sink of its latest watch call.
    sink_ = p.getSink();
    WatchSpec w{text(spec.getPath()), static_cast<WatchKind>(kind), spec.getPersistent(), spec.getRecursive()};
    std::uint64_t id = api_.hub().watch(watcher_, std::move(w), p.getResumeFrom());
    if (id == 0) {
      set_error(out, api::Errc::TOO_MANY, "too many watches, or the watcher's queue is full");
      return kj::READY_NOW;
    }
    out.setErr(api::Errc::OK);
    out.setId(id);
    out.setIndex(api_.sm().state().applied_index());
    pump();
    return kj::READY_NOW;
  }

  kj::Promise<void> cancelWatch(CancelWatchContext ctx) override {
    auto out = ctx.getResults().initResult();
    bool found = watcher_ != 0 && api_.hub().cancel(watcher_, ctx.getParams().getWatch());
    if (!found) set_error(out, api::Errc::NO_NODE, "no such watch");
    return kj::READY_NOW;
  }

  // Sends queued notifications, one notify call at a time (the sink's return is the flow
  // control; the hub bounds what waits meanwhile and cuts off a watcher that falls behind).
  void pump() {
    if (in_flight_ || watcher_ == 0 || !sink_) return;
    auto notes = api_.hub().poll(watcher_, api_.limits().notes_per_call);
    if (notes.empty()) {
      handed_out(0);
      return;
    }
    auto req = sink_->notifyRequest();
    auto list = req.initNotes(static_cast<unsigned>(notes.size()));
    std::uint64_t through = 0;
    for (unsigned i = 0; i < notes.size(); ++i) {
      set_notification(list[i], notes[i]);
      if (notes[i].type == Notification::Type::event) through = std::max(through, notes[i].event.index);
    }
    in_flight_ = true;
    in_flight_since_ = std::chrono::steady_clock::now();
    tasks_->add(req.send().then([this](auto&&) {
      in_flight_ = false;
      pump();
    }));
    // The notify call is on the wire before any reply sent from now on.
    handed_out(through);
  }

 private:
  // A sink that has not answered a notify in time: treated like a failed one.
 public:
  void sweep(std::chrono::steady_clock::time_point now) {
    if (in_flight_ && now - in_flight_since_ > api_.limits().notify_timeout) {
      spdlog::warn("session {}: its watch sink did not answer for {} ms: its watches are dropped", id_,
                   api_.limits().notify_timeout.count());
      tasks_ = kj::heap<kj::TaskSet>(*this);  // cancels the stuck call
      drop_sink();
    }
  }

 private:
  // Ordering (docs/client.md): a reply that reflects index I leaves only after every watch
  // notification of this session for events up to I has been sent, so the client sees the
  // event first (poll hands out whole entries, so `through` covers its entry completely).
  kj::Promise<void> sent_through(std::uint64_t index) {
    pump();
    if (watcher_ == 0 || sent_through_ >= index) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiters_.push_back(Waiter{index, kj::mv(paf.fulfiller)});
    return kj::mv(paf.promise);
  }

  // A write of this session: admitted, proposed (validated and size-checked first), answered
  // after the events it reflects; `made` adds a handle's capability to an `ok` answer.
  template <class Context, class Made>
  kj::Promise<void> write_op(Context& ctx, std::uint64_t seq, sm::Op op, std::uint64_t request_id, Made made) {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    sm::Command c{id_, seq, std::move(op), secret_};
    return counted(budget_, propose(api_, ctx, c, request_id).then([this, ctx, made = kj::mv(made)]() mutable {
      if (ctx.getResults().getResult().getErr() == api::Errc::OK) made(ctx.getResults());
      return after_events(ctx);
    }));
  }

  template <class Context>
  kj::Promise<void> after_events(Context& ctx) {
    return sent_through(ctx.getResults().getResult().getIndex());
  }

  void handed_out(std::uint64_t through) {
    // Drained: everything published so far is out, and the state is at least at applied_index.
    if (watcher_ == 0 || api_.hub().drained(watcher_))
      through = std::max({through, api_.hub().last_index(), api_.sm().state().applied_index()});
    sent_through_ = std::max(sent_through_, through);
    release_waiters(sent_through_);
  }

  void release_waiters(std::uint64_t through) {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->index <= through) {
        it->fulfiller->fulfill();
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void taskFailed(kj::Exception&& e) override {
    // The sink is gone (the client disconnected or failed the call): its watches go with it.
    spdlog::debug("session {}: watch sink failed: {}", id_, e.getDescription().cStr());
    drop_sink();
  }

  void drop_sink() {
    in_flight_ = false;
    sink_.reset();
    if (watcher_ != 0) api_.hub().remove_watcher(watcher_);
    watcher_ = 0;
    api_.set_watching(this, false);
    release_waiters(UINT64_MAX);
  }

  struct Waiter {
    std::uint64_t index;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  std::vector<Waiter> waiters_;
  std::uint64_t sent_through_ = 0;

  ClientApi& api_;
  std::uint64_t id_;
  std::uint64_t secret_;
  std::shared_ptr<ConnectionBudget> budget_;  // of the connection that opened or attached it
  std::uint64_t watcher_ = 0;
  std::optional<api::WatchSink::Client> sink_;
  bool in_flight_ = false;
  std::chrono::steady_clock::time_point in_flight_since_;
  kj::Own<kj::TaskSet> tasks_ = kj::heap<kj::TaskSet>(*this);
};

namespace {

class TernImpl final : public api::Tern::Server {
 public:
  explicit TernImpl(ClientApi& api) : api_(api), budget_(std::make_shared<ConnectionBudget>()) {
    budget_->tokens = static_cast<double>(api_.limits().requests_per_second);  // a full bucket
  }

  kj::Promise<void> openSession(OpenSessionContext ctx) override {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    auto p = ctx.getParams();
    std::uint64_t secret = p.getSecret();
    if (secret == 0) {
      set_error(ctx.getResults().initResult(), api::Errc::BAD_REQUEST, "the session secret must be nonzero");
      return kj::READY_NOW;
    }
    if (api_.sessions() >= api_.limits().max_sessions) {
      set_error(ctx.getResults().initResult(), api::Errc::TOO_MANY, "this node serves too many sessions; try another");
      return kj::READY_NOW;
    }
    sm::Command c{0, 0, sm::Op{}, secret};
    c.op.type = sm::OpType::open_session;
    c.op.ttl_ms = p.getTimeoutMs();
    return counted(budget_, propose(api_, ctx, c, p.getRequestId()).then([this, ctx, secret]() mutable {
      auto r = ctx.getResults();
      if (r.getResult().getErr() == api::Errc::OK)
        r.setSession(kj::heap<ClientApi::SessionImpl>(api_, r.getResult().getId(), secret, budget_));
    }));
  }

  kj::Promise<void> attachSession(AttachSessionContext ctx) override {
    auto p = ctx.getParams();
    if (api_.sessions() >= api_.limits().max_sessions) {
      set_error(ctx.getResults().initResult(), api::Errc::TOO_MANY, "this node serves too many sessions; try another");
      return kj::READY_NOW;
    }
    std::uint64_t id = p.getId(), secret = p.getSecret();
    if (api_.sm().state().owns(id, secret)) {
      attach(ctx, id, secret);
      return kj::READY_NOW;
    }
    // Not in this node's state, which may be behind the client: a follower cut off or restarted
    // when the session was opened does not know it yet. The library takes unknown_session as the
    // end of the session (its ephemerals, locks and watches are gone), so that answer is given
    // only by a state as new as the leader's commit index now: after a ReadIndex (Raft thesis
    // §6.4). Without one (no leader reachable) the answer is the ReadIndex's error, which the
    // client retries, on another node. (Found by tern-jepsen --workload watch: watchers that
    // failed over to a lagging node were told their sessions had expired.)
    sm::Query barrier;
    barrier.type = sm::QueryType::exists;
    barrier.path = "/";
    return await_node<Result<ReadResult, NodeError>>(
               [&](auto cb) { api_.node().read(sm::encode(barrier), std::move(cb)); })
        .then([this, ctx, id, secret](auto holder) mutable {
          auto& r = **holder;
          if (!r) return set_node_error(ctx.getResults().initResult(), r.error());
          if (!api_.sm().state().owns(id, secret))
            return set_error(ctx.getResults().initResult(), api::Errc::UNKNOWN_SESSION,
                             "unknown session (or not its secret)");
          attach(ctx, id, secret);
        });
  }

  kj::Promise<void> read(ReadContext ctx) override {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    return counted(budget_, serve_read(api_, ctx));
  }

  kj::Promise<void> write(WriteContext ctx) override {
    if (!admit(*budget_, api_.limits())) return slow_down(ctx, api_.limits());
    auto p = ctx.getParams();
    auto op = to_op(p.getOp(), 0);
    if (!op) {
      set_error(ctx.getResults().initResult(), api::Errc::BAD_REQUEST, "not a valid operation");
      return kj::READY_NOW;
    }
    sm::Command c{0, 0, std::move(*op), 0};
    return counted(budget_, propose(api_, ctx, c, p.getRequestId()));
  }

  kj::Promise<void> info(InfoContext ctx) override {
    auto s = api_.node().status();
    auto b = ctx.getResults().initInfo();
    b.setNodeId(s.id.value);
    b.setLeader(s.leader.value);
    b.setTerm(s.term.value);
    b.setAppliedIndex(s.applied.value);
    b.setCommitIndex(s.commit.value);
    const auto& limits = api_.sm().state().limits();
    b.setMaxValueBytes(limits.max_value_bytes);
    b.setMaxRequestBytes(limits.max_request_bytes);
    auto ms = b.initMembers(static_cast<unsigned>(s.members.size()));
    for (unsigned i = 0; i < s.members.size(); ++i) {
      ms[i].setId(s.members[i].id.value);
      ms[i].setVoter(s.members[i].voter);
      ms[i].setClientAddress(s.members[i].client_address);
    }
    return kj::READY_NOW;
  }

 private:
  void attach(AttachSessionContext& ctx, std::uint64_t id, std::uint64_t secret) {
    auto out = ctx.getResults().initResult();
    out.setErr(api::Errc::OK);
    out.setId(id);
    out.setIndex(api_.sm().state().applied_index());
    ctx.getResults().setSession(kj::heap<ClientApi::SessionImpl>(api_, id, secret, budget_));
  }

  ClientApi& api_;
  std::shared_ptr<ConnectionBudget> budget_;  // this connection's (one TernImpl per connection)
};

// Dispatches each call by its interface: Admin calls to the admin server, the rest to Tern.
class Bootstrap final : public capnp::Capability::Server {
 public:
  Bootstrap(kj::Own<capnp::Capability::Server> admin, kj::Own<capnp::Capability::Server> tern)
      : admin_(kj::mv(admin)), tern_(kj::mv(tern)) {}

  DispatchCallResult dispatchCall(std::uint64_t interface_id, std::uint16_t method_id,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    if (interface_id == capnp::typeId<proto::Admin>()) return admin_->dispatchCall(interface_id, method_id, context);
    return tern_->dispatchCall(interface_id, method_id, context);
  }

 private:
  kj::Own<capnp::Capability::Server> admin_;
  kj::Own<capnp::Capability::Server> tern_;
};

}  // namespace

ClientApi::ClientApi(const SmApplier& sm, WatchHub& hub, ClientApiLimits limits)
    : sm_(sm), hub_(hub), limits_(limits) {}

ClientApi::~ClientApi() {
  // The RPC system (and with it every session object) must be gone first.
  TERN_ASSERT_MSG(sessions_.empty(), "client sessions outlive the client API");
  *alive_ = false;
}

void ClientApi::keep_alive(std::uint64_t session, std::uint64_t secret, KeepAliveDone done) {
  keep_alives_.push_back(PendingKeepAlive{session, secret, std::move(done)});
  flush_keep_alives();
}

void ClientApi::flush_keep_alives() {
  if (keep_alive_in_flight_ || keep_alives_.empty()) return;
  auto n = static_cast<std::ptrdiff_t>(std::min(keep_alives_.size(), sm::max_keep_alives_per_batch));
  std::vector<PendingKeepAlive> batch(std::make_move_iterator(keep_alives_.begin()),
                                      std::make_move_iterator(keep_alives_.begin() + n));
  keep_alives_.erase(keep_alives_.begin(), keep_alives_.begin() + n);
  sm::Command c;  // no session of its own: each renewal names its session and secret
  c.op.type = sm::OpType::keep_alive_batch;
  c.op.ops.reserve(batch.size());
  for (const auto& k : batch) {
    sm::Op op;
    op.type = sm::OpType::keep_alive;
    op.id = k.session;
    op.data = sm::secret_bytes(k.secret);
    c.op.ops.push_back(std::move(op));
  }
  keep_alive_in_flight_ = true;
  ++keep_alive_batches_;
  node_->propose(sm::encode(c), [this, alive = alive_, batch = std::move(batch)](Result<Committed, NodeError> r) mutable {
    if (!*alive) return;
    keep_alive_in_flight_ = false;
    if (!r) {
      for (auto& k : batch) k.done(fail(r.error()));
    } else {
      auto answer = sm::decode_response(r->response);
      // The state machine answers a batch with one result per renewal, in order: anything else
      // is a bug here, not a client's.
      TERN_ASSERT_MSG(answer && answer->results.size() == batch.size(), "keep-alive batch answer does not match the batch");
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::make_pair(answer->results[i], r->index.value));
    }
    flush_keep_alives();
  });
}

kj::Own<capnp::Capability::Server> ClientApi::tern_server() { return kj::heap<TernImpl>(*this); }

void ClientApi::sweep(std::chrono::steady_clock::time_point now) {
  std::vector<SessionImpl*> stuck_candidates(watching_.begin(), watching_.end());  // sweep may drop a sink
  for (auto* s : stuck_candidates) s->sweep(now);
}

// pump never drops a sink synchronously (a failed notify arrives later, in taskFailed), so
// watching_ does not change under these loops.
void ClientApi::publish(const std::vector<sm::Event>& events) {
  hub_.publish(events);
  for (auto* s : watching_) s->pump();
}

void ClientApi::restored(std::uint64_t index) {
  hub_.restart_at(index);
  for (auto* s : watching_) s->pump();
}

capnp::Capability::Client make_bootstrap(kj::Own<capnp::Capability::Server> admin,
                                         kj::Own<capnp::Capability::Server> tern) {
  return kj::heap<Bootstrap>(kj::mv(admin), kj::mv(tern));
}

}  // namespace tern::service
