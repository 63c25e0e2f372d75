#pragma once
// Plain types of the coordination state machine (design.md §4): errors, node stat, events,
// responses. std only.
#include <cstdint>
#include <string>
#include <vector>

namespace tern::sm {

// Every expected failure has its own code; a rejected command changes nothing.
enum class Errc : std::uint8_t {
  ok = 0,
  bad_path,          // not absolute, empty component, trailing slash, NUL, too long, "." or ".."
  no_node,           // the node does not exist
  node_exists,       // create of an existing path
  no_parent,         // create under a missing parent
  not_empty,         // delete (non-recursive) of a node with children
  bad_version,       // expected version does not match
  too_large,         // value or request above the configured limit
  ephemeral_parent,  // ephemeral nodes cannot have children
  unknown_session,   // no such session (never opened, closed, or expired)
  unknown_lease,     // no such lease
  check_failed,      // a transaction's check (existence or value) did not hold
  bad_request,       // malformed command (undecodable bytes, invalid arguments)
  stale_request,     // a sequence number below the session's full window of retained answers
  busy,              // try-lock of a lock that is taken
  too_many,          // a bound was reached (waiters per lock, locks per session)
  not_held,          // unlock/resign/proclaim by a session that does not hold (or wait for) it
};
const char* errc_name(Errc e);

struct Stat {
  std::uint64_t created_index = 0;   // czxid: log index of the create
  std::uint64_t modified_index = 0;  // mzxid: log index of the last set (or create)
  std::uint64_t child_index = 0;     // pzxid: log index of the last child create/delete
  std::int64_t version = 0;          // data version, +1 per set
  std::int64_t child_version = 0;    // +1 per child create/delete
  std::uint64_t ephemeral_owner = 0; // session id, 0 if persistent
  std::uint64_t lease = 0;           // lease id the node is attached to, 0 if none
  std::uint64_t data_length = 0;
  std::uint64_t child_count = 0;
  std::int64_t ctime_ms = 0;         // cluster time
  std::int64_t mtime_ms = 0;
  bool operator==(const Stat&) const = default;
};

enum class EventType : std::uint8_t {
  created,
  deleted,
  data_changed,
  children_changed,
  session_expired,
  lease_expired,
  lock_granted,    // path = lock name, id = session, token = fencing token
  leader_changed,  // path = election name, id = leader's session (0: none), data = value, token
};
const char* event_name(EventType t);

struct Event {
  std::uint64_t index = 0;
  EventType type = EventType::created;
  std::string path;       // the node (or, for children_changed, the parent)
  std::string data;       // new data (created, data_changed)
  std::string prev_data;  // previous data (data_changed, deleted)
  Stat stat;              // the node's stat after the change (before, for deleted)
  std::uint64_t id = 0;   // session or lease id (session_expired, lease_expired, lock_granted, leader_changed)
  std::uint64_t token = 0;  // fencing token (lock_granted, leader_changed)
  bool operator==(const Event&) const = default;
};

struct Response {
  Errc err = Errc::ok;
  std::string path;                // create: the actual path (sequential suffix)
  std::string data;                // get
  Stat stat;
  std::uint64_t id = 0;            // open_session / grant_lease: the new id
  std::int64_t ttl_ms = 0;         // lease ttl queries
  std::vector<std::string> names;  // children
  std::vector<Response> results;   // multi: one per operation (all ok, or the first failure)
  bool operator==(const Response&) const = default;
};

}  // namespace tern::sm
