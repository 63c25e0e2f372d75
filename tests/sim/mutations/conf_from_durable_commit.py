# Issue 10, hole 3: a restarted node takes its membership from the entries up to its durable
# commit index only (what adoption at commit amounted to), ignoring later conf entries in its log.
import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "  log_changed_from(log_.first_index());\n  if (!bootstrapped)"
assert old in s
s = s.replace(old, """  log_changed_from(log_.first_index());
  while (!conf_history_.empty() && conf_history_.back().first > log_.committed()) conf_history_.pop_back();
  conf_ = conf_history_.empty() ? snapshot_conf_ : conf_history_.back().second;
  if (!bootstrapped)""")
open(p, "w").write(s)
