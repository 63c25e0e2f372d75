// The client library (client/include/tern/client.h): a KJ event loop on its own thread holds the
// connection, the session capability and every request's retries; callers' threads hand it work
// through one queue (Inbox: and wait, or take a future), so no lock guards the connection state.
#include "tern/client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/function.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "client/api/tern.capnp.h"
#include "client/buffered_stream.h"
#include "client/connect.h"

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

// Work that callers' threads hand to the loop thread: one FIFO, so the calls a thread makes run
// in the order it made them (a session's E-order, async and blocking alike). Handing work over
// never waits for the loop: the caller queues it, and wakes the loop (an eventfd write) only when
// the queue was empty and not yet taken, so a busy loop takes many calls per wake. kj::Executor's
// executeSync, used before, cost every call a blocking round trip to the loop thread (a futex
// wait and wake plus an eventfd write): at 128 outstanding most of tern-bench's CPU.
class Inbox {
 public:
  Inbox() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) { KJ_REQUIRE(fd_ >= 0, "eventfd failed"); }
  ~Inbox() { ::close(fd_); }
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  void post(kj::Function<void()> work) {
    bool wake;
    {
      std::lock_guard<std::mutex> g(mu_);
      items_.push_back(kj::mv(work));
      wake = !armed_;
      armed_ = true;
    }
    if (wake) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);  // fails only when the counter is full: then it is set
    }
  }
  // Loop thread: everything queued so far; the next post wakes the loop again.
  std::vector<kj::Function<void()>> take() {
    std::lock_guard<std::mutex> g(mu_);
    armed_ = false;
    return std::exchange(items_, {});
  }
  int fd() const { return fd_; }

 private:
  const int fd_;
  std::mutex mu_;
  std::vector<kj::Function<void()>> items_;
  bool armed_ = false;  // a wake is pending: the loop has not taken the queue since
};

}  // namespace

struct Client::Impl {
  struct Watch {
    WatchKind kind;
    std::string path;
    bool persistent, recursive;
    // Owned here; a watch forgotten while its callback runs hands it to running_kept (below).
    std::shared_ptr<const WatchCallback> callback;
    std::uint64_t last_index;  // every event up to it has been delivered
    std::uint64_t server_id = 0;  // on the current connection; 0: none yet (see by_server_id)
  };

  // One per watch call; its notes count only while its connection is the current one (a note
  // still arriving from a dropped connection is for ids that the next server may give to
  // other watches: the rewatch resumes every watch from what it delivered instead).
  class Sink final : public api::WatchSink::Server {
   public:
    Sink(Impl& impl, std::uint64_t drops) : impl_(impl), drops_(drops) {}
    kj::Promise<void> notify(NotifyContext ctx) override {
      if (impl_.drops != drops_) return kj::READY_NOW;
      for (auto n : ctx.getParams().getNotes()) impl_.deliver_or_keep(n, watch_ids(n));
      return kj::READY_NOW;
    }

   private:
    Impl& impl_;
    std::uint64_t drops_;
  };

  static std::vector<std::uint64_t> watch_ids(api::Notification::Reader n) {
    std::vector<std::uint64_t> ids{n.getWatch()};
    for (auto id : n.getMoreWatches()) ids.push_back(id);
    return ids;
  }

  ClientOptions opt;
  std::shared_ptr<client::Connector> connector;  // plaintext or TLS (client/connect.h)
  std::thread thread;
  const kj::Executor* executor = nullptr;
  Inbox inbox;
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
  std::uint64_t drops = 0;  // connections dropped so far: one failure drops one connection
  // Handles' capabilities on the current connection, by handle key ("lock <name>", "lease <id>",
  // "election <name>"): answered by lock/grantLease/campaign or rebuilt from the ids (lockOf...).
  // They go with the connection (drop_connection), before it.
  std::map<std::string, capnp::Capability::Client> caps;
  std::size_t endpoint = 0;
  std::map<std::uint64_t, std::size_t> endpoint_of;  // node id -> endpoint index
  // ClientOptions::discover_endpoints: the members' client addresses from the newest info
  // answer, which the endpoint source returns (empty: none known yet).
  std::vector<std::string> discovered;
  std::map<std::uint64_t, Watch> watches;            // local watch id -> watch
  using WatchIt = std::map<std::uint64_t, Watch>::iterator;
  std::unordered_map<std::uint64_t, WatchIt> by_server_id;  // server watch id -> its watch
  std::uint64_t next_watch = 1;
  void set_server_id(WatchIt it, std::uint64_t server_id) {
    if (it->second.server_id != 0) by_server_id.erase(it->second.server_id);
    it->second.server_id = server_id;
    if (server_id != 0) by_server_id[server_id] = it;
  }
  void forget_watch(WatchIt it) {
    set_server_id(it, 0);
    if (it->second.callback.get() == running) running_kept = std::move(it->second.callback);
    watches.erase(it);
  }
  // The callback running now (loop thread), called by reference: no copy per delivery (a shared
  // count's atomic increment was a third of the library's cost of a fan-out). Forgetting its
  // watch meanwhile keeps it alive until it returns.
  const WatchCallback* running = nullptr;
  std::shared_ptr<const WatchCallback> running_kept;
  // An exception out of the application's callback stops here: thrown on through the notify call
  // it would fail that call, and the server drops every watch of a sink that fails, without the
  // client knowing (ZooKeeper's client, likewise, logs it and goes on). The watch goes on; the
  // first one is printed to stderr.
  void run_callback(const WatchCallback& callback, const WatchEvent& e) {
    running = &callback;
    KJ_DEFER({
      running = nullptr;
      running_kept.reset();
    });
    try {
      callback(e);
    } catch (const std::exception& x) {
      callback_threw(x.what());
    } catch (...) {
      callback_threw("not a std::exception");
    }
  }
  bool told_callback_threw = false;
  void callback_threw(const char* what) {
    if (std::exchange(told_callback_threw, true)) return;
    std::fprintf(stderr, "tern client: a watch callback threw (%s); the watch goes on\n", what);
  }
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

  // Exactly-once window (docs/client.md, Exactly once): the server keeps the answers of a
  // session's highest 64 sequence numbers (sm::Limits::responses_per_session), so a write gets
  // its number only while fewer than 64 numbers above the lowest unsettled one are taken; a
  // retry is then always either among the kept answers or new, never stale. Loop thread only.
  static constexpr std::uint64_t kWriteWindow = 64;
  std::set<std::uint64_t> unsettled;  // numbers taken by writes still retrying
  struct SeqWaiter {
    std::shared_ptr<std::uint64_t> slot;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  std::deque<SeqWaiter> seq_waiters;  // FIFO: numbers are taken in call order

