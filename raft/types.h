#pragma once
// Plain value types shared by the Raft core, its storage and the drivers.
// std only: raft/ must not depend on I/O, clocks or threads (design.md §1).
#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace tern::raft {

// A tagged integer: Term, Index and NodeId cannot be mixed up by accident.
template <class Tag>
struct Strong {
  std::uint64_t value = 0;

  constexpr Strong() = default;
  constexpr explicit Strong(std::uint64_t v) : value(v) {}
  constexpr auto operator<=>(const Strong&) const = default;
  constexpr Strong next() const { return Strong(value + 1); }
  constexpr Strong prev() const { return Strong(value - 1); }
  constexpr Strong operator+(std::uint64_t d) const { return Strong(value + d); }
  constexpr Strong operator-(std::uint64_t d) const { return Strong(value - d); }
  constexpr std::uint64_t operator-(Strong o) const { return value - o.value; }
  friend std::ostream& operator<<(std::ostream& os, Strong s) { return os << s.value; }
};

struct TermTag {};
struct IndexTag {};
struct NodeIdTag {};
using Term = Strong<TermTag>;     // generation clock; 0 = before any election
using Index = Strong<IndexTag>;   // log position; 0 = before the first entry
using NodeId = Strong<NodeIdTag>; // 0 = none

inline constexpr NodeId no_node{0};

enum class EntryType : std::uint8_t {
  normal = 0,       // application command, applied by the state machine
  noop = 1,         // empty entry a new leader appends to commit its term (§5.4.2, §8)
  conf_change = 2,  // membership change, data = encoded ConfChange
};

struct Entry {
  Term term;
  Index index;
  EntryType type = EntryType::normal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// What must survive a crash besides the log (Raft paper, Figure 2 "Persistent state").
// commit is persisted too, so a restart does not re-apply from zero needlessly; it is a hint,
// never ahead of what a majority durably holds.
struct HardState {
  Term term;
  NodeId vote = no_node;
  Index commit;

  bool operator==(const HardState&) const = default;
};

// Cluster membership: voters decide elections and commits; learners only replicate.
struct ConfState {
  std::vector<NodeId> voters;    // sorted, unique
  std::vector<NodeId> learners;  // sorted, unique, disjoint from voters

  bool operator==(const ConfState&) const = default;
};

struct SnapshotMeta {
  Index index;  // last log index covered by the snapshot
  Term term;    // term of that entry
  ConfState conf;

  bool operator==(const SnapshotMeta&) const = default;
};

}  // namespace tern::raft

template <class Tag>
struct std::hash<tern::raft::Strong<Tag>> {
  std::size_t operator()(tern::raft::Strong<Tag> s) const noexcept {
    return std::hash<std::uint64_t>{}(s.value);
  }
};
