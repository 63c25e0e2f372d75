@0xe3a1c7d25b904f18;
# tern's client API (docs/client.md): served by every ternd on --client-addr, used by the client
# library (client/). The only schema a client needs; it imports nothing from service/.
# Numbering: Errc's first 17 values and OpType are the state machine's own (service/sm/types.h,
# command.h), so the server converts them one to one.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tern::api");

enum Errc {
  ok @0;
  badPath @1;
  noNode @2;
  nodeExists @3;
  noParent @4;
  notEmpty @5;
  badVersion @6;
  tooLarge @7;
  ephemeralParent @8;
  unknownSession @9;
  unknownLease @10;
  checkFailed @11;
  badRequest @12;
  staleRequest @13;
  busy @14;            # try-lock of a taken lock
  tooMany @15;
  notHeld @16;
  # Outcomes of the service rather than of the state machine:
  notLeader @17;       # this node cannot take writes; leaderHint names the leader it knows (0: none)
  unknownOutcome @18;  # the write may or may not have applied; retry with the same seq settles it
  unavailable @19;     # no leader / shutting down / overloaded: retry elsewhere or later
  timedOut @20;        # nothing changed (reads) or unknown (writes: see unknownOutcome)
  slowDown @21;        # admission limit: back off and retry
}

struct Stat {
  createdIndex @0 :UInt64;
  modifiedIndex @1 :UInt64;
  childIndex @2 :UInt64;
  version @3 :Int64;
  childVersion @4 :Int64;
  ephemeralOwner @5 :UInt64;
  lease @6 :UInt64;
  dataLength @7 :UInt64;
  childCount @8 :UInt64;
  ctimeMs @9 :Int64;
  mtimeMs @10 :Int64;
}

enum OpType {
  none @0;
  create @1;
  set @2;
  remove @3;
  check @4;
  multi @5;
  openSession @6;
  keepAlive @7;
  closeSession @8;
  grantLease @9;
  keepAliveLease @10;
  revokeLease @11;
  tick @12;
  lock @13;
  unlock @14;
  campaign @15;
  resign @16;
  proclaim @17;
}

# One operation; fields as in docs/data-model.md (flags: create ephemeral=1 sequential=2
# container=4 ttl=8; lock shared=1 try=2; check exists=1 notExists=2 value=4).
struct Op {
  type @0 :OpType;
  path @1 :Text;
  data @2 :Data;
  version @3 :Int64 = -1;   # expected version; -1: any
  flags @4 :UInt32;
  ttlMs @5 :Int64;
  id @6 :UInt64;            # lease to attach (create) or the lease acted on
  recursive @7 :Bool;
  ops @8 :List(Op);         # multi
}

struct Result {
  err @0 :Errc;
  message @1 :Text;
  index @2 :UInt64;        # the log index this answer reflects (write: its entry; read: the state read)
  leaderHint @3 :UInt64;
  path @4 :Text;           # create: the actual path; children: the cursor of the next page
  data @5 :Data;
  stat @6 :Stat;
  id @7 :UInt64;           # session / lease id; lock: the fencing token
  ttlMs @8 :Int64;
  names @9 :List(Text);
  results @10 :List(Result);  # multi: one per operation
}

enum QueryType {
  none @0;
  get @1;
  exists @2;
  children @3;    # path, cursor (exclusive), limit (0: all)
  leaseTtl @4;    # id = lease
  leader @5;      # path = election name
  checkToken @6;  # path = lock name, id = token
}

struct Query {
  type @0 :QueryType;
  path @1 :Text;
  cursor @2 :Text;
  limit @3 :UInt64;
  id @4 :UInt64;
}

enum Consistency {
  linearizable @0;  # ReadIndex on the serving node (default)
  serializable @1;  # this node's state, possibly stale
  atLeast @2;       # a state at or after minIndex (read your writes on any node)
}

struct ReadOptions {
  consistency @0 :Consistency;
  minIndex @1 :UInt64;
}

struct Member {
  id @0 :UInt64;
  voter @1 :Bool;
  clientAddress @2 :Text;  # "host:port" the member announced (--client-addr); empty: not yet known
}

struct ServerInfo {
  nodeId @0 :UInt64;
  leader @1 :UInt64;
  term @2 :UInt64;
  appliedIndex @3 :UInt64;
  commitIndex @4 :UInt64;
  maxValueBytes @5 :UInt64;
  maxRequestBytes @6 :UInt64;
  members @7 :List(Member);
}

enum WatchKind {
  data @0;      # data_changed and deleted of the path
  children @1;  # children_changed and deleted
  exists @2;    # created, data_changed, deleted
  events @3;    # lock, election and session events on a name
}

struct WatchSpec {
  path @0 :Text;
  kind @1 :WatchKind;
  persistent @2 :Bool;
  recursive @3 :Bool;
}

enum EventType {
  created @0;
  deleted @1;
  dataChanged @2;
  childrenChanged @3;
  sessionExpired @4;
  leaseExpired @5;
  lockGranted @6;
  leaderChanged @7;
}