  bool window_open() const { return unsettled.empty() || next_seq - *unsettled.begin() < kWriteWindow; }
  void take_seq_now(std::uint64_t& slot) {
    slot = next_seq++;
    unsettled.insert(slot);
  }
  // Gives `slot` its number now or when the window opens (a number taken is settled by settle).
  kj::Promise<void> take_seq(std::shared_ptr<std::uint64_t> slot) {
    if (*slot != 0) return kj::READY_NOW;
    if (seq_waiters.empty() && window_open()) {
      take_seq_now(*slot);
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    seq_waiters.push_back(SeqWaiter{kj::mv(slot), kj::mv(paf.fulfiller)});
    return kj::mv(paf.promise);
  }
  void settle(std::uint64_t seq) {
    if (seq == 0) return;
    unsettled.erase(seq);
    while (!seq_waiters.empty() && window_open()) {
      auto w = kj::mv(seq_waiters.front());
      seq_waiters.pop_front();
      if (!w.fulfiller->isWaiting()) continue;  // that attempt was given up (its deadline passed)
      take_seq_now(*w.slot);
      w.fulfiller->fulfill();
    }
  }

  void run(std::promise<void>& ready) {
    auto ctx = kj::setupAsyncIo();
    io = &ctx;
    executor = &kj::getCurrentThreadExecutor();
    tasks = kj::heap<kj::TaskSet>(errors);
    auto wake = ctx.lowLevelProvider->wrapInputFd(inbox.fd(), kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                                   kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
    tasks->add(drain_inbox(*wake));
    auto paf = kj::newPromiseAndFulfiller<void>();
    shutdown = kj::mv(paf.fulfiller);
    ready.set_value();
    paf.promise.wait(ctx.waitScope);
    tasks = nullptr;
    seq_waiters.clear();  // KJ objects go on this thread, with its loop
    caps.clear();
    conn = nullptr;
  }

  // --- loop thread -----------------------------------------------------------------------------

  kj::Promise<void> drain_inbox(kj::AsyncInputStream& wake) {
    return wake.tryRead(&wake_count, sizeof wake_count, sizeof wake_count).then([this, &wake](std::size_t) {
      for (auto& work : inbox.take()) work();
      return drain_inbox(wake);
    });
  }
  std::uint64_t wake_count = 0;

  // ClientOptions::endpoint_source: the rotation becomes its answer. The endpoint in use stays
  // the one in use if it is kept (else the rotation starts at the answer's first); breakers and
  // node ids follow their address. Loop thread only (the only reader of opt.endpoints).
  std::chrono::steady_clock::time_point refreshed_at{};
  void refresh_endpoints() {
    auto now = std::chrono::steady_clock::now();
    if (!opt.endpoint_source || (refreshed_at != std::chrono::steady_clock::time_point{} && now - refreshed_at < opt.endpoint_refresh))
      return;
    refreshed_at = now;
    std::vector<std::string> fresh;
    try {
      for (auto& e : opt.endpoint_source())
        if (!e.empty() && std::find(fresh.begin(), fresh.end(), e) == fresh.end()) fresh.push_back(e);
    } catch (...) {
      return;  // the user's source failed: keep the rotation as it is
    }
    if (fresh.empty() || fresh == opt.endpoints) return;  // never drop the last endpoint
    const auto& old = opt.endpoints;
    std::string current = old[endpoint % old.size()];
    std::vector<Health> h(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i)
      if (auto it = std::find(old.begin(), old.end(), fresh[i]); it != old.end()) h[i] = health[static_cast<std::size_t>(it - old.begin())];
    std::map<std::uint64_t, std::size_t> of;
    for (auto& [node, i] : endpoint_of)
      if (auto it = std::find(fresh.begin(), fresh.end(), old[i]); it != fresh.end()) of[node] = static_cast<std::size_t>(it - fresh.begin());
    auto kept = std::find(fresh.begin(), fresh.end(), current);
    endpoint = kept != fresh.end() ? static_cast<std::size_t>(kept - fresh.begin()) : 0;
    opt.endpoints = std::move(fresh);
    health = std::move(h);
    endpoint_of = std::move(of);
  }

  // An info answer: its members' announced client addresses become the discovered endpoints.
  // A member whose address is not known yet (a node that has not announced it, or an older
  // version) keeps the endpoints in use too, so nothing reachable is dropped on its account.
  void note_members(api::ServerInfo::Reader info) {
    if (!opt.discover_endpoints) return;
    std::vector<std::string> found;
    bool complete = true;
    for (auto m : info.getMembers()) {
      std::string a = m.getClientAddress();
      if (a.empty()) complete = false;
      else if (std::find(found.begin(), found.end(), a) == found.end()) found.push_back(std::move(a));
    }
    if (!complete)
      for (const auto& e : opt.endpoints)
        if (std::find(found.begin(), found.end(), e) == found.end()) found.push_back(e);
    discovered = std::move(found);
  }

  kj::Promise<Conn*> connected() {
    KJ_IF_MAYBE(c, conn) { return c->get(); }
    refresh_endpoints();
    const std::string& addr = opt.endpoints[endpoint % opt.endpoints.size()];
    auto colon = addr.rfind(':');
    std::string host = colon == std::string::npos ? addr : addr.substr(0, colon);
    auto port = static_cast<std::uint16_t>(colon == std::string::npos ? 0 : std::atoi(addr.c_str() + colon + 1));
    return connector->connect(io->provider->getNetwork(), host, port).then([this](kj::Own<kj::AsyncIoStream> raw_stream) {
      kj::Own<kj::AsyncIoStream> stream = kj::heap<client::BufferedStream>(kj::mv(raw_stream));
      auto c = kj::heap<Conn>();
      c->rpc = kj::heap<capnp::TwoPartyClient>(*stream);
      c->stream = kj::mv(stream);
      c->tern = c->rpc->bootstrap().castAs<api::Tern>();
      Conn* raw = c.get();
      conn = kj::mv(c);
      return raw->tern.infoRequest().send().then([this, raw](auto info) {
        raw->node_id = info.getInfo().getNodeId();
        note_members(info.getInfo());
        endpoint_of[raw->node_id] = endpoint % opt.endpoints.size();
        endpoint_ok(endpoint % opt.endpoints.size());
        return raw;
      });
    });
  }

  kj::Promise<api::Session::Client> session() {
    return connected().then([this](Conn* c) -> kj::Promise<api::Session::Client> {
      // The connection may have been dropped (a failover) since `c` was handed out: then `c` is
      // gone; fail this attempt like a lost connection (its retry connects again).
      bool current = false;
      KJ_IF_MAYBE(now, conn) { current = now->get() == c; }
      if (!current) return KJ_EXCEPTION(DISCONNECTED, "the connection was replaced");
      KJ_IF_MAYBE(s, c->session) { return *s; }
      if (session_id == 0) {
        auto req = c->tern.openSessionRequest();
        req.setTimeoutMs(opt.session_timeout.count());
        req.setSecret(secret);
        return req.send().then([this, c](auto r) -> api::Session::Client {
          auto res = r.getResult();
          if (res.getErr() != api::Errc::OK) KJ_FAIL_REQUIRE("open session", res.getMessage().cStr(), static_cast<int>(res.getErr()));
          session_id = res.getId();
          ever_connected = true;
          report(ConnectionState::connected);
          c->session = r.getSession();
          return r.getSession();
        });
      }
      auto req = c->tern.attachSessionRequest();
      req.setId(session_id);
      req.setSecret(secret);
      return req.send().then([this, c](auto r) -> api::Session::Client {
        auto res = r.getResult();
        // The server answers unknown_session only from a state as new as the leader's (a node
        // behind the client answers unavailable instead): the session is gone.
        if (res.getErr() == api::Errc::UNKNOWN_SESSION) session_gone();
        if (res.getErr() != api::Errc::OK) KJ_FAIL_REQUIRE("attach session", res.getMessage().cStr(), static_cast<int>(res.getErr()));
        api::Session::Client s = r.getSession();
        c->session = s;
        rewatch(s);
        if (suspended) {
          suspended = false;
          report(ConnectionState::reconnected);
        }
        return s;
      });
    });
  }

  // After a failover: every watch again, from the last index it delivered. The new server
  // numbers its watches afresh: until a watch's reply names its new id it has none (an old id
  // could be another watch's new one).
  void rewatch(api::Session::Client s) {
    by_server_id.clear();
    for (auto& [local, w] : watches) {
      w.server_id = 0;
      tasks->add(send_watch(make_watch_request(s, w, w.last_index), local));
    }
  }

  // Sends a watch call for local watch `id` and records the id the server gave it. The server
  // may send the events it replays (a resume, or a watch from an index) before the call's
  // reply: notes for a watch id not known yet are kept until the replies are in (in order).
  kj::Promise<void> send_watch(capnp::Request<api::Session::WatchParams, api::Session::WatchResults> req,
                               std::uint64_t id) {
    ++watch_calls_pending;
    std::uint64_t drops_at_send = drops;
    return req.send()
        .then([this, id, drops_at_send](auto r) {
          auto it = watches.find(id);
          if (it != watches.end() && r.getResult().getErr() == api::Errc::OK) set_server_id(it, r.getResult().getId());
          // Refused (slow_down, or too_many while the watcher's queue is full): the watch must
          // not end silently. A new connection re-registers every watch from its last index.
          else if (it != watches.end() && drops == drops_at_send) fail_over(0);
          watch_call_settled();
        })
        .catch_([this](kj::Exception&& e) {
          watch_call_settled();
          kj::throwFatalException(kj::mv(e));
        });
  }
  std::size_t watch_calls_pending = 0;
  // Notes for watch ids not known yet, with those ids.
  struct EarlyNote {
    kj::Own<capnp::MallocMessageBuilder> note;
    std::vector<std::uint64_t> ids;
  };
  std::deque<EarlyNote> early_notes;
  static constexpr std::size_t kMaxEarlyNotes = 65536;
  void deliver_or_keep(api::Notification::Reader n, const std::vector<std::uint64_t>& ids) {
    auto unknown = deliver(n, ids);
    if (unknown.empty() || watch_calls_pending == 0) return;
    if (early_notes.size() >= kMaxEarlyNotes) early_notes.pop_front();  // bounded; overflow resumes anyway
    auto copy = kj::heap<capnp::MallocMessageBuilder>();
    copy->setRoot(n);
    early_notes.push_back(EarlyNote{kj::mv(copy), std::move(unknown)});
  }
  void watch_call_settled() {
    --watch_calls_pending;
    std::deque<EarlyNote> kept;
    kept.swap(early_notes);
    for (auto& k : kept) deliver_or_keep(k.note->getRoot<api::Notification>().asReader(), k.ids);
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
    req.setSink(kj::heap<Sink>(*this, drops));
    return req;
  }

  static WatchEvent to_event(api::Notification::Reader n) {
    WatchEvent e;
    if (n.isResync()) {
      e.type = WatchEvent::Type::resync;
      e.index = n.getResync();
      return e;
    }
    auto ev = n.getEvent();
    e.type = static_cast<WatchEvent::Type>(static_cast<std::uint16_t>(ev.getType()));
    e.index = ev.getIndex();
    e.path = ev.getPath();
    e.data = to_string(ev.getData());
    e.prev_data = to_string(ev.getPrevData());
    e.stat = to_stat(ev.getStat());
    e.id = ev.getId();
    e.token = ev.getToken();
    return e;
  }

  // Delivers a note to each watch it names (server ids), in order; returns the ids no watch has
  // (yet). The note is decoded once for all of them. A callback may watch, unwatch or fail
  // over: each id is looked up afresh.
  std::vector<std::uint64_t> deliver(api::Notification::Reader n, const std::vector<std::uint64_t>& ids) {
    std::vector<std::uint64_t> unknown;
    std::optional<WatchEvent> e;
    std::uint64_t event_index = n.isEvent() ? n.getEvent().getIndex() : 0;
    for (auto server_id : ids) {
      auto found = by_server_id.find(server_id);
      if (found == by_server_id.end()) {
        unknown.push_back(server_id);
        continue;
      }
      auto it = found->second;
      Watch& w = it->second;
      if (n.isOverflow()) {
        // Cut off for falling behind: watch again from where delivery stopped (nothing lost).
        w.last_index = n.getOverflow();
        set_server_id(it, 0);  // the new registration's id comes with its reply
        KJ_IF_MAYBE(c, conn) {
          KJ_IF_MAYBE(s, (*c)->session) {
            tasks->add(send_watch(make_watch_request(*s, w, w.last_index), it->first));
          }
        }
        continue;
      }
      // Never twice: a resume from last_index replays only later entries, and the server hands
      // out whole entries, so only an older index can be a repeat. One entry's events share
      // its index (a multi, a recursive delete, a session's ephemerals): all of them pass.
      if (n.isEvent() && event_index < w.last_index && w.last_index != kFromNow) continue;
      if (!e) e = to_event(n);
      w.last_index = e->index;
      if (w.persistent || e->type == WatchEvent::Type::resync) {
        run_callback(*w.callback, *e);
      } else {
        auto callback = std::move(w.callback);
        forget_watch(it);
        run_callback(*callback, *e);
      }
    }
    return unknown;
  }

  // Keep-alives answered with an error on the connection of drops count `unrenewed_drops`,
  // since this time (loop thread).
  std::optional<std::chrono::steady_clock::time_point> unrenewed_since;
  std::uint64_t unrenewed_drops = 0;

  void session_gone() {
    if (expired) return;
    expired = true;
    // Once the destructor has begun closing the session, its end is the close's doing: a
    // keep-alive or re-attach answered unknown_session after the close applied is no expiry.
    if (!closing) report(ConnectionState::session_expired);
  }
  bool closing = false;  // the destructor's close has begun (loop thread)

  // Connection state, reported to ClientOptions::on_state (on this thread).
  bool ever_connected = false;
  bool suspended = false;
  void report(ConnectionState s) {
    if (opt.on_state) opt.on_state(s);
  }

  void drop_connection() {
    ++drops;
    early_notes.clear();  // the dropped connection's: every watch resumes from what it delivered
    caps.clear();
    conn = nullptr;
    if (ever_connected && !suspended && !expired) {
      suspended = true;
      report(ConnectionState::suspended);
    }
  }

  // Circuit breaker per endpoint: after 3 failures in a row an endpoint is skipped for a while
  // (100 ms doubling to 5 s), unless every endpoint is skipped; then the one free soonest.
  struct Health {
    int failures = 0;
    std::chrono::steady_clock::time_point open_until{};
  };
  std::vector<Health> health;
  void endpoint_failed(std::size_t e) {
    auto& h = health[e];
    if (++h.failures >= 3) {
      auto pause = std::min(std::chrono::milliseconds(100) * (1 << std::min(h.failures - 3, 6)), std::chrono::milliseconds(5000));
      h.open_until = std::chrono::steady_clock::now() + pause;
    }
  }
  void endpoint_ok(std::size_t e) { health[e] = Health{}; }
  std::size_t next_endpoint(std::size_t from) {
    auto now = std::chrono::steady_clock::now();
    std::size_t n = opt.endpoints.size(), best = (from + 1) % n;
    for (std::size_t i = 1; i <= n; ++i) {
      std::size_t e = (from + i) % n;
      if (health[e].open_until <= now) return e;
      if (health[e].open_until < health[best].open_until) best = e;
    }
    return best;
  }

  // Moves to the hinted leader, or to the next endpoint the breaker allows.
  void fail_over(std::uint64_t leader_hint) {
    drop_connection();
    std::size_t current = endpoint % opt.endpoints.size();
    auto it = endpoint_of.find(leader_hint);
    if (leader_hint != 0 && it != endpoint_of.end() && it->second != current)
      endpoint = it->second;
    else
      endpoint = next_endpoint(current);
  }

  template <class T>
  kj::Promise<T> with_timeout(kj::Promise<T> p, std::chrono::milliseconds d) {
    return io->provider->getTimer().timeoutAfter(d.count() * kj::MILLISECONDS, kj::mv(p));
  }

  // --- retries, on the loop thread -------------------------------------------------------------

  using Attempt = std::function<kj::Promise<Reply>()>;
  struct Retry {
    Attempt attempt;
    bool is_write = false;
    std::chrono::steady_clock::time_point deadline;
    std::chrono::milliseconds backoff{10};
    bool maybe_applied = false;
    bool retried = false;
    Reply last = failure(Error::disconnected, "no endpoint answered");
  };

  // Runs the attempt until it gives an answer that no retry can change or the deadline passes:
  // exponential backoff with jitter; a lost connection or not_leader moves to another endpoint.
  kj::Promise<Reply> retry(kj::Own<Retry> st) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st->deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return finish(*st);
    std::uint64_t drops_at_start = drops;
    auto attempt = st->attempt();
    return with_timeout(kj::mv(attempt), left)
        .catch_([this, drops_at_start](kj::Exception&& e) {
          // The connection (or the connect) failed: count it against the endpoint and move on.
          if (drops == drops_at_start) {
            endpoint_failed(endpoint % opt.endpoints.size());
            fail_over(0);
          }
          return failure(Error::disconnected, e.getDescription().cStr());
        })
        .then([this, st = kj::mv(st), left, drops_at_start](Reply r) mutable -> kj::Promise<Reply> {
          // A retried write answered stale_request may or may not have applied the first time.
          if (r.error == Error::stale_request && st->is_write && st->retried) r.error = Error::unknown_outcome;
          if (r.error == Error::unknown_outcome || r.error == Error::timed_out ||
              (r.error == Error::disconnected && st->is_write))
            st->maybe_applied = true;
          if (expired) return failure(Error::unknown_session, "the session expired (or was closed)");
          if (!retryable(r.error)) return r;
          if ((r.error == Error::not_leader || r.error == Error::unavailable) && drops == drops_at_start)
            fail_over(r.leader_hint);
          st->last = std::move(r);
          st->retried = true;
          auto jitter = std::chrono::milliseconds(
              std::uniform_int_distribution<int>(0, static_cast<int>(st->backoff.count()))(rng));
          auto delay = std::min(st->backoff + jitter, left);
          st->backoff = std::min(st->backoff * 2, std::chrono::milliseconds(500));
          return io->provider->getTimer().afterDelay(delay.count() * kj::MILLISECONDS).then(
              [this, st = kj::mv(st)]() mutable { return retry(kj::mv(st)); });
        });
  }

  static Reply finish(Retry& st) {
    // Retrying with the same sequence could not settle a write that may have applied.
    Reply last = st.last;
    if (st.is_write && st.maybe_applied) last.error = Error::unknown_outcome;
    return last;
  }

  kj::Own<Retry> retry_state(Attempt attempt, bool is_write) {
    auto st = kj::heap<Retry>();
    st->attempt = std::move(attempt);
    st->is_write = is_write;
    st->deadline = std::chrono::steady_clock::now() + opt.request_timeout;
    return st;
  }

  // --- caller threads --------------------------------------------------------------------------

  // Runs `fn` on the loop thread; the future holds its result (a kj::Promise's once it resolves)
  // or its exception, like kj::Executor::executeSync, through the inbox (its place in line).
  template <typename F>
  auto on_loop_async(F fn) {
    using R = decltype(fn());
    using T = kj::_::UnwrapPromise<kj::PromiseForResult<F, void>>;
    auto promise = std::make_shared<std::promise<T>>();
    auto future = promise->get_future();
    inbox.post([this, promise, fn = kj::mv(fn)]() mutable {
      auto fail = [promise](kj::Exception&& e) { promise->set_exception(std::make_exception_ptr(kj::mv(e))); };
      if constexpr (kj::isSameType<R, kj::Promise<void>>()) {
        tasks->add(kj::evalNow(kj::mv(fn)).then([promise]() { promise->set_value(); }, kj::mv(fail)));
      } else if constexpr (kj::isSameType<R, kj::Promise<T>>()) {
        tasks->add(kj::evalNow(kj::mv(fn)).then([promise](T v) { promise->set_value(kj::mv(v)); }, kj::mv(fail)));
      } else if constexpr (std::is_void_v<R>) {
        KJ_IF_MAYBE(e, kj::runCatchingExceptions(kj::mv(fn))) fail(kj::mv(*e));
        else promise->set_value();
      } else {
        kj::Maybe<R> v;
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { v = fn(); })) fail(kj::mv(*e));
        else promise->set_value(kj::mv(KJ_ASSERT_NONNULL(v)));
      }
    });
    return future;
  }
  // Blocking form. On the loop thread itself (a watch callback calling the client) it runs now,
  // as executeSync does there.
  template <typename F>
  auto on_loop(F fn) {
    if (std::this_thread::get_id() == thread.get_id()) return executor->executeSync(kj::mv(fn));
    return on_loop_async(kj::mv(fn)).get();
  }

