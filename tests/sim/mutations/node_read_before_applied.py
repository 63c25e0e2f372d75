# Node guarantee: a ReadIndex read is served only after the node applied the read index.
import sys; p = sys.argv[1] + "/service/replica.cc"; s = open(p).read()
old = "  while (!reads_at_.empty() && reads_at_.begin()->first <= applied_) {"
assert old in s
open(p, "w").write(s.replace(old, "  while (!reads_at_.empty()) {"))
