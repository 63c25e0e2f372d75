import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "    rd.hard_state = hs;\n"
assert old in s
open(p, "w").write(s.replace(old, "    rd.hard_state = HardState{persisted_hs_.term, hs.vote, hs.commit};\n"))
