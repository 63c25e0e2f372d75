# Hole 4 (issue 10): recovery joins a snapshot with a WAL suffix that does not extend it (the
# entry at the snapshot index, or the reset record there, of another term is not checked).
import sys; p = sys.argv[1] + "/raft/storage/recovery.cc"; s = open(p).read()
old = "    else if (term_at)\n      keep = *term_at == m.term;\n    else if (rec.reset && rec.reset->first == m.index)\n      keep = rec.reset->second == m.term;\n"
assert old in s
open(p, "w").write(s.replace(old, ""))
