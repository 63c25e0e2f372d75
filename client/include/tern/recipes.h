#pragma once
// Recipes on tern's primitives (docs/client.md, Recipes): leader election, mutex and read-write
// lock with fencing tokens, counting semaphore, barrier and double barrier, a tree cache and a
// configuration watcher. Built only on the public Client API; plain C++20.
//
// Common rules:
// - A recipe acts for its Client's session: exclusion is between sessions, not between threads
//   sharing one Client (two threads of one Client asking for one lock both "hold" it, with the
//   same token). Give each contender its own Client, or add local exclusion.
// - Blocking calls take a timeout; `forever` waits as long as the session lives. They return
//   typed errors (tern::Error); `timed_out` when the timeout passed first.
// - Callbacks run on a thread the recipe owns (never the library's), one at a time, so they may
//   call the Client. A recipe must be destroyed before its Client.
// - Whatever a lock or leadership means locally, it ends with the session: pass the fencing
//   token to the resource you protect and let it reject older tokens (check_token).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tern/client.h"

namespace tern::recipes {

inline constexpr std::chrono::milliseconds forever = std::chrono::milliseconds::max();

struct Access;  // the recipes' implementation (recipes.cc) builds permits through it

// --- Locks ------------------------------------------------------------------------------------

// Holds a server-side lock (exclusive or shared) of the Client's session; releases it when
// destroyed. Empty (owns() false) when the acquisition failed: error() says why. It is the
// library's lock handle (tern::Lock, client.h).
using LockGuard = Lock;

// An exclusive lock named `name` (a lock name, not a node path), fair FIFO on the server.
class Mutex {
 public:
  // lock_delay: after an expiry of the holder's session (not a clean release), nobody gets the
  // lock for this long (Chubby's lock-delay), so a partitioned old holder can notice first.
  Mutex(Client& client, std::string name, std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0));
  LockGuard lock(std::chrono::milliseconds timeout = forever);
  LockGuard try_lock();  // error() busy if taken

 private:
  Client& client_;
  std::string name_;
  std::chrono::milliseconds delay_;
};

// Shared (read) and exclusive (write) modes of one lock: readers hold it together, a writer
// alone; a reader never overtakes a queued writer. No upgrade or downgrade: release, then ask.
class ReadWriteLock {
 public:
  ReadWriteLock(Client& client, std::string name, std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0));
  LockGuard read_lock(std::chrono::milliseconds timeout = forever);
  LockGuard write_lock(std::chrono::milliseconds timeout = forever);
  LockGuard try_read_lock();
  LockGuard try_write_lock();

 private:
  Client& client_;
  std::string name_;
  std::chrono::milliseconds delay_;
};

// --- Semaphore --------------------------------------------------------------------------------

// One permit of a Semaphore: an ephemeral sequential node, deleted when the permit is released
// (destroyed) or the session ends.
class Permit {
 public:
  Permit() = default;
  Permit(Permit&& o) noexcept;
  Permit& operator=(Permit&& o) noexcept;
  ~Permit();
  bool owns() const { return client_ != nullptr; }
  explicit operator bool() const { return owns(); }
  Error error() const { return error_; }
  const std::string& node() const { return node_; }
  Error release();

 private:
  friend struct Access;
  Permit(Client* client, std::string node) : client_(client), node_(std::move(node)) {}
  explicit Permit(Error e) : error_(e) {}
  Client* client_ = nullptr;
  std::string node_;
  Error error_ = Error::ok;
};

// A counting semaphore at node `path`: at most `permits` sessions hold a permit at once, granted
// in FIFO order. The count is stored in `path` by whoever creates it first; later users get
// that count whatever they pass (permits() says which).
class Semaphore {
 public:
  Semaphore(Client& client, std::string path, std::uint32_t permits);
  Permit acquire(std::chrono::milliseconds timeout = forever);
  std::uint32_t permits() const { return permits_; }

 private:
  Error setup();
  Client& client_;
  std::string path_;
  std::uint32_t permits_;
  bool ready_ = false;
};

// --- Barriers ---------------------------------------------------------------------------------

// A node that holds waiters back while it exists (ZooKeeper's barrier).
class Barrier {
 public:
  Barrier(Client& client, std::string path) : client_(client), path_(std::move(path)) {}
  Error raise();  // creates the node (ok if it exists)
  Error lower();  // deletes it (ok if it is gone)
  // Blocks until the node does not exist: ok, or timed_out.
  Error wait(std::chrono::milliseconds timeout = forever);

