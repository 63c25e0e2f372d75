#include "common/le.h"
#include "service/applier.h"

namespace tern::service {

std::string RawLog::apply(raft::Index, std::uint64_t, std::string_view command) {
  ++count_;
  // FNV-1a over (previous hash, command): equal digests mean equal command sequences (whp).
  std::uint64_t h = hash_;
  for (unsigned char ch : command) {
    h ^= ch;
    h *= 0x100000001b3ULL;
  }
  h ^= count_;
  h *= 0x100000001b3ULL;
  hash_ = h;
  std::string out;
  le::put_u64(out, count_);
  return out;
}

std::string RawLog::snapshot() const {
  std::string out = "RAWLOG1:";
  le::put_u64(out, count_);
  le::put_u64(out, hash_);
  return out;
}

Result<void, std::string> RawLog::restore(std::string_view data) {
  if (data.size() != 24 || data.substr(0, 8) != "RAWLOG1:") return fail(std::string("not a raw-log snapshot"));
  count_ = le::get_u64(data.data() + 8);
  hash_ = le::get_u64(data.data() + 16);
  return {};
}

}  // namespace tern::service
