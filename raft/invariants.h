#pragma once
// Cross-node safety checks of Raft (paper Figure 3), evaluated by the simulator and tests after
// every step. Each returns a description of the first violation found, or nothing.
//
//   Election Safety      at most one leader per term (ever, not just at one instant);
//   Log Matching         two logs with an entry of the same index and term are identical up to it;
//   Leader Completeness  a leader of a later term holds every entry committed before it;
//   State Machine Safety no two nodes apply different entries at the same index;
//   Commit monotonicity  a node's commit index never goes backwards (per incarnation), and the
//                        globally committed prefix never changes;
//   Durable majority     a committed entry is durably held by a majority of the voters;
//   Electability         no node lacking a committed entry could collect a majority of votes
//                        (its durable log at least as up-to-date, §5.4.1, as that of a majority
//                        of voters): the property that makes Leader Completeness hold after
//                        any later crash. It exposes commits that are unsafe before the unlucky
//                        election that would overwrite them happens (Figure 8).
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "raft/core.h"

namespace tern::raft {

class InvariantChecker {
 public:
  // durable_holds(node, index, term): does `node` durably hold the entry (index, term), in its
  // persisted log or covered by its persisted snapshot? Used for the durable-majority check.
  using DurableHolds = std::function<bool(NodeId, Index, Term)>;
  // durable_last(node): index and term of the last entry in `node`'s durable log (or snapshot).
  using DurableLast = std::function<std::pair<Index, Term>(NodeId)>;

  // `cores` are the live nodes; `all_nodes` every node ever in the cluster (crashed ones too).
  std::optional<std::string> check(const std::vector<const Core*>& cores, const std::vector<NodeId>& all_nodes,
                                   const DurableHolds& durable_holds, const DurableLast& durable_last);
  // The application applied `e` on `node` (from Ready::committed, in order).
  std::optional<std::string> on_apply(NodeId node, const Entry& e);
  // A snapshot restored `node`'s state machine up to index (its applied index jumps there).
  void on_restore(NodeId node, Index index);
  // `node` crashed; its next incarnation starts from its durable commit index.
  void on_restart(NodeId node) {
    last_commit_.erase(node);
  }

  Index max_committed() const { return committed_.empty() ? Index{0} : committed_.rbegin()->first; }

 private:
  struct Committed {
    Term term;
    std::size_t data_hash;
    Term observed_at;    // the term of the node that first saw it committed
    std::size_t quorum;  // durable holders it needs
  };
  std::optional<std::string> check_log_matching(const Core& a, const Core& b) const;
  static std::size_t quorum_for(const Core& c, Index i);

  std::map<Term, NodeId> leaders_;
  std::map<Index, Committed> committed_;
  std::map<NodeId, Index> last_commit_;
  std::map<Index, std::size_t> applied_;  // index -> hash of (term, data) applied there
  std::map<NodeId, Index> last_applied_;
};

}  // namespace tern::raft
