#pragma once
// tern's C++ client library (docs/client.md). Plain C++20: no Cap'n Proto or KJ types here.
//
// A Client holds one session with the cluster and runs its own event-loop thread. Every call is
// blocking and thread-safe: it returns a value with a typed error, after failing over between the
// endpoints as needed. Writes carry (session, sequence), so a write retried after a failover is
// applied exactly once; a write whose fate retrying cannot settle is reported as unknown_outcome.
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace tern {

enum class Error : std::uint8_t {
  ok = 0,
  // The state machine's answers (docs/data-model.md, Errors):
  bad_path, no_node, node_exists, no_parent, not_empty, bad_version, too_large, ephemeral_parent,
  unknown_session, unknown_lease, check_failed, bad_request, stale_request, busy, too_many, not_held,
  // The service's:
  not_leader, unknown_outcome, unavailable, timed_out, slow_down,
  // The library's:
  disconnected,  // no endpoint answered before the request's deadline
};
const char* error_name(Error e);

struct Stat {
  std::uint64_t created_index = 0, modified_index = 0, child_index = 0;
  std::int64_t version = 0, child_version = 0;
  std::uint64_t ephemeral_owner = 0, lease = 0, data_length = 0, child_count = 0;
  std::int64_t ctime_ms = 0, mtime_ms = 0;
};

// One answer. `index` is the log index it reflects (a write's entry, or the state a read saw).
struct Reply {
  Error error = Error::ok;
  std::string message;
  std::uint64_t index = 0;
  std::string path;                // create: the actual path; children: the next page's cursor
  std::string data;
  Stat stat;
  std::uint64_t id = 0;            // lease id; lock/campaign: the fencing token (0: queued)
  std::int64_t ttl_ms = 0;
  std::vector<std::string> names;  // children
  std::vector<Reply> results;      // multi
  std::uint64_t leader_hint = 0;   // not_leader: the node the server believes leads (0: unknown)
  bool ok() const { return error == Error::ok; }
};

enum class Consistency : std::uint8_t { linearizable, serializable, at_least };
struct ReadOptions {
  Consistency consistency = Consistency::linearizable;
  std::uint64_t min_index = 0;  // at_least
};

struct CreateOptions {
  bool ephemeral = false, sequential = false, container = false;
  std::int64_t ttl_ms = 0;  // > 0: a TTL node
  std::uint64_t lease = 0;
};

// One operation of a transaction (multi).
struct TxnOp {
  enum class Kind : std::uint8_t { check_version, check_exists, check_not_exists, check_value, create, set, remove };
  Kind kind = Kind::check_exists;
  std::string path;
  std::string data;
  std::int64_t version = -1;
  CreateOptions create;
};

enum class WatchKind : std::uint8_t { data, children, exists, events };
struct WatchEvent {
  enum class Type : std::uint8_t {
    created, deleted, data_changed, children_changed, session_expired, lease_expired, lock_granted,
    leader_changed,
    resync,   // events were lost (history gone): read the state again; watching continues
  };
  Type type = Type::created;
  std::uint64_t index = 0;
  std::string path, data, prev_data;
  Stat stat;
  std::uint64_t id = 0, token = 0;
};
using WatchCallback = std::function<void(const WatchEvent&)>;  // runs on the library's thread

// What the library's session is going through (Curator's connection states): an application
// that leads or holds locks stops acting on them while `suspended` and gives them up at
// `session_expired`.
enum class ConnectionState : std::uint8_t {
  connected,        // the session is open (once, at connect)
  suspended,        // the connection was lost; the session may still be alive
  reconnected,      // the same session re-attached on some node: watches resume
  session_expired,  // the session is gone: ephemerals, locks and leadership with it
};

struct ClientOptions {
  std::vector<std::string> endpoints;  // "host:port" of the nodes' client ports
  std::chrono::milliseconds session_timeout{10000};
  std::chrono::milliseconds request_timeout{10000};  // per call, retries included
  // Keep the session alive while idle (a keep-alive every third of the timeout). Off: only the
  // application's own requests renew it.
  bool keep_alive = true;
  // TLS to the client ports (ternd --client-tls-*; docs/operations.md): the CA bundle that signed
  // the servers' certificates (empty: plaintext), this client's certificate and key when the
  // servers require one, and the name the servers' certificates must carry (empty: the host).
  // When tls_ca_file is empty, TERN_TLS_CA, TERN_TLS_CERT, TERN_TLS_KEY and TERN_TLS_SERVER_NAME
  // from the environment are used (scripts/cluster.sh writes them to <data-dir>/tls/client.env).
  std::string tls_ca_file, tls_cert_file, tls_key_file, tls_server_name;
  // Connection-state changes, called on the library's thread (keep it short).
  std::function<void(ConnectionState)> on_state;
  // Opt-in endpoint refresh (like ZooKeeper's host provider or etcd's endpoint sync): when set,
  // the library calls it before connecting (at most every `endpoint_refresh`, so also on each
  // failover) and makes its answer the rotation — endpoints added by a membership change come
  // in, removed ones go — keeping what it knows of the endpoints it keeps (their circuit
  // breakers, which node each is). An empty answer (or an exception) changes nothing: the last
  // endpoint is never dropped. Called on the library's thread: keep it short, never call the
  // Client from it. discover_endpoints does this with the cluster's own answer.
  std::function<std::vector<std::string>()> endpoint_source;
  std::chrono::milliseconds endpoint_refresh{500};
  // Endpoint discovery from the cluster (like etcd's endpoint sync): the members' client
  // addresses, which each node announces through the log (docs/client.md, Endpoints), become
  // the endpoint source. The library asks the node it is connected to every `endpoint_refresh`.
  // While some member's address is not known yet, the endpoints in use are kept besides the
  // known ones. Ignored when endpoint_source is set.
  bool discover_endpoints = false;
};

class Client;

// --- Handles (docs/client.md, Handles) ----------------------------------------------------------
// RAII handles of the Client's session: each releases what it holds when destroyed (a Lock
// unlocks, or withdraws its queued request; a Lease is revoked; a Leadership resigns, or
// withdraws its candidacy; a Watch is cancelled). Movable, not copyable; a moved-from or empty
// handle does nothing. An empty handle's error() says why it is empty. A handle holds the
// server-side ids (lock name, lease id, election name), which stay the truth across failovers:
// its calls go through the server's capability for it, rebuilt from those ids on whichever node
// the Client is connected to. Destroy handles before their Client, and never inside a watch
// callback (the release is a blocking call).

// A lock of the session (held, or queued when token() is 0). Also recipes::LockGuard.
class Lock {
 public:
  Lock() = default;
  explicit Lock(Error e) : error_(e) {}
  Lock(Lock&& o) noexcept;
  Lock& operator=(Lock&& o) noexcept;
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  bool owns() const { return client_ != nullptr; }
  explicit operator bool() const { return owns(); }
  Error error() const { return error_; }
  const std::string& name() const { return name_; }
  // The fencing token (0: queued): strictly larger than every earlier holder's token of this lock.
  std::uint64_t token() const { return token_; }
  // Linearizable check that this handle's token still holds the lock (the session lives).
  bool still_held() const;
  // Releases now (idempotent): the answer of the unlock (ok for an empty handle).
  Error release();

 private:
  friend class Client;
  Lock(Client* client, std::string name, std::uint64_t token) : client_(client), name_(std::move(name)), token_(token) {}
  Client* client_ = nullptr;
  std::string name_;
  std::uint64_t token_ = 0;
  Error error_ = Error::ok;
};

// A lease: revoked on destruction (the nodes attached to it are deleted). Leases belong to no
// session; keep it alive with keep_alive() before its TTL runs out.
class Lease {
 public:
  Lease() = default;
  explicit Lease(Error e) : error_(e) {}
  Lease(Lease&& o) noexcept;
  Lease& operator=(Lease&& o) noexcept;
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  bool owns() const { return client_ != nullptr; }
  explicit operator bool() const { return owns(); }
  Error error() const { return error_; }
  std::uint64_t id() const { return id_; }  // pass it as CreateOptions::lease
  Reply keep_alive();
  Reply ttl(ReadOptions options = {});  // reply.ttl_ms: the time left
  Error revoke();                       // now (idempotent)

 private:
  friend class Client;
  Lease(Client* client, std::uint64_t id) : client_(client), id_(id) {}
  Client* client_ = nullptr;
  std::uint64_t id_ = 0;
  Error error_ = Error::ok;
};

// A candidacy of the session in an election: leading when token() is not 0 (queued otherwise;
// a leader_changed event on the election's `events` watch tells when that changes). Resigns on
// destruction.
class Leadership {
 public:
  Leadership() = default;
  explicit Leadership(Error e) : error_(e) {}
  Leadership(Leadership&& o) noexcept;
  Leadership& operator=(Leadership&& o) noexcept;
  ~Leadership();
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;

  bool owns() const { return client_ != nullptr; }
  explicit operator bool() const { return owns(); }
  Error error() const { return error_; }
  const std::string& election() const { return election_; }
  std::uint64_t token() const { return token_; }  // the leadership's fencing token (0: queued)
  Reply proclaim(const std::string& value);      // a new value while leading (not_held otherwise)
  Reply leader(ReadOptions options = {});        // the election's leader: reply.data, reply.id
  Error resign();                                // now (idempotent)

 private:
  friend class Client;
  Leadership(Client* client, std::string election, std::uint64_t token)
      : client_(client), election_(std::move(election)), token_(token) {}
  Client* client_ = nullptr;
  std::string election_;
  std::uint64_t token_ = 0;
  Error error_ = Error::ok;
};

// A watch: cancelled on destruction (once that returns, its callback does not run again).
class Watch {
 public:
  Watch() = default;
  explicit Watch(Error e) : error_(e) {}
  Watch(Watch&& o) noexcept;
  Watch& operator=(Watch&& o) noexcept;
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  bool owns() const { return client_ != nullptr; }
  explicit operator bool() const { return owns(); }
  Error error() const { return error_; }
  std::uint64_t id() const { return id_; }  // as Client::watch answers it
  Error cancel();                           // now (idempotent)

 private:
  friend class Client;
  Watch(Client* client, std::uint64_t id) : client_(client), id_(id) {}
  Client* client_ = nullptr;
  std::uint64_t id_ = 0;
  Error error_ = Error::ok;
};

class Client {
 public:
  // Connects and opens a session; nullptr and `error` if no endpoint accepted one in time.
  static std::unique_ptr<Client> connect(ClientOptions options, std::string* error = nullptr);
  ~Client();  // closes the session (its ephemerals go, its locks are released)
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  std::uint64_t session_id() const;
  std::chrono::milliseconds session_timeout() const;  // as asked in ClientOptions

  Reply create(const std::string& path, const std::string& data, CreateOptions options = {});
  Reply get(const std::string& path, ReadOptions options = {});
  Reply exists(const std::string& path, ReadOptions options = {});
  Reply set(const std::string& path, const std::string& data, std::int64_t version = -1);
  Reply remove(const std::string& path, std::int64_t version = -1, bool recursive = false);
  Reply children(const std::string& path, const std::string& cursor = {}, std::uint64_t limit = 0, ReadOptions options = {});
  Reply multi(const std::vector<TxnOp>& ops);

  Reply grant_lease(std::chrono::milliseconds ttl);
  Reply keep_alive_lease(std::uint64_t lease);
  Reply revoke_lease(std::uint64_t lease);
  // The lease's remaining time: reply.ttl_ms (unknown_lease once it expired or was revoked).
  Reply lease_ttl(std::uint64_t lease, ReadOptions options = {});

  // Locks: reply.id is the fencing token once held (0: queued; a lock_granted event follows).
  Reply lock(const std::string& name, bool shared = false, bool try_only = false,
             std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0));
  Reply unlock(const std::string& name);
  Reply check_token(const std::string& name, std::uint64_t token);
  // Elections: campaign queues this session as a candidate (reply.id: token once leading).
  Reply campaign(const std::string& election, const std::string& value);
  Reply resign(const std::string& election);
  Reply proclaim(const std::string& election, const std::string& value);
  Reply leader(const std::string& election, ReadOptions options = {});

  // Registers a watch; reply.id is its id. Events go to `callback` on the library's thread, in
  // order; after a failover the watch resumes from the last index it delivered. after_index 0:
  // changes from now on; N: every matching change after log index N first (a `resync` event
  // instead when the server no longer has that history), then on.
  Reply watch(const std::string& path, WatchKind kind, WatchCallback callback, bool persistent = true,
              bool recursive = false, std::uint64_t after_index = 0);
  // Cancels a watch (the id `watch` returned): once this returns, its callback is not running and
  // will not run again. Not from inside a watch callback (that runs on the library's thread).
  Reply unwatch(std::uint64_t watch_id);

  // Handles (above): the same operations as lock, grant_lease, campaign and watch, answering an
  // RAII handle; an empty one (error() set) when the operation failed. A lock or campaign that
  // queues answers a handle with token 0 (its destruction withdraws the request).
  Lock lock_handle(const std::string& name, bool shared = false, bool try_only = false,
                   std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0));
  Lease lease_handle(std::chrono::milliseconds ttl);
  Leadership leadership_handle(const std::string& election, const std::string& value);
  Watch watch_handle(const std::string& path, WatchKind kind, WatchCallback callback, bool persistent = true,
                     bool recursive = false, std::uint64_t after_index = 0);
  // A handle rebuilt from ids this session already holds (from the id-based calls, a grant
  // event, or another handle's ids), e.g. a lock whose lock_granted event came after a queued
  // lock(). Nothing is checked here: the handle's calls answer not_held / unknown_lease.
  Lock adopt_lock(const std::string& name, std::uint64_t token);
  Lease adopt_lease(std::uint64_t lease);
  Leadership adopt_leadership(const std::string& election, std::uint64_t token);

  struct Impl;

  // Every operation above (watch aside) in asynchronous form: the future is ready when the
  // blocking call would return, with the same answer. Any number may be outstanding; they
  // share the session and its ordering. Destroying the Client breaks the futures still pending.
  class Async {
   public:
    std::future<Reply> create(const std::string& path, const std::string& data, CreateOptions options = {});
    std::future<Reply> get(const std::string& path, ReadOptions options = {});
    std::future<Reply> exists(const std::string& path, ReadOptions options = {});
    std::future<Reply> set(const std::string& path, const std::string& data, std::int64_t version = -1);
    std::future<Reply> remove(const std::string& path, std::int64_t version = -1, bool recursive = false);
    std::future<Reply> children(const std::string& path, const std::string& cursor = {}, std::uint64_t limit = 0,
                                ReadOptions options = {});
    std::future<Reply> multi(const std::vector<TxnOp>& ops);
    std::future<Reply> grant_lease(std::chrono::milliseconds ttl);
    std::future<Reply> keep_alive_lease(std::uint64_t lease);
    std::future<Reply> revoke_lease(std::uint64_t lease);
    std::future<Reply> lease_ttl(std::uint64_t lease, ReadOptions options = {});
    std::future<Reply> lock(const std::string& name, bool shared = false, bool try_only = false,
                            std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0));
    std::future<Reply> unlock(const std::string& name);
    std::future<Reply> check_token(const std::string& name, std::uint64_t token);
    std::future<Reply> campaign(const std::string& election, const std::string& value);
    std::future<Reply> resign(const std::string& election);
    std::future<Reply> proclaim(const std::string& election, const std::string& value);
    std::future<Reply> leader(const std::string& election, ReadOptions options = {});

   private:
    friend class Client;
    explicit Async(Impl& impl) : impl_(impl) {}
    Impl& impl_;
  };
  Async& async() { return *async_; }

 private:
  friend class Lock;
  friend class Lease;
  friend class Leadership;
  friend class Watch;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Async> async_;
};

}  // namespace tern
