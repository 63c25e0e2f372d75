# Hole 1 (issue 10): the initial membership lives only in memory until a commit index is written.
import sys; p = sys.argv[1] + "/service/replica.cc"; s = open(p).read()
old = "    if (auto r = wal_->write(b); !r) return fail(\"wal: cannot write the initial membership: \" + r.error().message);\n    rs.hard_state = *b.hard_state;\n    written_hs_ = rs.hard_state;\n    rs.entries = std::move(b.entries);\n"
assert old in s
open(p, "w").write(s.replace(old, "    rs.bootstrap = conf;\n"))
