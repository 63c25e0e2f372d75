# Hole 2 (issue 10): the early send (thesis §10.2.1) even when the Ready changes term or vote.
import sys; p = sys.argv[1] + "/service/replica.cc"; s = open(p).read()
old = "  if (term_vote_durable)\n    for (const auto& m : rd->messages)"
assert old in s
s = s.replace(old, "  if (true)\n    for (const auto& m : rd->messages)")
s = s.replace("persisted(rd, term_vote_durable);", "persisted(rd, true);")
open(p, "w").write(s)
