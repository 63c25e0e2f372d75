// ternutl: offline inspection of a tern data directory (never modifies it).
//   ternutl dump   DIR   identity, hard state, WAL segments and entries, snapshot headers, verdict
//   ternutl verify DIR   applies the node's own recovery rules (storage::recover_storage,
//                        read-only) and says what the node will do:
//                          exit 0  the node starts (possibly after repairing a power cut's traces)
//                          exit 1  the node refuses to start (the reason is printed)
//                          exit 3  the node starts but skips damaged files (real corruption)
#include <cstdio>
#include <cstring>

#include "raft/storage/recovery.h"

using namespace tern::storage;

namespace {
void usage() { std::fprintf(stderr, "usage: ternutl dump|verify DATA_DIR\n"); }

std::string printable(const std::string& data) {
  std::string out;
  for (char c : data.substr(0, 40)) out += (c >= 32 && c < 127) ? c : '.';
  if (data.size() > 40) out += "...";
  return out;
}

using ull = unsigned long long;

void dump(const std::string& dir) {
  auto id = read_identity(dir, posix_io());
  if (!id) std::printf("IDENTITY: ERROR %s\n", id.error().message.c_str());
  else if (!*id) std::printf("IDENTITY: absent\n");
  else std::printf("IDENTITY: cluster_id %llu node_id %llu\n", (ull)(*id)->cluster_id, (ull)(*id)->node_id);
  WalOptions o;
  o.read_only = true;
  Recovered rec;
  auto wal = Wal::open(dir + "/wal", o, &rec);
  if (!wal) {
    std::printf("WAL: ERROR %s: %s\n", errc_name(wal.error().code), wal.error().message.c_str());
  } else {
    std::printf("WAL: %zu segments, entries %llu..%llu\n", (*wal)->segment_count(),
                rec.entries.empty() ? 0ULL : (ull)rec.entries.front().index.value,
                rec.entries.empty() ? 0ULL : (ull)rec.entries.back().index.value);
    if (rec.reset)
      std::printf("log restarted after snapshot %llu (term %llu)\n", (ull)rec.reset->first.value, (ull)rec.reset->second.value);
    for (auto& e : rec.entries)
      std::printf("  entry %llu term %llu type %d %zu bytes: %s\n", (ull)e.index.value, (ull)e.term.value, static_cast<int>(e.type),
                  e.data.size(), printable(e.data).c_str());
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
      continue;
    }
    std::printf("snapshot %s: index %llu term %llu, %zu voters, %zu learners, %llu bytes%s, checksums ok\n", name.c_str(),
                (ull)f->meta.index.value, (ull)f->meta.term.value, f->meta.conf.voters.size(), f->meta.conf.learners.size(),
                (ull)f->data_size, f->compressed ? " (zstd)" : "");
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "dump") != 0 && std::strcmp(argv[1], "verify") != 0)) {
    usage();
    return 2;
  }
  std::string dir = argv[2];
  if (std::strcmp(argv[1], "dump") == 0) dump(dir);
  RecoveryOptions o;
  o.read_only = true;
  auto r = recover_storage(dir, o);
  if (!r) {
    std::printf("verify: the node will REFUSE to start: %s: %s\n", errc_name(r.error().code), r.error().message.c_str());
    return 1;
  }
  if (r->identity) std::printf("identity: cluster_id %llu node_id %llu\n", (ull)r->identity->cluster_id, (ull)r->identity->node_id);
  if (r->snapshot)
    std::printf("snapshot: index %llu term %llu (%s)\n", (ull)r->snapshot->meta.index.value, (ull)r->snapshot->meta.term.value,
                r->snapshot->path.c_str());
  std::printf("hard state: term %llu vote %llu commit %llu\n", (ull)r->hard_state.term.value, (ull)r->hard_state.vote.value,
              (ull)r->hard_state.commit.value);
  std::printf("log: %zu entries after the snapshot%s", r->entries.size(), r->entries.empty() ? "\n" : "");
  if (!r->entries.empty())
    std::printf(" (%llu..%llu)\n", (ull)r->entries.front().index.value, (ull)r->entries.back().index.value);
  for (auto& s : r->repairs) std::printf("repair: %s\n", s.c_str());
  for (auto& s : r->damage) std::printf("DAMAGED (skipped by the node): %s\n", s.c_str());
  if (!r->damage.empty()) {
    std::printf("verify: the node will start, skipping damaged files\n");
    return 3;
  }
  std::printf("verify: ok: the node will start%s\n", r->repairs.empty() ? "" : " after the repairs listed");
  return 0;
}
