@0xc4b1a6f0e2d35a17;
# Peer wire protocol between ternd nodes (docs/protocol.md). Every message carries the cluster
# id, the sender's and receiver's node ids and the sender's term (the generation clock).
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tern::proto");

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  type @2 :UInt8;      # 0 normal, 1 no-op, 2 membership
  data @3 :Data;
}

struct ConfState {
  voters @0 :List(UInt64);
  learners @1 :List(UInt64);
}

struct SnapshotMeta {
  index @0 :UInt64;
  term @1 :UInt64;
  conf @2 :ConfState;
}

struct PeerMessage {
  clusterId @0 :UInt64;
  from @1 :UInt64;
  to @2 :UInt64;
  term @3 :UInt64;
  body :union {
    appendRequest @4 :AppendRequest;
    appendReply @5 :AppendReply;
    voteRequest @6 :VoteRequest;
    voteReply @7 :VoteReply;
    heartbeatRequest @8 :HeartbeatRequest;
    heartbeatReply @9 :HeartbeatReply;
    installSnapshot @10 :InstallSnapshot;
    installSnapshotReply @11 :InstallSnapshotReply;
    timeoutNow @12 :Void;
    readIndexRequest @13 :ReadIndexRequest;
    readIndexReply @14 :ReadIndexReply;
    proposeRequest @15 :ProposeRequest;
    proposeReply @16 :ProposeReply;
    commitNotice @17 :CommitNotice;
  }

  struct AppendRequest {
    prevIndex @0 :UInt64;
    prevTerm @1 :UInt64;
    entries @2 :List(Entry);
    commit @3 :UInt64;
  }
  struct AppendReply {
    success @0 :Bool;
    matchIndex @1 :UInt64;
    rejectedIndex @2 :UInt64;
    conflictIndex @3 :UInt64;
    conflictTerm @4 :UInt64;
  }
  struct VoteRequest {
    lastIndex @0 :UInt64;
    lastTerm @1 :UInt64;
    preVote @2 :Bool;
    transfer @3 :Bool;
  }
  struct VoteReply {
    granted @0 :Bool;
    preVote @1 :Bool;
  }
  struct HeartbeatRequest {
    commit @0 :UInt64;
    readSeq @1 :UInt64;
  }
  struct HeartbeatReply {
    readSeq @0 :UInt64;
  }
  # A snapshot travels as a sequence of chunks at increasing offsets; the receiver steps the
  # core once the chunk with `done` arrives (flow control: one chunk in flight per follower).
  struct InstallSnapshot {
    meta @0 :SnapshotMeta;
    offset @1 :UInt64;
    chunk @2 :Data;
    done @3 :Bool;
  }
  struct InstallSnapshotReply {
    matchIndex @0 :UInt64;
  }
  struct ReadIndexRequest {
    context @0 :Data;
  }
  struct ReadIndexReply {
    context @0 :Data;
    index @1 :UInt64;
    ok @2 :Bool;
  }
  struct ProposeRequest {   # a follower forwards a client's command to its leader (thesis §6.2)
    context @0 :UInt64;
    command @1 :Data;
    trace @2 :UInt64;       # the client's request id (0: none), for the leader's log lines only
    kind @3 :UInt8;         # 0: a client's command; 3: the sender's own client address (host:port)
  }
  struct ProposeReply {     # where the leader appended it (index, in the message's term)
    context @0 :UInt64;
    index @1 :UInt64;
    ok @2 :Bool;
  }
  struct CommitNotice {     # the commit index the follower may apply; no reply
    commit @0 :UInt64;
  }
}
