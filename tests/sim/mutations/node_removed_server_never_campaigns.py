# Found by the whole-node simulator (tern-sim --node --seed 75 --voters 1 --spares 1, before the
# sm workload): a server whose log holds an uncommitted change removing it never campaigns, so a
# leader that removed itself and lost leadership before the others had the entry leaves a
# cluster that can never elect a leader (raft/core.cc Core::promotable, thesis §4.2.2).
import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "  if (is_voter()) return true;\n"
assert old in s
open(p, "w").write(s.replace(old, "  if (is_voter() || true) return is_voter();\n"))
