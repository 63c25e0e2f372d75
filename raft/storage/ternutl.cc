// ternutl: offline tools for a tern data directory.
//   ternutl dump   DIR   identity, hard state, WAL segments and entries, snapshot headers, verdict
//   ternutl verify DIR   applies the node's own recovery rules (storage::recover_storage,
//                        read-only) and says what the node will do:
//                          exit 0  the node starts (possibly after repairing a power cut's traces)
//                          exit 1  the node refuses to start (the reason is printed)
//                          exit 3  the node starts but skips damaged files (real corruption)
//   ternutl restore FILE DIR --id N [--cluster-name NAME]
//                        a new data directory DIR (absent or empty) for a one-node cluster of
//                        member N from a snapshot file (`tern snapshot save`), then verify's
//                        verdict on it: exit 0 ok, 1 refused (FILE damaged, DIR not empty...),
//                        2 usage. dump and verify never modify a directory; restore writes only DIR.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/cluster_id.h"
#include "raft/storage/recovery.h"

using namespace tern::storage;

namespace {
void usage() {
  std::fprintf(stderr,
               "usage: ternutl dump|verify DATA_DIR\n"
               "       ternutl restore SNAPSHOT_FILE DATA_DIR --id N [--cluster-name NAME]\n");
}

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
// restore: the snapshot becomes the whole state of a new one-node cluster. Its membership is
// rewritten to {id} (the old members are not part of the new cluster; members are added back
// with `tern member add`), the WAL gets a reset record after it with a hard state at its term
// and index (what a follower writes after installing a snapshot, docs/storage-format.md), and
// every step is durable before the next (DataDir, SnapshotStore and Wal do the syncing).
int restore(const std::string& file, const std::string& dir, std::uint64_t id, const std::string& cluster_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    std::printf("restore: %s is not empty: restore only into a new data directory\n", dir.c_str());
    return 1;
  }
  SnapshotStore reader(".");
  auto f = reader.verify(file);
  if (!f) {
    std::printf("restore: %s does not verify: %s\n", file.c_str(), f.error().message.c_str());
    return 1;
  }
  auto data = reader.read_all(*f);
  if (!data) {
    std::printf("restore: %s: %s\n", file.c_str(), data.error().message.c_str());
    return 1;
  }
  auto d = DataDir::open(dir, tern::cluster_id_of_name(cluster_name), id);
  if (!d) {
    std::printf("restore: %s: %s\n", dir.c_str(), d.error().message.c_str());
    return 1;
  }
  tern::raft::SnapshotMeta meta = f->meta;
  meta.conf = tern::raft::ConfState{};
  meta.conf.voters.push_back(tern::raft::NodeId{id});
  SnapshotStore store((*d)->snap_dir());
  if (auto s = store.save(meta, *data, f->compressed); !s) {
    std::printf("restore: %s: %s\n", dir.c_str(), s.error().message.c_str());
    return 1;
  }
  Recovered rec;
  auto wal = Wal::open((*d)->wal_dir(), WalOptions{}, &rec);
  if (!wal) {
    std::printf("restore: %s: %s\n", (*d)->wal_dir().c_str(), wal.error().message.c_str());
    return 1;
  }
  WriteBatch b;
  b.reset_to = std::make_pair(meta.index, meta.term);
  b.hard_state = tern::raft::HardState{meta.term, tern::raft::NodeId{}, meta.index};
  if (auto w = (*wal)->write(b); !w) {
    std::printf("restore: %s: %s\n", (*d)->wal_dir().c_str(), w.error().message.c_str());
    return 1;
  }
  std::printf("restored the snapshot at index %llu term %llu (%zu bytes of state) into %s: a one-node cluster of member %llu "
              "(cluster name '%s')\n",
              (ull)meta.index.value, (ull)meta.term.value, data->size(), dir.c_str(), (ull)id, cluster_name.c_str());
  std::printf("start it: ternd --id %llu --data-dir %s --initial-cluster %llu=HOST:PORT --cluster-name '%s' ...\n", (ull)id,
              dir.c_str(), (ull)id, cluster_name.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  if (argc >= 2 && std::strcmp(argv[1], "restore") == 0) {
    std::vector<std::string> pos;
    std::uint64_t id = 0;
    std::string name = "tern-cluster";  // ternd's default --cluster-name
    for (int i = 2; i < argc; ++i) {
      std::string a = argv[i];
      if ((a == "--id" || a == "--cluster-name") && i + 1 < argc) {
        std::string v = argv[++i];
        if (a == "--cluster-name") {
          name = v;
          continue;
        }
        char* end = nullptr;
        id = std::strtoull(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0') id = 0;
      } else {
        pos.push_back(a);
      }
    }
    if (pos.size() != 2 || id == 0) {
      usage();
      return 2;
    }
    if (int rc = restore(pos[0], pos[1], id, name); rc != 0) return rc;
    dir = pos[1];  // verified below, as the node will recover it
  } else if (argc != 3 || (std::strcmp(argv[1], "dump") != 0 && std::strcmp(argv[1], "verify") != 0)) {
    usage();
    return 2;
  } else {
    dir = argv[2];
  }
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
