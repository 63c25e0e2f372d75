# Hole 3 (issue 10) in the whole node: the same plant as conf_from_durable_commit.py (a restarted
# node takes its membership from the entries up to its durable commit index only), run against
# the node simulator by run_node.sh.
import os, runpy, sys
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf_from_durable_commit.py"), run_name="__main__")
