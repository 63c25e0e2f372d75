// The client library (client/include/tern/client.h): a KJ event loop on its own thread holds the
// connection and the session capability; callers' threads hand it work with executeSync and do
// the retrying (with backoff) themselves, so no lock guards the connection state.
#include "tern/client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <random>
#include <thread>

#include "client/api/tern.capnp.h"

namespace tern {

const char* error_name(Error e) {
  static const char* const names[] = {
      "ok",           "bad_path",     "no_node",         "node_exists", "no_parent",  "not_empty",
      "bad_version",  "too_large",    "ephemeral_parent", "unknown_session", "unknown_lease",
      "check_failed", "bad_request",  "stale_request",   "busy",        "too_many",   "not_held",
      "not_leader",   "unknown_outcome", "unavailable",  "timed_out",   "slow_down",  "disconnected"};
  auto i = static_cast<std::size_t>(e);
  return i < std::size(names) ? names[i] : "unknown";
}

namespace {

constexpr std::uint64_t kFromNow = UINT64_MAX;

// An operation as the library holds it before it is put on the wire (api::Op).
struct WireOp {
  api::OpType type = api::OpType::NONE;
  std::string path, data;
  std::int64_t version = -1;
  std::uint32_t flags = 0;
  std::int64_t ttl_ms = 0;
  std::uint64_t id = 0;
  bool recursive = false;
  std::vector<WireOp> ops;
};

void fill(api::Op::Builder b, const WireOp& op) {
  b.setType(op.type);
  b.setPath(op.path);
  b.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(op.data.data()), op.data.size()));
  b.setVersion(op.version);
  b.setFlags(op.flags);
  b.setTtlMs(op.ttl_ms);
  b.setId(op.id);
  b.setRecursive(op.recursive);
  auto ops = b.initOps(static_cast<unsigned>(op.ops.size()));
  for (unsigned i = 0; i < op.ops.size(); ++i) fill(ops[i], op.ops[i]);
}

struct WireQuery {
  api::QueryType type = api::QueryType::GET;
  std::string path, cursor;
  std::uint64_t limit = 0, id = 0;
};

Stat to_stat(api::Stat::Reader s) {
  Stat o;
  o.created_index = s.getCreatedIndex();
  o.modified_index = s.getModifiedIndex();
  o.child_index = s.getChildIndex();
  o.version = s.getVersion();
  o.child_version = s.getChildVersion();
  o.ephemeral_owner = s.getEphemeralOwner();
  o.lease = s.getLease();
  o.data_length = s.getDataLength();
  o.child_count = s.getChildCount();
  o.ctime_ms = s.getCtimeMs();
  o.mtime_ms = s.getMtimeMs();
  return o;
}

std::string to_string(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }

Reply to_reply(api::Result::Reader r) {
  Reply o;
  auto err = static_cast<std::size_t>(r.getErr());
  o.error = err <= static_cast<std::size_t>(Error::slow_down) ? static_cast<Error>(err) : Error::bad_request;
  o.message = r.getMessage();
  o.index = r.getIndex();
  o.path = r.getPath();
  o.data = to_string(r.getData());
  o.stat = to_stat(r.getStat());
  o.id = r.getId();
  o.ttl_ms = r.getTtlMs();
  for (auto n : r.getNames()) o.names.emplace_back(n);
  for (auto x : r.getResults()) o.results.push_back(to_reply(x));
  o.leader_hint = r.getLeaderHint();
  return o;
}

Reply failure(Error e, std::string message) {
  Reply r;
  r.error = e;
  r.message = std::move(message);
  return r;
}

// Errors a retry (on another node, or later) may cure.
bool retryable(Error e) {
  return e == Error::not_leader || e == Error::unavailable || e == Error::disconnected || e == Error::slow_down ||
         e == Error::timed_out || e == Error::unknown_outcome;
}

}  // namespace

