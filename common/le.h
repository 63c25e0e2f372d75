#pragma once
// Little-endian integer encoding shared by every on-disk and in-log format (WAL records,
// snapshots, membership entries, state-machine commands). std only.
#include <cstdint>
#include <string>

namespace tern::le {

inline void put(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u32(std::string& out, std::uint32_t v) { put(out, v, 4); }
inline void put_u64(std::string& out, std::uint64_t v) { put(out, v, 8); }

inline std::uint64_t get(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
inline std::uint32_t get_u32(const char* p) { return static_cast<std::uint32_t>(get(p, 4)); }
inline std::uint64_t get_u64(const char* p) { return get(p, 8); }

}  // namespace tern::le
