import sys; p = sys.argv[1] + "/raft/core.cc"; s = open(p).read()
old = "  std::uint64_t confirmed = acks.empty() ? 0 : quorum_index(std::move(acks)).value;"
assert old in s; open(p, "w").write(s.replace(old, "  std::uint64_t confirmed = read_seq_; (void)acks;"))
