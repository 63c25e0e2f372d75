# Hole 1 (issue 10) as it was on main: the initial membership lives only in memory (the core
# appends it as entry 1 in its first Ready, whose commit index is deferred) and a restarted node
# adopts membership only up to its durable commit index. With today's adopt-on-append (hole 3's
# fix) the first half alone is harmless, so both halves are planted.
import os, runpy, sys
p = sys.argv[1] + "/service/replica.cc"; s = open(p).read()
old = "    if (auto r = wal_->write(b); !r) return fail(\"wal: cannot write the initial membership: \" + r.error().message);\n    rs.hard_state = *b.hard_state;\n    written_hs_ = rs.hard_state;\n    rs.entries = std::move(b.entries);\n"
assert old in s
open(p, "w").write(s.replace(old, "    rs.bootstrap = conf;\n"))
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf_from_durable_commit.py"), run_name="__main__")
