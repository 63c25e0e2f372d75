#pragma once
// The 64-bit cluster id of a cluster name (ternd --cluster-name): carried by every peer frame and
// recorded in each data directory's IDENTITY. Here (std only) so that ternd and ternutl (which
// writes a data directory for `restore`) derive it the same way.
#include <cstdint>
#include <string_view>

namespace tern {

inline std::uint64_t cluster_id_of_name(std::string_view cluster_name) {
  // FNV-1a: stable across builds and platforms (it is stored in data directories).
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char ch : cluster_name) {
    h ^= ch;
    h *= 0x100000001b3ULL;
  }
  return h == 0 ? 1 : h;
}

}  // namespace tern
