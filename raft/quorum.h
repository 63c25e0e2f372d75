#pragma once
// Pure quorum arithmetic over a set of voters (paper §5.2, §5.3).
#include <algorithm>
#include <vector>

#include "raft/types.h"

namespace tern::raft {

inline std::size_t majority(std::size_t voters) { return voters / 2 + 1; }

// The largest index that a majority of `matches` has reached.
inline Index quorum_index(std::vector<Index> matches) {
  if (matches.empty()) return Index{0};
  std::sort(matches.begin(), matches.end());
  // With n sorted values, the value at position n - majority(n) is held by at least majority(n).
  return matches[matches.size() - majority(matches.size())];
}

inline bool contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::binary_search(ids.begin(), ids.end(), id);
}

}  // namespace tern::raft