  // Blocking: the caller waits for the loop thread to finish the retries.
  Reply run(Attempt attempt, bool is_write) {
    return on_loop([this, attempt = std::move(attempt), is_write]() mutable {
      return retry(retry_state(std::move(attempt), is_write));
    });
  }

  // Asynchronous: the future is set on the loop thread.
  std::future<Reply> run_async(Attempt attempt, bool is_write) {
    return on_loop_async([this, attempt = std::move(attempt), is_write]() mutable {
      return retry(retry_state(std::move(attempt), is_write));
    });
  }

  std::uint64_t request_id() {
    static std::atomic<std::uint64_t> counter{0};
    return (secret << 20) ^ ++counter;  // unique enough to find one request in the servers' logs
  }

  // A write's attempts. Its sequence number is taken on the loop thread at the first attempt
  // (within the exactly-once window): on one connection writes reach the server in the order of
  // their numbers (E-order); retries after a failover may arrive in any order, which the state
  // machine's window rule allows (docs/data-model.md, Sessions).
  Attempt write_attempt(WireOp op, std::shared_ptr<std::uint64_t> seq) {
    std::uint64_t rid = request_id();
    auto shared = std::make_shared<const WireOp>(std::move(op));
    return [this, seq, shared, rid]() {
      // The number first (maybe waiting for the window), then the session as it is by then: a
      // write that waited through a failover must not use the lost connection's session.
      return take_seq(seq).then([this]() { return session(); }).then([seq, shared, rid](api::Session::Client s) {
        const WireOp& op = *shared;
        auto req = s.writeRequest();
        req.setSeq(*seq);
        req.setRequestId(rid);
        fill(req.initOp(), op);
        return req.send().then([](auto r) { return to_reply(r.getResult()); });
      });
    };
  }

