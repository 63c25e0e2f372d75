#include <vector>

#include "common/le.h"
#include "service/applier.h"

namespace tern::service {

namespace {

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    auto sp = s.find(' ');
    if (sp != 0) out.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  return out;
}

void put_string(std::string& out, std::string_view s) {
  le::put_u32(out, static_cast<std::uint32_t>(s.size()));
  out += s;
}

bool get_string(std::string_view& in, std::string& out) {
  if (in.size() < 4) return false;
  std::uint32_t n = le::get_u32(in.data());
  if (in.size() < 4 + static_cast<std::size_t>(n)) return false;
  out.assign(in.substr(4, n));
  in.remove_prefix(4 + n);
  return true;
}

}  // namespace

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
  if (command.substr(0, 4) == "reg ") return apply_register(command.substr(4));
  std::string out;
  le::put_u64(out, count_);
  return out;
}

std::string RawLog::apply_register(std::string_view args) {
  auto w = words(args);
  if (w.size() == 3 && w[0] == "w") {
    registers_[std::string(w[1])] = std::string(w[2]);
    return "ok";
  }
  if (w.size() == 2 && w[0] == "r") {
    auto it = registers_.find(std::string(w[1]));
    return it == registers_.end() ? "null" : it->second;
  }
  if (w.size() == 4 && w[0] == "c") {
    auto it = registers_.find(std::string(w[1]));
    if (it == registers_.end() || it->second != w[2]) return "fail";
    it->second = std::string(w[3]);
    return "ok";
  }
  return "error: want 'reg w KEY VALUE', 'reg r KEY' or 'reg c KEY OLD NEW'";
}

std::string RawLog::query(std::string_view q) const {
  auto w = words(q);
  if (w.size() == 3 && w[0] == "reg" && w[1] == "r") {
    auto it = registers_.find(std::string(w[2]));
    return it == registers_.end() ? "null" : it->second;
  }
  return "error: want 'reg r KEY'";
}

std::string RawLog::snapshot() const {
  std::string out = "RAWLOG2:";
  le::put_u64(out, count_);
  le::put_u64(out, hash_);
  le::put_u32(out, static_cast<std::uint32_t>(registers_.size()));
  for (const auto& [k, v] : registers_) {
    put_string(out, k);
    put_string(out, v);
  }
  return out;
}

Result<void, std::string> RawLog::restore(std::string_view data) {
  if (data.size() < 28 || data.substr(0, 8) != "RAWLOG2:") return fail(std::string("not a raw-log snapshot"));
  std::uint64_t count = le::get_u64(data.data() + 8);
  std::uint64_t hash = le::get_u64(data.data() + 16);
  std::uint32_t n = le::get_u32(data.data() + 24);
  data.remove_prefix(28);
  std::map<std::string, std::string> regs;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!get_string(data, k) || !get_string(data, v)) return fail(std::string("truncated raw-log snapshot"));
    regs.emplace(std::move(k), std::move(v));
  }
  if (!data.empty()) return fail(std::string("trailing bytes in a raw-log snapshot"));
  count_ = count;
  hash_ = hash;
  registers_ = std::move(regs);
  return {};
}

}  // namespace tern::service
