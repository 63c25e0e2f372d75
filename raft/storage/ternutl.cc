// ternutl: offline inspection of a tern data directory (never modifies it).
//   ternutl dump   DIR   identity, hard state, WAL segments and entries, snapshot headers
//   ternutl verify DIR   checks every checksum; exit 0 if all is well, 1 if anything is wrong
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "raft/storage/snapshot_store.h"
#include "raft/storage/wal.h"

using namespace tern::storage;

namespace {
void usage() { std::fprintf(stderr, "usage: ternutl dump|verify DATA_DIR\n"); }

std::string printable(const std::string& data) {
  std::string out;
  for (char c : data.substr(0, 40)) out += (c >= 32 && c < 127) ? c : '.';
  if (data.size() > 40) out += "...";
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "dump") != 0 && std::strcmp(argv[1], "verify") != 0)) {
    usage();
    return 2;
  }
  bool dump = std::strcmp(argv[1], "dump") == 0;
  std::string dir = argv[2];
  int problems = 0;
  {
    std::ifstream id(dir + "/IDENTITY");
    std::stringstream ss;
    ss << id.rdbuf();
    if (!id) {
      std::printf("IDENTITY: missing\n");
      ++problems;
    } else if (dump) {
      std::printf("IDENTITY:\n%s", ss.str().c_str());
    }
  }
  WalOptions o;
  o.read_only = true;
  Recovered rec;
  auto wal = Wal::open(dir + "/wal", o, &rec);
  if (!wal) {
    std::printf("WAL: ERROR %s: %s\n", errc_name(wal.error().code), wal.error().message.c_str());
    ++problems;
  } else {
    std::printf("WAL: %zu segments, entries %llu..%llu, checksums ok\n", (*wal)->segment_count(),
                rec.entries.empty() ? 0ULL : (unsigned long long)rec.entries.front().index.value,
                rec.entries.empty() ? 0ULL : (unsigned long long)rec.entries.back().index.value);
    std::printf("hard state: term %llu vote %llu commit %llu\n", (unsigned long long)rec.hard_state.term.value,
                (unsigned long long)rec.hard_state.vote.value, (unsigned long long)rec.hard_state.commit.value);
    if (rec.reset)
      std::printf("log restarted after snapshot %llu (term %llu)\n", (unsigned long long)rec.reset->first.value,
                  (unsigned long long)rec.reset->second.value);
    for (auto& n : rec.notes) std::printf("WAL: note: %s\n", n.c_str());
    if (dump)
      for (auto& e : rec.entries)
        std::printf("  entry %llu term %llu type %d %zu bytes: %s\n", (unsigned long long)e.index.value,
                    (unsigned long long)e.term.value, static_cast<int>(e.type), e.data.size(), printable(e.data).c_str());
  }
  SnapshotStore store(dir + "/snap");
  for (auto& name : posix_io().list(dir + "/snap")) {
    if (name == "snap.tmp") {
      std::printf("snapshot %s: unfinished temporary file (ignored at start)\n", name.c_str());
      continue;
    }
    auto f = store.verify(dir + "/snap/" + name);
    if (!f) {
      std::printf("snapshot %s: DAMAGED: %s\n", name.c_str(), f.error().message.c_str());
      ++problems;
      continue;
    }
    std::printf("snapshot %s: index %llu term %llu, %zu voters, %zu learners, %llu bytes%s, checksums ok\n", name.c_str(),
                (unsigned long long)f->meta.index.value, (unsigned long long)f->meta.term.value, f->meta.conf.voters.size(),
                f->meta.conf.learners.size(), (unsigned long long)f->data_size, f->compressed ? " (zstd)" : "");
  }
  std::printf("%s\n", problems ? "verify: PROBLEMS FOUND" : "verify: ok");
  return problems ? 1 : 0;
}