  Attempt read_attempt(WireQuery q, ReadOptions o) {
    std::uint64_t rid = request_id();
    return [this, q = std::move(q), o, rid]() {
      return session().then([q, o, rid](api::Session::Client s) {
        auto req = s.readRequest();
        req.setRequestId(rid);
        auto b = req.initQuery();
        b.setType(q.type);
        b.setPath(q.path);
        b.setCursor(q.cursor);
        b.setLimit(q.limit);
        b.setId(q.id);
        set_read_options(req.initOptions(), o);
        return req.send().then([](auto r) { return to_reply(r.getResult()); });
      });
    };
  }

  // A write settles (leaves the exactly-once window) when its retries end, whatever the answer.
  // `attempt` makes the write's attempt for its sequence number (on the loop thread).
  Reply write_seq(const std::function<Attempt(std::shared_ptr<std::uint64_t>)>& attempt) {
    auto seq = std::make_shared<std::uint64_t>(0);
    return on_loop([&]() {
      return retry(retry_state(attempt(seq), true)).then([this, seq](Reply r) {
        settle(*seq);
        return r;
      });
    });
  }
  Reply write(WireOp op) {
    return write_seq([&](std::shared_ptr<std::uint64_t> seq) { return write_attempt(std::move(op), seq); });
  }

