#pragma once
// Commands of the replicated state machine and their binary encoding (the bytes of a Raft
// entry). Encoding, little-endian: session u64 | seq u64 | secret u64 | op, where
//   op = type u8 | path str | data str | version i64 | flags u32 | ttl_ms i64 | id u64 |
//        recursive u8 | op count u32 | op*          (str = length u32 | bytes)
// Reads (get, exists, children) are queries, not commands: they do not go through the log.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/sm/types.h"

namespace tern::sm {

enum class OpType : std::uint8_t {
  create = 1,
  set = 2,
  remove = 3,
  check = 4,            // inside multi only
  multi = 5,            // all-or-nothing
  open_session = 6,     // ttl_ms = session timeout; the command's secret becomes the session's
  keep_alive = 7,       // of the command's own session (id: 0 or that session)
  close_session = 8,    // of the command's own session (id: 0 or that session)
  grant_lease = 9,      // ttl_ms
  keep_alive_lease = 10,
  revoke_lease = 11,
  tick = 12,            // carries only cluster time (the leader appends one periodically)
  lock = 13,            // path = lock name; flags lock_*; ttl_ms = lock-delay on expiry
  unlock = 14,          // release, or withdraw a queued request
  campaign = 15,        // path = election name; data = the candidate's value
  resign = 16,
  proclaim = 17,        // data = the leader's new value
  // Renews many sessions in one entry (a node batches its clients' keep-alives: one replicated
  // entry per batch, not per session). ops = keep_alive ops, each with id = the session and
  // data = its secret (8 bytes, little-endian); an unknown session or a wrong secret renews
  // nothing and answers unknown_session in its place of `results`. Never sent by clients.
  keep_alive_batch = 18,
};
inline constexpr std::uint8_t max_op_type = 18;
// Keep-alives per keep_alive_batch entry (the decoder's bound on nested operations).
inline constexpr std::size_t max_keep_alives_per_batch = 1024;

// The secret as a keep_alive_batch operation carries it, and back (nullopt: not 8 bytes).
std::string secret_bytes(std::uint64_t secret);
std::optional<std::uint64_t> secret_from_bytes(std::string_view bytes);

// create flags
inline constexpr std::uint32_t flag_ephemeral = 1;
inline constexpr std::uint32_t flag_sequential = 2;
inline constexpr std::uint32_t flag_container = 4;  // deleted when its last child goes
inline constexpr std::uint32_t flag_ttl = 8;        // deleted after ttl_ms without changes and children
// lock flags
inline constexpr std::uint32_t lock_shared = 1;
inline constexpr std::uint32_t lock_try = 2;
// check flags
inline constexpr std::uint32_t check_exists = 1;
inline constexpr std::uint32_t check_not_exists = 2;
inline constexpr std::uint32_t check_value = 4;     // data must equal `data`

struct Op {
  OpType type = OpType::tick;
  std::string path;
  std::string data;
  std::int64_t version = -1;  // expected version; -1: any
  std::uint32_t flags = 0;
  std::int64_t ttl_ms = 0;
  std::uint64_t id = 0;       // lease to attach (create), or the session/lease acted on
  bool recursive = false;     // remove
  std::vector<Op> ops;        // multi
  bool operator==(const Op&) const = default;
};

struct Command {
  std::uint64_t session = 0;  // 0: no session (no exactly-once)
  std::uint64_t seq = 0;      // per-session sequence number; a retry repeats it
  Op op;
  // Ownership (docs/data-model.md, Sessions): open_session sets it, nonzero, chosen at random by
  // the opener; every request of a session must carry it, or it is treated as unknown_session.
  std::uint64_t secret = 0;
  bool operator==(const Command&) const = default;
};

std::string encode(const Command& c);
std::optional<Command> decode(std::string_view bytes);

// A response as bytes (the state machine's answer travels through the replica as bytes; the
// same layout is used inside snapshots for the exactly-once cache).
std::string encode_response(const Response& r);
std::optional<Response> decode_response(std::string_view bytes);

}  // namespace tern::sm
