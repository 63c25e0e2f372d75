#include "service/sm/command.h"

#include "service/sm/codec.h"

namespace tern::sm {

namespace {
constexpr std::uint32_t max_ops_per_multi = 1024;
static_assert(max_keep_alives_per_batch <= max_ops_per_multi);

void put_op(Writer& w, const Op& op) {
  w.u8(static_cast<std::uint8_t>(op.type));
  w.str(op.path);
  w.str(op.data);
  w.i64(op.version);
  w.u32(op.flags);
  w.i64(op.ttl_ms);
  w.u64(op.id);
  w.u8(op.recursive ? 1 : 0);
  w.u32(static_cast<std::uint32_t>(op.ops.size()));
  for (const auto& o : op.ops) put_op(w, o);
}

bool get_op(Reader& r, Op& op, int depth) {
  std::uint8_t type = r.u8();
  if (type < 1 || type > max_op_type) return false;
  op.type = static_cast<OpType>(type);
  op.path = r.str();
  op.data = r.str();
  op.version = r.i64();
  op.flags = r.u32();
  op.ttl_ms = r.i64();
  op.id = r.u64();
  std::uint8_t rec = r.u8();
  if (rec > 1) return false;
  op.recursive = rec == 1;
  std::uint32_t n = r.u32();
  bool nests = op.type == OpType::multi || op.type == OpType::keep_alive_batch;
  if (!r.ok() || n > max_ops_per_multi || (n > 0 && (!nests || depth > 0))) return false;
  op.ops.resize(n);
  for (auto& o : op.ops)
    if (!get_op(r, o, depth + 1)) return false;
  return r.ok();
}
}  // namespace

std::string secret_bytes(std::uint64_t secret) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((secret >> (8 * i)) & 0xff);
  return out;
}

std::optional<std::uint64_t> secret_from_bytes(std::string_view bytes) {
  if (bytes.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  return v;
}

std::string encode(const Command& c) {
  Writer w;
  w.u64(c.session);
  w.u64(c.seq);
  w.u64(c.secret);
  put_op(w, c.op);
  return w.take();
}

std::optional<Command> decode(std::string_view bytes) {
  Reader r(bytes);
  Command c;
  c.session = r.u64();
  c.seq = r.u64();
  c.secret = r.u64();
  if (!get_op(r, c.op, 0) || !r.done()) return std::nullopt;
  return c;
}

}  // namespace tern::sm