  // --- handles (client.h): their capabilities, cached per connection ----------------------------

  using MakeCap = std::function<capnp::Capability::Client(api::Session::Client&)>;
  using CapCall = std::function<kj::Promise<Reply>(capnp::Capability::Client&, std::uint64_t seq, std::uint64_t rid)>;

  // The capability of handle `key` on the current connection: cached, or rebuilt from the ids by
  // `make` (a pipelined call: it costs no round trip of its own). A connection replaced while the
  // session was coming fails the attempt like a lost one (a capability is only cached for the
  // connection it was made on).
  kj::Promise<capnp::Capability::Client> handle_cap(std::string key, MakeCap make) {
    std::uint64_t drops_at_start = drops;
    return session().then([this, key = std::move(key), make = std::move(make),
                           drops_at_start](api::Session::Client s) -> kj::Promise<capnp::Capability::Client> {
      if (drops != drops_at_start) return KJ_EXCEPTION(DISCONNECTED, "the connection was replaced");
      auto it = caps.find(key);
      if (it != caps.end()) return capnp::Capability::Client(it->second);
      capnp::Capability::Client c = make(s);
      caps.insert_or_assign(key, capnp::Capability::Client(c));
      return kj::mv(c);
    });
  }
  // Caches a capability a handle's write answered, if its connection is still the current one.
  void remember(const std::string& key, std::uint64_t drops_at_start, capnp::Capability::Client c) {
    if (drops == drops_at_start) caps.insert_or_assign(key, kj::mv(c));
  }

  // A call through a handle's capability: a write when `seq` is given (exactly-once like any
  // write of the session), else a read.
  Attempt cap_attempt(std::string key, MakeCap make, CapCall call, std::shared_ptr<std::uint64_t> seq) {
    std::uint64_t rid = request_id();
    return [this, key, make, call, seq, rid]() {
      kj::Promise<void> numbered = seq ? take_seq(seq) : kj::Promise<void>(kj::READY_NOW);
      return numbered.then([this, key, make]() { return handle_cap(key, make); })
          .then([call, seq, rid](capnp::Capability::Client c) { return call(c, seq ? *seq : 0, rid); });
    };
  }
  Reply handle_write(std::string key, MakeCap make, CapCall call) {
    return write_seq([&](std::shared_ptr<std::uint64_t> seq) { return cap_attempt(key, make, call, seq); });
  }
  Reply handle_read(std::string key, MakeCap make, CapCall call) {
    return run(cap_attempt(std::move(key), std::move(make), std::move(call), nullptr), false);
  }
  void forget(const std::string& key) {
    on_loop([&]() { caps.erase(key); });
  }

  // A session write that answers a handle's capability (lock, grantLease, campaign): `send` makes
  // the call on the session (with the write's sequence number) and caches what it answers.
  using SessionCall = std::function<kj::Promise<Reply>(api::Session::Client&, std::uint64_t seq, std::uint64_t rid,
                                                       std::uint64_t drops_at_start)>;
  Reply session_write(SessionCall send) {
    return write_seq([&](std::shared_ptr<std::uint64_t> seq) -> Attempt {
      std::uint64_t rid = request_id();
      return [this, send, seq, rid]() {
        return take_seq(seq).then([this, send, seq, rid]() {
          std::uint64_t drops_at_start = drops;
          return session().then([send, seq, rid, drops_at_start](api::Session::Client s) {
            return send(s, *seq, rid, drops_at_start);
          });
        });
      };
    });
  }

  static std::string lock_key(const std::string& name) { return "lock " + name; }
  static std::string lease_key(std::uint64_t id) { return "lease " + std::to_string(id); }
  static std::string election_key(const std::string& name) { return "election " + name; }
  static MakeCap lock_of(std::string name) {
    return [name](api::Session::Client& s) -> capnp::Capability::Client {
      auto req = s.lockOfRequest();
      req.setName(name);
      return req.send().getLock();
    };
  }
  static MakeCap lease_of(std::uint64_t id) {
    return [id](api::Session::Client& s) -> capnp::Capability::Client {
      auto req = s.leaseOfRequest();
      req.setId(id);
      return req.send().getLease();
    };
  }
  static MakeCap leadership_of(std::string election) {
    return [election](api::Session::Client& s) -> capnp::Capability::Client {
      auto req = s.leadershipOfRequest();
      req.setElection(election);
      return req.send().getLeadership();
    };
  }
  static void set_read_options(api::ReadOptions::Builder b, ReadOptions o) {
    b.setConsistency(static_cast<api::Consistency>(static_cast<std::uint16_t>(o.consistency)));
    b.setMinIndex(o.min_index);
  }
  Reply read(WireQuery q, ReadOptions o) { return run(read_attempt(std::move(q), o), false); }
  std::future<Reply> write_async(WireOp op) {
    auto seq = std::make_shared<std::uint64_t>(0);
    return on_loop_async([this, op = std::move(op), seq]() mutable {
      return retry(retry_state(write_attempt(std::move(op), seq), true)).then([this, seq](Reply r) {
        settle(*seq);
        return r;
      });
    });
  }
  std::future<Reply> read_async(WireQuery q, ReadOptions o) { return run_async(read_attempt(std::move(q), o), false); }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)), async_(new Async(*impl_)) {}

