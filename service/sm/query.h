#pragma once
// Read-only queries of the state machine and their binary encoding. A query does not go through
// the log: a server answers it from its own state, after a ReadIndex for a linearizable read.
// Encoding, little-endian: type u8 | path str | cursor str | limit u64 | id u64.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "service/sm/types.h"

namespace tern::sm {

class StateMachine;

enum class QueryType : std::uint8_t {
  get = 1,
  exists = 2,
  children = 3,     // path, cursor (exclusive), limit (0: all)
  lease_ttl = 4,    // id = lease
  leader = 5,       // path = election name
  check_token = 6,  // path = lock name, id = token; ok if it is a current holder's, else not_held
};
inline constexpr std::uint8_t max_query_type = 6;

struct Query {
  QueryType type = QueryType::get;
  std::string path;
  std::string cursor;
  std::uint64_t limit = 0;
  std::uint64_t id = 0;
  bool operator==(const Query&) const = default;
};

std::string encode(const Query& q);
std::optional<Query> decode_query(std::string_view bytes);
// Undecodable bytes answer bad_request: a query never changes state, so no error is fatal.
Response run_query(const StateMachine& sm, std::string_view bytes);

}  // namespace tern::sm
