import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "  if (hs != persisted_hs_) rd.hard_state = hs;"
assert old in s
open(p, "w").write(s.replace(old, "  if (hs != persisted_hs_) rd.hard_state = HardState{persisted_hs_.term, hs.vote, hs.commit};"))