 private:
  Client& client_;
  std::string path_;
};

// `count` participants enter together and leave together. Under `path`: `members/<name>`
// (ephemeral, one per participant) and `ready` (created by the participant that completes the
// count). One round per path: use a fresh path for the next round.
class DoubleBarrier {
 public:
  // name: this participant's member node; empty: the session id.
  DoubleBarrier(Client& client, std::string path, std::uint32_t count, std::string name = {});
  // Blocks until `count` participants have entered.
  Error enter(std::chrono::milliseconds timeout = forever);
  // Blocks until every participant has left (or its session ended).
  Error leave(std::chrono::milliseconds timeout = forever);

 private:
  Client& client_;
  std::string path_, name_;
  std::uint32_t count_;
};

// --- Leader election --------------------------------------------------------------------------

struct ElectionOptions {
  // The leader confirms its leadership with a write every `confirm_interval` and reports it lost
  // when no confirmation started less than `window` ago has succeeded. 0: session timeout / 6
  // and / 2. window must stay below the session timeout (the margin covers callback latency and
  // clock rate differences).
  std::chrono::milliseconds confirm_interval{0};
  std::chrono::milliseconds window{0};
};

// Campaigns in election `name` on a thread of its own until destroyed; calls on_elected(token)
// when this session becomes leader and on_lost(token) when it stops being (or can no longer
// confirm that it is) leader — strictly alternating, on the recipe's thread.
//
// Guarantee: while is_leader() is true (and between on_elected and on_lost, give or take the
// callback's own latency), a write of this session that started less than `window` ago found it
// leading with `token`. Leadership passes only when the session ends or resigns, and a session
// lives at least its timeout (cluster time) past its last write, so with window < session
// timeout no other candidate is leader meanwhile. If the session expires, on_lost runs and the
// recipe stops (failed() true): a new Client is needed. Destroying the recipe calls on_lost
// (if leading) before it resigns.
class LeaderElection {
 public:
  using Callback = std::function<void(std::uint64_t token)>;
  LeaderElection(Client& client, std::string name, std::string value, Callback on_elected, Callback on_lost,
                 ElectionOptions options = {});
  ~LeaderElection();
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  bool is_leader() const;
  std::uint64_t token() const;  // the token of the current leadership (0: not leading)
  bool failed() const;          // the session is gone: the recipe has stopped

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::thread worker_, notifier_;
};

// --- Caches and watchers ----------------------------------------------------------------------

// A local copy of the subtree at `root`, kept by one recursive watch that resumes after a
// failover; on `resync` (history gone) it re-reads the subtree. Every node's copy moves only
// forward (by its created and modified index), so once the writes stop the cache equals the
// server's subtree.
class TreeCache {
 public:
  struct Node {
    std::string data;
    Stat stat;
  };
  // Runs on the cache's thread after each change: the path and its node (nullopt: deleted).
  using Listener = std::function<void(const std::string& path, const std::optional<Node>& node)>;
  TreeCache(Client& client, std::string root, Listener listener = {});
  ~TreeCache();
  TreeCache(const TreeCache&) = delete;
  TreeCache& operator=(const TreeCache&) = delete;

  // Blocks until the first full read of the subtree is in the cache.
  bool wait_loaded(std::chrono::milliseconds timeout) const;
  std::optional<Node> get(const std::string& path) const;
  std::vector<std::string> children(const std::string& path) const;  // names, sorted
  std::map<std::string, Node> snapshot() const;
  std::uint64_t index() const;  // the newest log index applied
  std::uint64_t reloads() const;  // full re-reads so far (1 after the first load)

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::thread worker_;
};

// Calls back with each new value of node `path` (nullopt while it does not exist), in order,
// starting with the current one; skips values it can tell are stale (by index). After a resync it
// re-reads the node, so it may skip intermediate values but never misses the last one.
class ConfigWatcher {
 public:
  using Callback = std::function<void(const std::optional<std::string>& value, std::uint64_t index)>;
  ConfigWatcher(Client& client, std::string path, Callback callback);
  ~ConfigWatcher();
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::thread worker_;
};

// Creates `path` and its missing ancestors (persistent, empty); ok if it exists.
Error ensure_path(Client& client, const std::string& path, const std::string& data = {});

}  // namespace tern::recipes
