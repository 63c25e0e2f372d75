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
  clientAddress @4 :Text;  # the client address it announced (entry kind 3); empty: not yet known
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
  # A consistent snapshot of this node's state (`tern snapshot save`): its newest durable
  # snapshot file if it holds everything this node has applied, else one taken now. `result`
  # has the snapshot's index and term; `size` is the whole file's (header and data, the format of
  # docs/storage-format.md), read through `reader` in chunks the caller asks for one after the
  # other (the caller's pace is the back-pressure). The file stays readable while the reader
  # lives, even once newer snapshots replace it on the node. At most 4 readers per node: busy.
  snapshot @8 () -> (result :AdminResult, size :UInt64, reader :SnapshotReader);
}

interface SnapshotReader {
  # Bytes [offset, offset + min(length, 1 MiB, size - offset)); empty at or past the end.
  read @0 (offset :UInt64, length :UInt32) -> (data :Data);
}