std::unique_ptr<Client> Client::connect(ClientOptions options, std::string* error) {
  if (options.endpoints.empty()) {
    if (error) *error = "no endpoints";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  client::TlsOptions tls{impl->opt.tls_ca_file, impl->opt.tls_cert_file, impl->opt.tls_key_file,
                         impl->opt.tls_server_name};
  if (tls.ca_file.empty()) tls = client::tls_options_from_env();
  auto connector = client::Connector::make(tls);
  if (!connector) {
    if (error) *error = connector.error();
    return nullptr;
  }
  impl->connector = *connector;
  impl->health.resize(impl->opt.endpoints.size());
  if (impl->opt.discover_endpoints && !impl->opt.endpoint_source) {
    // The cluster's answer is the endpoint source (refresh_endpoints, loop thread only).
    Impl* self = impl.get();
    impl->opt.endpoint_source = [self] { return self->discovered; };
  }
  do impl->secret = impl->rng();
  while (impl->secret == 0);
  std::promise<void> ready;
  Impl* raw = impl.get();
  impl->thread = std::thread([raw, &ready] { raw->run(ready); });
  ready.get_future().wait();
  std::unique_ptr<Client> c(new Client(std::move(impl)));
  // Open the session now, so that a client that exists has one.
  Reply r = c->impl_->run([raw]() { return raw->session().then([](auto) { return Reply{}; }); }, false);
  if (!r.ok()) {
    if (error) *error = std::string(error_name(r.error)) + ": " + r.message;
    return nullptr;
  }
  // Keep the session alive while idle: a keep-alive every third of the timeout.
  auto interval = std::max<std::int64_t>(raw->opt.session_timeout.count() / 3, 10);
  if (raw->opt.keep_alive) raw->executor->executeSync([raw, interval] {
    raw->tasks->add(kj::evalLater([raw, interval]() -> kj::Promise<void> {
      struct Loop {
        // Every `ms`; a keep-alive waits at most half of that for its answer, and after one that
        // failed the next goes soon, to another node (a short pause: no spinning while every
        // node is down). A server that stops answering without closing the connection (paused,
        // or its host gone) is left well before the session can expire. Only the connection
        // this keep-alive used is given up, never a newer one.
        static kj::Promise<void> go(Impl* impl, std::int64_t ms, std::int64_t delay) {
          return impl->io->provider->getTimer().afterDelay(delay * kj::MILLISECONDS).then([impl, ms] {
            std::uint64_t drops_at_start = impl->drops;
            auto alive = impl->session().then([](api::Session::Client s) {
              return s.keepAliveRequest().send().then([](auto r) {
                return std::make_pair(r.getResult().getErr(), r.getResult().getLeaderHint());
              });
            });
            return impl->with_timeout(kj::mv(alive), std::chrono::milliseconds(std::max<std::int64_t>(ms / 2, 5)))
                .then(
                    [impl, ms, drops_at_start](std::pair<api::Errc, std::uint64_t> answer) {
                      // The renewal went through the log: unknown_session is the state machine's
                      // word that the session is gone.
                      if (answer.first == api::Errc::OK || answer.first == api::Errc::UNKNOWN_SESSION) {
                        if (answer.first == api::Errc::UNKNOWN_SESSION) impl->session_gone();
                        impl->unrenewed_since.reset();
                        return true;
                      }
                      // Any other error renewed nothing: this node reaches no leader now (an
                      // election, or a minority side of a partition). Tried again soon on the
                      // same connection; moved to another node once that has lasted a sixth of
                      // the session timeout (half the keep-alive interval), leaving most of it to
                      // renew there. (Failing over at the first error would cut the writes in
                      // flight on this connection at every election.)
                      auto now = std::chrono::steady_clock::now();
                      if (!impl->unrenewed_since || impl->unrenewed_drops != drops_at_start) {
                        impl->unrenewed_since = now;
                        impl->unrenewed_drops = drops_at_start;
                      } else if (now - *impl->unrenewed_since >= std::chrono::milliseconds(ms / 2) &&
                                 impl->drops == drops_at_start) {
                        impl->unrenewed_since.reset();
                        impl->fail_over(answer.second);
                      }
                      return false;
                    },
                    [impl, drops_at_start](kj::Exception&&) {
                      if (impl->drops == drops_at_start) impl->fail_over(0);
                      return false;
                    })
                .then([impl, ms](bool ok) -> kj::Promise<void> {
                  if (impl->expired) return kj::READY_NOW;  // nothing left to keep alive
                  return go(impl, ms, ok ? ms : std::min<std::int64_t>(ms / 6, 100));
                });
          });
        }
      };
      return Loop::go(raw, interval, interval);
    }));
  });
  // Endpoint discovery: ask the connected node for the members every endpoint_refresh, so the
  // rotation has the members added since before the node in use goes away. A failed ask
  // changes nothing (the failover path is the requests', not this loop's).
  if (raw->opt.discover_endpoints) raw->executor->executeSync([raw] {
    raw->tasks->add(kj::evalLater([raw]() -> kj::Promise<void> {
      struct Loop {
        static kj::Promise<void> go(Impl* impl) {
          auto every = std::max<std::int64_t>(impl->opt.endpoint_refresh.count(), 10);
          return impl->io->provider->getTimer().afterDelay(every * kj::MILLISECONDS).then([impl, every] {
            kj::Promise<void> ask = kj::READY_NOW;
            KJ_IF_MAYBE(c, impl->conn) {
              auto info = c->get()->tern.infoRequest().send().then([impl](auto r) { impl->note_members(r.getInfo()); });
              ask = impl->with_timeout(kj::mv(info), std::chrono::milliseconds(every))
                        .catch_([](kj::Exception&&) {});
            }
            return ask.then([impl] { return go(impl); });
          });
        }
      };
      return Loop::go(raw);
    }));
  });
  return c;
}

Client::~Client() {
  if (!impl_) return;
  Impl* raw = impl_.get();
  auto saved = impl_->opt.request_timeout;
  impl_->opt.request_timeout = std::min(saved, std::chrono::milliseconds(2000));
  auto seq = std::make_shared<std::uint64_t>(0);
  impl_->run(
      [raw, seq]() {
        raw->closing = true;
        return raw->session().then([raw, seq](api::Session::Client s) {
          if (*seq == 0) *seq = raw->next_seq++;
          auto req = s.closeRequest();
          req.setSeq(*seq);
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

namespace {
// The operations, built once for the blocking and the asynchronous forms.
WireOp create_op(const std::string& path, const std::string& data, const CreateOptions& options) {
  auto o = op(api::OpType::CREATE, path, data);
  o.flags = create_flags(options);
  o.ttl_ms = options.ttl_ms;
  o.id = options.lease;
  return o;
}
WireOp set_op(const std::string& path, const std::string& data, std::int64_t version) {
  auto o = op(api::OpType::SET, path, data);
  o.version = version;
  return o;
}
WireOp remove_op(const std::string& path, std::int64_t version, bool recursive) {
  auto o = op(api::OpType::REMOVE, path);
  o.version = version;
  o.recursive = recursive;
  return o;
}
WireQuery children_query(const std::string& path, const std::string& cursor, std::uint64_t limit) {
  auto q = query(api::QueryType::CHILDREN, path);
  q.cursor = cursor;
  q.limit = limit;
  return q;
}
WireOp multi_op(const std::vector<TxnOp>& ops) {
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
  return m;
}
WireOp lease_op(api::OpType type, std::int64_t ttl_ms, std::uint64_t lease) {
  auto o = op(type);
  o.ttl_ms = ttl_ms;
  o.id = lease;
  return o;
}
WireOp lock_op(const std::string& name, bool shared, bool try_only, std::chrono::milliseconds lock_delay) {
  auto o = op(api::OpType::LOCK, name);
  o.flags = (shared ? 1u : 0u) | (try_only ? 2u : 0u);
  o.ttl_ms = lock_delay.count();
  return o;
}
WireQuery lease_query(std::uint64_t lease) {
  auto q = query(api::QueryType::LEASE_TTL, "");
  q.id = lease;
  return q;
}
WireQuery token_query(const std::string& name, std::uint64_t token) {
  auto q = query(api::QueryType::CHECK_TOKEN, name);
  q.id = token;
  return q;
}
}  // namespace

// Each operation twice: blocking, and as a future (Client::Async) from the same builder.
#define TERN_WRITE(SIG, BUILD)                                 \
  Reply Client::SIG { return impl_->write(BUILD); }            \
  std::future<Reply> Client::Async::SIG { return impl_.write_async(BUILD); }
#define TERN_READ(SIG, BUILD, OPTIONS)                                 \
  Reply Client::SIG { return impl_->read(BUILD, OPTIONS); }            \
  std::future<Reply> Client::Async::SIG { return impl_.read_async(BUILD, OPTIONS); }

TERN_WRITE(create(const std::string& path, const std::string& data, CreateOptions options), create_op(path, data, options))
TERN_READ(get(const std::string& path, ReadOptions options), query(api::QueryType::GET, path), options)
TERN_READ(exists(const std::string& path, ReadOptions options), query(api::QueryType::EXISTS, path), options)
TERN_WRITE(set(const std::string& path, const std::string& data, std::int64_t version), set_op(path, data, version))
TERN_WRITE(remove(const std::string& path, std::int64_t version, bool recursive), remove_op(path, version, recursive))
TERN_READ(children(const std::string& path, const std::string& cursor, std::uint64_t limit, ReadOptions options),
          children_query(path, cursor, limit), options)
TERN_WRITE(multi(const std::vector<TxnOp>& ops), multi_op(ops))
TERN_WRITE(grant_lease(std::chrono::milliseconds ttl), lease_op(api::OpType::GRANT_LEASE, ttl.count(), 0))
TERN_WRITE(keep_alive_lease(std::uint64_t lease), lease_op(api::OpType::KEEP_ALIVE_LEASE, 0, lease))
TERN_WRITE(revoke_lease(std::uint64_t lease), lease_op(api::OpType::REVOKE_LEASE, 0, lease))
TERN_READ(lease_ttl(std::uint64_t lease, ReadOptions options), lease_query(lease), options)
TERN_WRITE(lock(const std::string& name, bool shared, bool try_only, std::chrono::milliseconds lock_delay),
           lock_op(name, shared, try_only, lock_delay))
TERN_WRITE(unlock(const std::string& name), op(api::OpType::UNLOCK, name))
TERN_READ(check_token(const std::string& name, std::uint64_t token), token_query(name, token), ReadOptions{})
TERN_WRITE(campaign(const std::string& election, const std::string& value), op(api::OpType::CAMPAIGN, election, value))
TERN_WRITE(resign(const std::string& election), op(api::OpType::RESIGN, election))
TERN_WRITE(proclaim(const std::string& election, const std::string& value), op(api::OpType::PROCLAIM, election, value))
TERN_READ(leader(const std::string& election, ReadOptions options), query(api::QueryType::LEADER, election), options)

#undef TERN_WRITE
#undef TERN_READ

Reply Client::watch(const std::string& path, WatchKind kind, WatchCallback callback, bool persistent, bool recursive,
                    std::uint64_t after_index) {
  Impl* raw = impl_.get();
  Impl::Watch w{kind, path, persistent, recursive, std::make_shared<const WatchCallback>(std::move(callback)), 0};
  std::uint64_t from = after_index == 0 ? kFromNow : after_index;
  return impl_->run(
      [raw, w, from]() {
        return raw->session().then([raw, w, from](api::Session::Client s) mutable {
          // Replayed events may come before this reply: kept until it is in (send_watch).
          ++raw->watch_calls_pending;
          return raw->make_watch_request(s, w, from)
              .send()
              .then([raw, w, from](auto r) mutable {
                Reply out = to_reply(r.getResult());
                if (out.ok()) {
                  // From now: delivered up to the state the server registered it at. From an
                  // index: the events after it are on their way (or a resync if that history
                  // is gone).
                  w.last_index = from == kFromNow ? out.index : from;
                  std::uint64_t local = raw->next_watch++;
                  auto [it, added] = raw->watches.emplace(local, std::move(w));
                  raw->set_server_id(it, out.id);
                  out.id = local;
                }
                raw->watch_call_settled();
                return out;
              })
              .catch_([raw](kj::Exception&& e) -> Reply {
                raw->watch_call_settled();
                kj::throwFatalException(kj::mv(e));
              });
        });
      },
      false);
}

Reply Client::unwatch(std::uint64_t watch_id) {
  Impl* raw = impl_.get();
  // On the loop thread: forgetting the watch there is what stops its callback; cancelling it on
  // the server is only tidying up (a lost connection drops the server's watches anyway).
  return raw->on_loop([raw, watch_id]() -> kj::Promise<Reply> {
    auto it = raw->watches.find(watch_id);
    if (it == raw->watches.end()) return failure(Error::no_node, "no such watch");
    auto server_id = it->second.server_id;
    raw->forget_watch(it);
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

// --- Handles ----------------------------------------------------------------------------------

namespace {
template <class T>
kj::Promise<Reply> reply_of(T&& promise) {
  return promise.then([](auto r) { return to_reply(r.getResult()); });
}
}  // namespace

Lock Client::lock_handle(const std::string& name, bool shared, bool try_only, std::chrono::milliseconds lock_delay) {
  Impl* raw = impl_.get();
  WireOp o = lock_op(name, shared, try_only, lock_delay);
  Reply r = impl_->session_write([raw, o](api::Session::Client& s, std::uint64_t seq, std::uint64_t rid, std::uint64_t at) {
    auto req = s.lockRequest();
    req.setSeq(seq);
    req.setName(o.path);
    req.setFlags(o.flags);
    req.setLockDelayMs(o.ttl_ms);
    req.setRequestId(rid);
    return req.send().then([raw, at, name = o.path](auto answer) {
      Reply out = to_reply(answer.getResult());
      if (out.ok()) raw->remember(Impl::lock_key(name), at, answer.getLock());
      return out;
    });
  });
  return r.ok() ? Lock(this, name, r.id) : Lock(r.error);
}

Lease Client::lease_handle(std::chrono::milliseconds ttl) {
  Impl* raw = impl_.get();
  Reply r = impl_->session_write([raw, ttl](api::Session::Client& s, std::uint64_t seq, std::uint64_t rid, std::uint64_t at) {
    auto req = s.grantLeaseRequest();
    req.setSeq(seq);
    req.setTtlMs(ttl.count());
    req.setRequestId(rid);
    return req.send().then([raw, at](auto answer) {
      Reply out = to_reply(answer.getResult());
      if (out.ok()) raw->remember(Impl::lease_key(out.id), at, answer.getLease());
      return out;
    });
  });
  return r.ok() ? Lease(this, r.id) : Lease(r.error);
}

Leadership Client::leadership_handle(const std::string& election, const std::string& value) {
  Impl* raw = impl_.get();
  Reply r = impl_->session_write([raw, election, value](api::Session::Client& s, std::uint64_t seq, std::uint64_t rid,
                                                        std::uint64_t at) {
    auto req = s.campaignRequest();
    req.setSeq(seq);
    req.setElection(election);
    req.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(value.data()), value.size()));
    req.setRequestId(rid);
    return req.send().then([raw, at, election](auto answer) {
      Reply out = to_reply(answer.getResult());
      if (out.ok()) raw->remember(Impl::election_key(election), at, answer.getLeadership());
      return out;
    });
  });
  return r.ok() ? Leadership(this, election, r.id) : Leadership(r.error);
}

Watch Client::watch_handle(const std::string& path, WatchKind kind, WatchCallback callback, bool persistent,
                           bool recursive, std::uint64_t after_index) {
  Reply r = watch(path, kind, std::move(callback), persistent, recursive, after_index);
  return r.ok() ? Watch(this, r.id) : Watch(r.error);
}

Lock Client::adopt_lock(const std::string& name, std::uint64_t token) { return Lock(this, name, token); }
Lease Client::adopt_lease(std::uint64_t lease) { return Lease(this, lease); }
Leadership Client::adopt_leadership(const std::string& election, std::uint64_t token) {
  return Leadership(this, election, token);
}

Lock::Lock(Lock&& o) noexcept
    : client_(std::exchange(o.client_, nullptr)), name_(std::move(o.name_)), token_(o.token_), error_(o.error_) {}
Lock& Lock::operator=(Lock&& o) noexcept {
  if (this != &o) {
    release();
    client_ = std::exchange(o.client_, nullptr);
    name_ = std::move(o.name_);
    token_ = o.token_;
    error_ = o.error_;
  }
  return *this;
}
Lock::~Lock() { release(); }

bool Lock::still_held() const {
  if (client_ == nullptr) return false;
  std::uint64_t token = token_;
  return client_->impl_
      ->handle_read(Client::Impl::lock_key(name_), Client::Impl::lock_of(name_),
                    [token](capnp::Capability::Client& c, std::uint64_t, std::uint64_t rid) {
                      auto req = c.castAs<api::Lock>().checkTokenRequest();
                      req.setToken(token);
                      req.setRequestId(rid);
                      return reply_of(req.send());
                    })
      .ok();
}

Error Lock::release() {
  if (client_ == nullptr) return Error::ok;
  Client* c = std::exchange(client_, nullptr);
  auto key = Client::Impl::lock_key(name_);
  Reply r = c->impl_->handle_write(key, Client::Impl::lock_of(name_),
                                   [](capnp::Capability::Client& cap, std::uint64_t seq, std::uint64_t rid) {
                                     auto req = cap.castAs<api::Lock>().unlockRequest();
                                     req.setSeq(seq);
                                     req.setRequestId(rid);
                                     return reply_of(req.send());
                                   });
  c->impl_->forget(key);
  return r.error;
}

Lease::Lease(Lease&& o) noexcept : client_(std::exchange(o.client_, nullptr)), id_(o.id_), error_(o.error_) {}
Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    revoke();
    client_ = std::exchange(o.client_, nullptr);
    id_ = o.id_;
    error_ = o.error_;
  }
  return *this;
}
Lease::~Lease() { revoke(); }

Reply Lease::keep_alive() {
  if (client_ == nullptr) return failure(Error::unknown_lease, "an empty lease handle");
  return client_->impl_->handle_write(Client::Impl::lease_key(id_), Client::Impl::lease_of(id_),
                                      [](capnp::Capability::Client& c, std::uint64_t seq, std::uint64_t rid) {
                                        auto req = c.castAs<api::Lease>().keepAliveRequest();
                                        req.setSeq(seq);
                                        req.setRequestId(rid);
                                        return reply_of(req.send());
                                      });
}

Reply Lease::ttl(ReadOptions options) {
  if (client_ == nullptr) return failure(Error::unknown_lease, "an empty lease handle");
  return client_->impl_->handle_read(Client::Impl::lease_key(id_), Client::Impl::lease_of(id_),
                                     [options](capnp::Capability::Client& c, std::uint64_t, std::uint64_t rid) {
                                       auto req = c.castAs<api::Lease>().ttlRequest();
                                       Client::Impl::set_read_options(req.initOptions(), options);
                                       req.setRequestId(rid);
                                       return reply_of(req.send());
                                     });
}

Error Lease::revoke() {
  if (client_ == nullptr) return Error::ok;
  Client* c = std::exchange(client_, nullptr);
  auto key = Client::Impl::lease_key(id_);
  Reply r = c->impl_->handle_write(key, Client::Impl::lease_of(id_),
                                   [](capnp::Capability::Client& cap, std::uint64_t seq, std::uint64_t rid) {
                                     auto req = cap.castAs<api::Lease>().revokeRequest();
                                     req.setSeq(seq);
                                     req.setRequestId(rid);
                                     return reply_of(req.send());
                                   });
  c->impl_->forget(key);
  return r.error;
}

Leadership::Leadership(Leadership&& o) noexcept
    : client_(std::exchange(o.client_, nullptr)), election_(std::move(o.election_)), token_(o.token_), error_(o.error_) {}
Leadership& Leadership::operator=(Leadership&& o) noexcept {
  if (this != &o) {
    resign();
    client_ = std::exchange(o.client_, nullptr);
    election_ = std::move(o.election_);
    token_ = o.token_;
    error_ = o.error_;
  }
  return *this;
}
Leadership::~Leadership() { resign(); }

Reply Leadership::proclaim(const std::string& value) {
  if (client_ == nullptr) return failure(Error::not_held, "an empty leadership handle");
  return client_->impl_->handle_write(Client::Impl::election_key(election_), Client::Impl::leadership_of(election_),
                                      [value](capnp::Capability::Client& c, std::uint64_t seq, std::uint64_t rid) {
                                        auto req = c.castAs<api::Leadership>().proclaimRequest();
                                        req.setSeq(seq);
                                        req.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(value.data()),
                                                                  value.size()));
                                        req.setRequestId(rid);
                                        return reply_of(req.send());
                                      });
}

Reply Leadership::leader(ReadOptions options) {
  if (client_ == nullptr) return failure(Error::not_held, "an empty leadership handle");
  return client_->impl_->handle_read(Client::Impl::election_key(election_), Client::Impl::leadership_of(election_),
                                     [options](capnp::Capability::Client& c, std::uint64_t, std::uint64_t rid) {
                                       auto req = c.castAs<api::Leadership>().leaderRequest();
                                       Client::Impl::set_read_options(req.initOptions(), options);
                                       req.setRequestId(rid);
                                       return reply_of(req.send());
                                     });
}

Error Leadership::resign() {
  if (client_ == nullptr) return Error::ok;
  Client* c = std::exchange(client_, nullptr);
  auto key = Client::Impl::election_key(election_);
  Reply r = c->impl_->handle_write(key, Client::Impl::leadership_of(election_),
                                   [](capnp::Capability::Client& cap, std::uint64_t seq, std::uint64_t rid) {
                                     auto req = cap.castAs<api::Leadership>().resignRequest();
                                     req.setSeq(seq);
                                     req.setRequestId(rid);
                                     return reply_of(req.send());
                                   });
  c->impl_->forget(key);
  return r.error;
}

Watch::Watch(Watch&& o) noexcept : client_(std::exchange(o.client_, nullptr)), id_(o.id_), error_(o.error_) {}
Watch& Watch::operator=(Watch&& o) noexcept {
  if (this != &o) {
    cancel();
    client_ = std::exchange(o.client_, nullptr);
    id_ = o.id_;
    error_ = o.error_;
  }
  return *this;
}
Watch::~Watch() { cancel(); }

Error Watch::cancel() {
  if (client_ == nullptr) return Error::ok;
  Client* c = std::exchange(client_, nullptr);
  return c->unwatch(id_).error;
}

}  // namespace tern
