# A follower that replaces everything after prev_index with the request's entries, even when they
# match, so a delayed shorter append drops entries it already acknowledged (possibly committed).
import sys; root = sys.argv[1]
p = root + "/raft/core.cc"; s = open(p).read()
old = "  if (prev < log_.committed()) {"
assert old in s; s = s.replace(old, "  if (false) {"); open(p, "w").write(s)
p = root + "/raft/log.cc"; s = open(p).read()
old = "      if (*existing == e.term) continue;  // already have it (§5.3 step 4: keep matching entries)"
assert old in s; s = s.replace(old, "")
s = s.replace('      TERN_ASSERT_MSG(e.index > committed_, "append would truncate a committed entry");\n', "")
s = s.replace("  TERN_ASSERT(i > committed_);\n  TERN_ASSERT(i >= first_index());\n  entries_.resize", "  entries_.resize")
s = s.replace("  if (i <= committed_) return;  // the commit index never goes backwards", "  if (i <= committed_) return;\n  if (i > last_index()) i = last_index();")
open(p, "w").write(s)