struct Client::Impl {
  struct Watch {
    WatchKind kind;
    std::string path;
    bool persistent, recursive;
    WatchCallback callback;
    std::uint64_t last_index;  // every event up to it has been delivered
    std::uint64_t server_id = 0;
  };

  class Sink final : public api::WatchSink::Server {
   public:
    explicit Sink(Impl& impl) : impl_(impl) {}
    kj::Promise<void> notify(NotifyContext ctx) override {
      for (auto n : ctx.getParams().getNotes()) impl_.deliver(n);
      return kj::READY_NOW;
    }

   private:
    Impl& impl_;
  };

  ClientOptions opt;
  std::thread thread;
  const kj::Executor* executor = nullptr;
  kj::AsyncIoContext* io = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> shutdown;

  // Loop-thread state.
  struct Conn {
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyClient> rpc;
    api::Tern::Client tern = nullptr;
    kj::Maybe<api::Session::Client> session;
    std::uint64_t node_id = 0;
  };
  kj::Maybe<kj::Own<Conn>> conn;
  std::size_t endpoint = 0;
  std::map<std::uint64_t, std::size_t> endpoint_of;  // node id -> endpoint index
  std::map<std::uint64_t, Watch> watches;            // local watch id -> watch
  std::uint64_t next_watch = 1;
  kj::Own<kj::TaskSet> tasks;
  struct Errors : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } errors;

  // Shared: set once at open; read from any thread.
  std::atomic<std::uint64_t> session_id{0};
  std::uint64_t secret = 0;
  std::atomic<std::uint64_t> next_seq{1};
  std::atomic<bool> expired{false};  // an attach found the session gone: nothing can revive it
  std::mt19937_64 rng{std::random_device{}()};

  void run(std::promise<void>& ready) {
    auto ctx = kj::setupAsyncIo();
    io = &ctx;
    executor = &kj::getCurrentThreadExecutor();
    tasks = kj::heap<kj::TaskSet>(errors);
    auto paf = kj::newPromiseAndFulfiller<void>();
    shutdown = kj::mv(paf.fulfiller);
    ready.set_value();
    paf.promise.wait(ctx.waitScope);
    tasks = nullptr;
    conn = nullptr;
  }

  // --- loop thread -----------------------------------------------------------------------------

  kj::Promise<Conn*> connected() {
    KJ_IF_MAYBE(c, conn) { return c->get(); }
    const std::string& addr = opt.endpoints[endpoint % opt.endpoints.size()];
    return io->provider->getNetwork().parseAddress(addr).then([](kj::Own<kj::NetworkAddress> a) {
      return a->connect().attach(kj::mv(a));
    }).then([this](kj::Own<kj::AsyncIoStream> stream) {
      auto c = kj::heap<Conn>();
      c->rpc = kj::heap<capnp::TwoPartyClient>(*stream);
      c->stream = kj::mv(stream);
      c->tern = c->rpc->bootstrap().castAs<api::Tern>();
      Conn* raw = c.get();
      conn = kj::mv(c);
      return raw->tern.infoRequest().send().then([this, raw](auto info) {
        raw->node_id = info.getInfo().getNodeId();
        endpoint_of[raw->node_id] = endpoint % opt.endpoints.size();
        return raw;
      });
    });
  }

  kj::Promise<api::Session::Client> session() {
    return connected().then([this](Conn* c) -> kj::Promise<api::Session::Client> {
      KJ_IF_MAYBE(s, c->session) { return *s; }
      if (session_id == 0) {
        auto req = c->tern.openSessionRequest();
        req.setTimeoutMs(opt.session_timeout.count());
        req.setSecret(secret);
        return req.send().then([this, c](auto r) -> api::Session::Client {
          auto res = r.getResult();
          if (res.getErr() != api::Errc::OK) KJ_FAIL_REQUIRE("open session", res.getMessage().cStr(), static_cast<int>(res.getErr()));
          session_id = res.getId();
          c->session = r.getSession();
          return r.getSession();
        });
      }
      auto req = c->tern.attachSessionRequest();
      req.setId(session_id);
      req.setSecret(secret);
      return req.send().then([this, c](auto r) -> api::Session::Client {
        auto res = r.getResult();
        if (res.getErr() == api::Errc::UNKNOWN_SESSION) expired = true;
        if (res.getErr() != api::Errc::OK) KJ_FAIL_REQUIRE("attach session", res.getMessage().cStr(), static_cast<int>(res.getErr()));
        api::Session::Client s = r.getSession();
        c->session = s;
        rewatch(s);
        return s;
      });
    });
  }

  // After a failover: every watch again, from the last index it delivered.
  void rewatch(api::Session::Client s) {
    for (auto& [local, w] : watches) {
      auto req = make_watch_request(s, w, w.last_index);
      auto id = local;
      tasks->add(req.send().then([this, id](auto r) {
        auto it = watches.find(id);
        if (it != watches.end() && r.getResult().getErr() == api::Errc::OK) it->second.server_id = r.getResult().getId();
      }));
    }
  }

  capnp::Request<api::Session::WatchParams, api::Session::WatchResults> make_watch_request(api::Session::Client& s,
                                                                                        const Watch& w,
                                                                                        std::uint64_t from) {
    auto req = s.watchRequest();
    auto spec = req.initSpec();
    spec.setPath(w.path);
    spec.setKind(static_cast<api::WatchKind>(static_cast<std::uint16_t>(w.kind)));
    spec.setPersistent(w.persistent);
    spec.setRecursive(w.recursive);
    req.setResumeFrom(from);
    req.setSink(kj::heap<Sink>(*this));
    return req;
  }

  void deliver(api::Notification::Reader n) {
    auto it = std::find_if(watches.begin(), watches.end(), [&](auto& kv) { return kv.second.server_id == n.getWatch(); });
    if (it == watches.end()) return;
    Watch& w = it->second;
    WatchEvent e;
    switch (n.which()) {
      case api::Notification::EVENT: {
        auto ev = n.getEvent();
        // Never twice: a resume from last_index replays only later entries, and the server hands
        // out whole entries, so only an older index can be a repeat. One entry's events share
        // its index (a multi, a recursive delete, a session's ephemerals): all of them pass.
        if (ev.getIndex() < w.last_index && w.last_index != kFromNow) return;
        e.type = static_cast<WatchEvent::Type>(static_cast<std::uint16_t>(ev.getType()));
        e.index = ev.getIndex();
        e.path = ev.getPath();
        e.data = to_string(ev.getData());
        e.prev_data = to_string(ev.getPrevData());
        e.stat = to_stat(ev.getStat());
        e.id = ev.getId();
        e.token = ev.getToken();
        break;
      }
      case api::Notification::RESYNC:
        e.type = WatchEvent::Type::resync;
        e.index = n.getResync();
        break;
      case api::Notification::OVERFLOW: {
        // Cut off for falling behind: watch again from where delivery stopped (nothing lost).
        w.last_index = n.getOverflow();
        KJ_IF_MAYBE(c, conn) {
          KJ_IF_MAYBE(s, (*c)->session) {
            auto id = it->first;
            tasks->add(make_watch_request(*s, w, w.last_index).send().then([this, id](auto r) {
              auto jt = watches.find(id);
              if (jt != watches.end() && r.getResult().getErr() == api::Errc::OK) jt->second.server_id = r.getResult().getId();
            }));
          }
        }
        return;
      }
    }
    w.last_index = e.index;
    auto callback = w.callback;
    if (!w.persistent && e.type != WatchEvent::Type::resync) watches.erase(it);
    callback(e);
  }

  void drop_connection() { conn = nullptr; }

  void fail_over(std::uint64_t leader_hint) {
    drop_connection();
    auto it = endpoint_of.find(leader_hint);
    if (leader_hint != 0 && it != endpoint_of.end() && it->second != endpoint % opt.endpoints.size())
      endpoint = it->second;
    else
      ++endpoint;
  }

  template <class T>
  kj::Promise<T> with_timeout(kj::Promise<T> p, std::chrono::milliseconds d) {
    return io->provider->getTimer().timeoutAfter(d.count() * kj::MILLISECONDS, kj::mv(p));
  }

  // --- caller threads --------------------------------------------------------------------------

  // Runs `attempt` (a promise for a Reply, on the loop thread) until it gives an answer that no
  // retry can change, failing over between endpoints with exponential backoff and jitter.
  template <class Attempt>
  Reply retrying(Attempt attempt, bool is_write) {
    auto deadline = std::chrono::steady_clock::now() + opt.request_timeout;
    std::chrono::milliseconds backoff{10};
    Reply last = failure(Error::disconnected, "no endpoint answered");
    bool maybe_applied = false;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      last = executor->executeSync([&]() -> kj::Promise<Reply> {
        return with_timeout(attempt(), left).catch_([this](kj::Exception&& e) {
          drop_connection();
          return failure(Error::disconnected, e.getDescription().cStr());
        });
      });
      if (last.error == Error::unknown_outcome || last.error == Error::timed_out ||
          (last.error == Error::disconnected && is_write))
        maybe_applied = true;
      if (expired) return failure(Error::unknown_session, "the session expired (or was closed)");
      if (!retryable(last.error)) return last;
      executor->executeSync([&] { fail_over(last.leader_hint); });
      auto jitter = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, static_cast<int>(backoff.count()))(rng));
      std::this_thread::sleep_for(std::min(backoff + jitter, left));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
    }
    // Retrying with the same sequence could not settle a write that may have applied.
    if (is_write && maybe_applied) last.error = Error::unknown_outcome;
    return last;
  }

  Reply write(WireOp op) {
    std::uint64_t seq = next_seq++;
    return retrying(
        [this, seq, op]() {
          return session().then([seq, op](api::Session::Client s) {
            auto req = s.writeRequest();
            req.setSeq(seq);
            fill(req.initOp(), op);
            return req.send().then([](auto r) { return to_reply(r.getResult()); });
          });
        },
        true);
  }

  Reply read(WireQuery q, ReadOptions o) {
    return retrying(
        [this, q, o]() {
          return session().then([q, o](api::Session::Client s) {
            auto req = s.readRequest();
            auto b = req.initQuery();
            b.setType(q.type);
            b.setPath(q.path);
            b.setCursor(q.cursor);
            b.setLimit(q.limit);
            b.setId(q.id);
            auto ob = req.initOptions();
            ob.setConsistency(static_cast<api::Consistency>(static_cast<std::uint16_t>(o.consistency)));
            ob.setMinIndex(o.min_index);
            return req.send().then([](auto r) { return to_reply(r.getResult()); });
          });
        },
        false);
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Client> Client::connect(ClientOptions options, std::string* error) {
  if (options.endpoints.empty()) {
    if (error) *error = "no endpoints";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  do impl->secret = impl->rng();
  while (impl->secret == 0);
  std::promise<void> ready;
  Impl* raw = impl.get();
  impl->thread = std::thread([raw, &ready] { raw->run(ready); });
  ready.get_future().wait();
  std::unique_ptr<Client> c(new Client(std::move(impl)));
  // Open the session now, so that a client that exists has one.
  Reply r = c->impl_->retrying([raw]() { return raw->session().then([](auto) { return Reply{}; }); }, false);
  if (!r.ok()) {
    if (error) *error = std::string(error_name(r.error)) + ": " + r.message;
    return nullptr;
  }
  // Keep the session alive while idle: a keep-alive every third of the timeout.
  auto interval = std::max<std::int64_t>(raw->opt.session_timeout.count() / 3, 10);
  if (raw->opt.keep_alive) raw->executor->executeSync([raw, interval] {
    raw->tasks->add(kj::evalLater([raw, interval]() -> kj::Promise<void> {
      struct Loop {
        static kj::Promise<void> go(Impl* impl, std::int64_t ms) {
          return impl->io->provider->getTimer().afterDelay(ms * kj::MILLISECONDS).then([impl, ms] {
            return impl->session()
                .then([](api::Session::Client s) { return s.keepAliveRequest().send().ignoreResult(); })
                .catch_([impl](kj::Exception&&) { impl->fail_over(0); })
                .then([impl, ms] { return go(impl, ms); });
          });
        }
      };
      return Loop::go(raw, interval);
    }));
  });
  return c;
}

Client::~Client() {
  if (!impl_) return;
  std::uint64_t seq = impl_->next_seq++;
  Impl* raw = impl_.get();
  auto saved = impl_->opt.request_timeout;
  impl_->opt.request_timeout = std::min(saved, std::chrono::milliseconds(2000));
  impl_->retrying(
      [raw, seq]() {
        return raw->session().then([seq](api::Session::Client s) {
          auto req = s.closeRequest();
          req.setSeq(seq);
          return req.send().then([](auto r) { return to_reply(r.getResult()); });
        });
      },
      true);
  impl_->executor->executeSync([raw] { raw->shutdown->fulfill(); });
  impl_->thread.join();
}

std::uint64_t Client::session_id() const { return impl_->session_id; }
std::chrono::milliseconds Client::session_timeout() const { return impl_->opt.session_timeout; }

namespace {
WireOp op(api::OpType type, std::string path = {}, std::string data = {}) {
  WireOp o;
  o.type = type;
  o.path = std::move(path);
  o.data = std::move(data);
  return o;
}
std::uint32_t create_flags(const CreateOptions& o) {
  return (o.ephemeral ? 1u : 0u) | (o.sequential ? 2u : 0u) | (o.container ? 4u : 0u) | (o.ttl_ms > 0 ? 8u : 0u);
}
WireQuery query(api::QueryType type, std::string path = {}) {
  WireQuery q;
  q.type = type;
  q.path = std::move(path);
  return q;
}
}  // namespace

Reply Client::create(const std::string& path, const std::string& data, CreateOptions options) {
  auto o = op(api::OpType::CREATE, path, data);
  o.flags = create_flags(options);
  o.ttl_ms = options.ttl_ms;
  o.id = options.lease;
  return impl_->write(std::move(o));
}

Reply Client::get(const std::string& path, ReadOptions options) { return impl_->read(query(api::QueryType::GET, path), options); }
Reply Client::exists(const std::string& path, ReadOptions options) {
  return impl_->read(query(api::QueryType::EXISTS, path), options);
}

Reply Client::set(const std::string& path, const std::string& data, std::int64_t version) {
  auto o = op(api::OpType::SET, path, data);
  o.version = version;
  return impl_->write(std::move(o));
}

Reply Client::remove(const std::string& path, std::int64_t version, bool recursive) {
  auto o = op(api::OpType::REMOVE, path);
  o.version = version;
  o.recursive = recursive;
  return impl_->write(std::move(o));
}

Reply Client::children(const std::string& path, const std::string& cursor, std::uint64_t limit, ReadOptions options) {
  auto q = query(api::QueryType::CHILDREN, path);
  q.cursor = cursor;
  q.limit = limit;
  return impl_->read(std::move(q), options);
}

Reply Client::multi(const std::vector<TxnOp>& ops) {
  auto m = op(api::OpType::MULTI);
  for (const auto& t : ops) {
    WireOp o = op(api::OpType::CHECK, t.path, t.data);
    o.version = t.version;
    switch (t.kind) {
      case TxnOp::Kind::check_version: break;
      case TxnOp::Kind::check_exists: o.flags = 1; break;
      case TxnOp::Kind::check_not_exists: o.flags = 2; break;
      case TxnOp::Kind::check_value: o.flags = 4; break;
      case TxnOp::Kind::create:
        o.type = api::OpType::CREATE;
        o.flags = create_flags(t.create);
        o.ttl_ms = t.create.ttl_ms;
        o.id = t.create.lease;
        o.version = -1;
        break;
      case TxnOp::Kind::set: o.type = api::OpType::SET; break;
      case TxnOp::Kind::remove: o.type = api::OpType::REMOVE; break;
    }
    m.ops.push_back(std::move(o));
  }
  return impl_->write(std::move(m));
}

Reply Client::grant_lease(std::chrono::milliseconds ttl) {
  auto o = op(api::OpType::GRANT_LEASE);
  o.ttl_ms = ttl.count();
  return impl_->write(std::move(o));
}
Reply Client::keep_alive_lease(std::uint64_t lease) {
  auto o = op(api::OpType::KEEP_ALIVE_LEASE);
  o.id = lease;
  return impl_->write(std::move(o));
}
Reply Client::revoke_lease(std::uint64_t lease) {
  auto o = op(api::OpType::REVOKE_LEASE);
  o.id = lease;
  return impl_->write(std::move(o));
}

Reply Client::lock(const std::string& name, bool shared, bool try_only, std::chrono::milliseconds lock_delay) {
  auto o = op(api::OpType::LOCK, name);
  o.flags = (shared ? 1u : 0u) | (try_only ? 2u : 0u);
  o.ttl_ms = lock_delay.count();
  return impl_->write(std::move(o));
}
Reply Client::unlock(const std::string& name) { return impl_->write(op(api::OpType::UNLOCK, name)); }
Reply Client::check_token(const std::string& name, std::uint64_t token) {
  auto q = query(api::QueryType::CHECK_TOKEN, name);
  q.id = token;
  return impl_->read(std::move(q), {});
}
Reply Client::campaign(const std::string& election, const std::string& value) {
  return impl_->write(op(api::OpType::CAMPAIGN, election, value));
}
Reply Client::resign(const std::string& election) { return impl_->write(op(api::OpType::RESIGN, election)); }
Reply Client::proclaim(const std::string& election, const std::string& value) {
  return impl_->write(op(api::OpType::PROCLAIM, election, value));
}
Reply Client::leader(const std::string& election, ReadOptions options) {
  return impl_->read(query(api::QueryType::LEADER, election), options);
}

Reply Client::watch(const std::string& path, WatchKind kind, WatchCallback callback, bool persistent, bool recursive) {
  Impl* raw = impl_.get();
  Impl::Watch w{kind, path, persistent, recursive, std::move(callback), 0};
  return impl_->retrying(
      [raw, w]() {
        return raw->session().then([raw, w](api::Session::Client s) mutable {
          return raw->make_watch_request(s, w, kFromNow).send().then([raw, w](auto r) mutable {
            Reply out = to_reply(r.getResult());
            if (!out.ok()) return out;
            w.server_id = out.id;
            w.last_index = out.index;
            std::uint64_t local = raw->next_watch++;
            raw->watches.emplace(local, std::move(w));
            out.id = local;
            return out;
          });
        });
      },
      false);
}

Reply Client::unwatch(std::uint64_t watch_id) {
  Impl* raw = impl_.get();
  // On the loop thread: forgetting the watch there is what stops its callback; cancelling it on
  // the server is only tidying up (a lost connection drops the server's watches anyway).
  return raw->executor->executeSync([raw, watch_id]() -> kj::Promise<Reply> {
    auto it = raw->watches.find(watch_id);
    if (it == raw->watches.end()) return failure(Error::no_node, "no such watch");
    auto server_id = it->second.server_id;
    raw->watches.erase(it);
    KJ_IF_MAYBE(c, raw->conn) {
      KJ_IF_MAYBE(s, (*c)->session) {
        auto req = s->cancelWatchRequest();
        req.setWatch(server_id);
        return raw->with_timeout(req.send().then([](auto) { return Reply{}; }), std::chrono::milliseconds(2000))
            .catch_([](kj::Exception&&) { return Reply{}; });
      }
    }
    return Reply{};
  });
}

}  // namespace tern
