#pragma once
// Test driver for the state machine: applies commands at increasing indexes with a controllable
// cluster clock, and collects the events.
#include <map>
#include <string>
#include <vector>

#include "service/sm/command.h"
#include "service/sm/state_machine.h"

namespace tern::sm::test {

struct Driver {
  Driver() = default;
  explicit Driver(const Limits& limits) : sm(limits) {}
  StateMachine sm;
  std::uint64_t index = 0;
  std::int64_t time = 1'000'000;
  std::vector<Event> events;

  std::map<std::uint64_t, std::uint64_t> secrets;  // session -> the secret its opener chose

  ApplyResult raw(const std::string& bytes) {
    auto r = sm.apply(++index, time, bytes);
    events.insert(events.end(), r.events.begin(), r.events.end());
    return r;
  }
  // Runs `op` as the owner of `session` (with its secret). keep_alive / close_session naming a
  // session by op.id and no session are sent as that session's own request.
  Response run(const Op& op, std::uint64_t session = 0, std::uint64_t seq = 0) {
    if (session == 0 && op.id != 0 && (op.type == OpType::keep_alive || op.type == OpType::close_session)) session = op.id;
    auto it = secrets.find(session);
    return raw(encode(Command{session, seq, op, it == secrets.end() ? 0 : it->second})).response;
  }
  Response create(const std::string& path, const std::string& data = "", std::uint32_t flags = 0, std::uint64_t session = 0,
                  std::int64_t ttl = 0, std::uint64_t lease = 0) {
    Op op{OpType::create, path, data};
    op.flags = flags;
    op.ttl_ms = ttl;
    op.id = lease;
    return run(op, session);
  }
  Response set(const std::string& path, const std::string& data, std::int64_t version = -1) {
    Op op{OpType::set, path, data};
    op.version = version;
    return run(op);
  }
  Response remove(const std::string& path, std::int64_t version = -1, bool recursive = false) {
    Op op{OpType::remove, path};
    op.version = version;
    op.recursive = recursive;
    return run(op);
  }
  std::uint64_t open_session(std::int64_t timeout_ms = 10'000) {
    Op op{OpType::open_session};
    op.ttl_ms = timeout_ms;
    std::uint64_t secret = 0x9e3779b97f4a7c15ull * (index + 1) | 1;  // any nonzero value will do
    auto r = raw(encode(Command{0, 0, op, secret})).response;
    if (r.err == Errc::ok) secrets[r.id] = secret;
    return r.id;
  }
  Response lock(std::uint64_t s, const std::string& name, std::uint32_t flags = 0, std::int64_t delay = 0) {
    Op op{OpType::lock, name};
    op.flags = flags;
    op.ttl_ms = delay;
    return run(op, s);
  }
  Response unlock(std::uint64_t s, const std::string& name) { return run(Op{OpType::unlock, name}, s); }
  void tick(std::int64_t advance_ms) {
    time += advance_ms;
    run(Op{OpType::tick});
  }
  // Sessions granted a lock from the queue since the last call (lock_granted events).
  std::vector<std::uint64_t> granted_sessions() {
    std::vector<std::uint64_t> out;
    for (auto& e : events)
      if (e.type == EventType::lock_granted) out.push_back(e.id);
    events.clear();
    return out;
  }
  // Lock grants from the queue since the last call, in order: (lock name, session, token).
  std::vector<Grant> granted() {
    std::vector<Grant> out;
    for (auto& e : events)
      if (e.type == EventType::lock_granted) out.push_back(Grant{e.path, e.id, e.token});
    events.clear();
    return out;
  }
};

}  // namespace tern::sm::test
