@0xd7e2a91c4b5f3e60;
# Admin RPC of a ternd node, served on --client-addr (docs/protocol.md). Used by operators' tools,
# the integration tests and the cluster benchmark (raw proposals) until the client API exists.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tern::proto");

enum AdminCode {
  ok @0;
  notLeader @1;          # leaderHint names the leader this node believes in (0: none known)
  unknownOutcome @2;     # the entry was overwritten or the node stopped: it may or may not apply
  busy @3;               # back-pressure: retry later
  tooLarge @4;
  confChangePending @5;
  transferInProgress @6;
  invalid @7;
  shuttingDown @8;
  timedOut @9;           # a read found no confirmed leader in time; nothing changed
}

struct AdminResult {
  code @0 :AdminCode;
  leaderHint @1 :UInt64;
  index @2 :UInt64;      # the log index of the committed entry (ok)
  term @3 :UInt64;
  message @4 :Text;
  response @5 :Data;     # the state machine's response (propose)
}

struct Member {
  id @0 :UInt64;
  address @1 :Text;
  voter @2 :Bool;
  matchIndex @3 :UInt64;   # known on the leader only
}

struct NodeStatus {
  id @0 :UInt64;
  role @1 :Text;
  term @2 :UInt64;
  leader @3 :UInt64;
  commitIndex @4 :UInt64;
  appliedIndex @5 :UInt64;
  lastIndex @6 :UInt64;
  snapshotIndex @7 :UInt64;
  members @8 :List(Member);
  appliedCommands @9 :UInt64;   # commands applied by the state machine
  digest @10 :UInt64;           # state machine digest: equal on replicas at equal applied index
  pendingProposals @11 :UInt64;
}

interface Admin {
  # Proposes one raw command; returns once it is committed and applied on this node.
  propose @0 (data :Data) -> (result :AdminResult);
  status @1 () -> (status :NodeStatus);
  transferLeadership @2 (to :UInt64) -> (result :AdminResult);
  addMember @3 (id :UInt64, address :Text, learner :Bool) -> (result :AdminResult);
  promoteMember @4 (id :UInt64) -> (result :AdminResult);
  removeMember @5 (id :UInt64) -> (result :AdminResult);
  # A linearizable read without a log entry (ReadIndex), served by this node (leader or
  # follower) once it has applied the read index; `index` is that read index.
  read @6 (query :Data) -> (result :AdminResult);
  # Tests only (ternd --debug-fault-injection 1): drop all peer traffic to and from these
  # nodes, like a network partition; an empty list heals. Otherwise `invalid`.
  injectPartition @7 (peers :List(UInt64)) -> (result :AdminResult);
}
