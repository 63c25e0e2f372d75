#include "service/sm/query.h"

#include "service/sm/codec.h"
#include "service/sm/state_machine.h"

namespace tern::sm {

std::string encode(const Query& q) {
  Writer w;
  w.u8(static_cast<std::uint8_t>(q.type));
  w.str(q.path);
  w.str(q.cursor);
  w.u64(q.limit);
  w.u64(q.id);
  return w.take();
}

std::optional<Query> decode_query(std::string_view bytes) {
  Reader r(bytes);
  Query q;
  std::uint8_t type = r.u8();
  if (type < 1 || type > max_query_type) return std::nullopt;
  q.type = static_cast<QueryType>(type);
  q.path = r.str();
  q.cursor = r.str();
  q.limit = r.u64();
  q.id = r.u64();
  if (!r.done()) return std::nullopt;
  return q;
}

Response run_query(const StateMachine& sm, std::string_view bytes) {
  auto q = decode_query(bytes);
  Response bad;
  bad.err = Errc::bad_request;
  if (!q) return bad;
  switch (q->type) {
    case QueryType::get: return sm.get(q->path);
    case QueryType::exists: return sm.exists(q->path);
    case QueryType::children:
      return sm.children(q->path, q->cursor, q->limit == 0 ? SIZE_MAX : static_cast<std::size_t>(q->limit));
    case QueryType::lease_ttl: return sm.lease_ttl(q->id);
    case QueryType::leader: return sm.leader(q->path);
    case QueryType::check_token: {
      Response r;
      r.err = sm.check_token(q->path, q->id) ? Errc::ok : Errc::not_held;
      return r;
    }
  }
  return bad;
}

}  // namespace tern::sm
