import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "    rd.hard_state = hs;\n"
assert old in s
open(p, "w").write(s.replace(old, "    rd.hard_state = HardState{hs.term, persisted_hs_.vote, hs.commit};\n"))