# One note per event per session: an event that matches several watches of the session is sent
# once, for `watch` and every id in `moreWatches` (each of them gets it, in that watch's order).
struct Notification {
  watch @0 :UInt64;
  moreWatches @11 :List(UInt64);
  union {
    event :group {
      index @1 :UInt64;
      type @2 :EventType;
      path @3 :Text;
      data @4 :Data;
      prevData @5 :Data;
      stat @6 :Stat;
      id @7 :UInt64;
      token @8 :UInt64;
    }
    resync @9 :UInt64;    # history is gone: read the state, then watch again from this index
    overflow @10 :UInt64; # the watcher fell behind: watch again from this index
  }
}

# Implemented by the client: the server makes one notify call at a time per session and waits
# for its return (flow control); a watcher that does not keep up gets `overflow`.
interface WatchSink {
  notify @0 (notes :List(Notification)) -> ();
}

interface Session {
  # A write of this session. `seq` makes it exactly-once: a retry with the same seq (on any node,
  # after any failover) gets the original answer and is not applied again.
  write @0 (seq :UInt64, op :Op, requestId :UInt64) -> (result :Result);
  read @1 (query :Query, options :ReadOptions, requestId :UInt64) -> (result :Result);
  keepAlive @2 () -> (result :Result);
  close @3 (seq :UInt64) -> (result :Result);
  # Registers a watch delivered to `sink`; result.id is the watch id. resumeFrom: deliver the
  # matching events after this index (no gap, no duplicate, or an explicit resync);
  # 0xffffffffffffffff: only future events.
  watch @4 (spec :WatchSpec, resumeFrom :UInt64, sink :WatchSink) -> (result :Result);
  cancelWatch @5 (watch :UInt64) -> (result :Result);

  # Handles (docs/client.md, Handles): each is a session write like `write` (same sequence
  # numbers, same exactly-once, same ordering) that also answers a capability for what it made.
  # The capability only holds the ids: dropping it (or losing the connection) releases nothing
  # (a dead client's locks go with its session's expiry). It is answered whenever the write is
  # `ok`, queued lock or campaign included (its unlock or resign withdraws the request).
  # flags: shared=1 try=2, as Op.flags for a lock.
  lock @6 (seq :UInt64, name :Text, flags :UInt32, lockDelayMs :Int64, requestId :UInt64) -> (result :Result, lock :Lock);
  grantLease @7 (seq :UInt64, ttlMs :Int64, requestId :UInt64) -> (result :Result, lease :Lease);
  campaign @8 (seq :UInt64, election :Text, value :Data, requestId :UInt64) -> (result :Result, leadership :Leadership);
  # The same capabilities rebuilt from their ids (the ids are the source of truth): after a
  # failover, a client rebuilds its handles on its new server with these, pipelined (no round
  # trip of their own). Nothing is checked here; each method's state machine answer is the check
  # (notHeld, unknownLease).
  lockOf @9 (name :Text) -> (lock :Lock);
  leaseOf @10 (id :UInt64) -> (lease :Lease);
  leadershipOf @11 (election :Text) -> (leadership :Leadership);
}

# A lock (held or queued) of the session that made this capability. Writes carry the session's
# sequence numbers, like Session.write.
interface Lock {
  unlock @0 (seq :UInt64, requestId :UInt64) -> (result :Result);  # releases, or withdraws the request
  checkToken @1 (token :UInt64, options :ReadOptions, requestId :UInt64) -> (result :Result);
}

# A lease (leases belong to no session: any session may act on one by its id).
interface Lease {
  keepAlive @0 (seq :UInt64, requestId :UInt64) -> (result :Result);
  revoke @1 (seq :UInt64, requestId :UInt64) -> (result :Result);  # its nodes are deleted
  ttl @2 (options :ReadOptions, requestId :UInt64) -> (result :Result);
}

# A candidacy (leading or queued) of the session that made this capability in one election.
interface Leadership {
  proclaim @0 (seq :UInt64, value :Data, requestId :UInt64) -> (result :Result);
  resign @1 (seq :UInt64, requestId :UInt64) -> (result :Result);  # or withdraws the candidacy
  leader @2 (options :ReadOptions, requestId :UInt64) -> (result :Result);
}

# The bootstrap interface of the client port.
interface Tern {
  # Opens a session; `secret` is a random nonzero number chosen by the client, needed to
  # re-attach. result.id is the session id.
  openSession @0 (timeoutMs :Int64, secret :UInt64, requestId :UInt64) -> (session :Session, result :Result);
  # Re-attaches an open session (after a failover) on this node.
  attachSession @1 (id :UInt64, secret :UInt64) -> (session :Session, result :Result);
  # Reads and writes without a session (no ephemerals, no exactly-once for writes).
  read @2 (query :Query, options :ReadOptions, requestId :UInt64) -> (result :Result);
  write @3 (op :Op, requestId :UInt64) -> (result :Result);
  info @4 () -> (info :ServerInfo);
}
