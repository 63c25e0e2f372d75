// Model-based test through the client library against a real 3-node cluster (issue 11): random
// sequences of namespace operations by two sessions (creates of every kind, versioned sets and
// deletes, recursive deletes, transactions, reads at every consistency level, a session that
// closes and reopens) are applied through tern::Client and compared, answer by answer, with a
// small model of docs/data-model.md. RapidCheck prints the seed; RC_PARAMS="seed=N" replays.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

#include "tern/client.h"
#include "tests/cluster/client_helpers.h"

namespace tern::testing {
namespace {

using namespace std::chrono_literals;

// One cluster for every case of the property (each case works under its own root); destroyed,
// with its processes, at exit.
Cluster& cluster() {
  static Cluster c(ternd(), sm_cluster());
  static bool started = [] {
    c.start_all();
    return c.wait_for_leader(10s) != 0;
  }();
  EXPECT_TRUE(started);
  return c;
}

std::unique_ptr<Client> connect_to(Cluster& c, std::size_t first) { return Client::connect(client_options_from(c, first)); }

// --- the model ---------------------------------------------------------------------------------

struct MNode {
  std::string data;
  std::int64_t version = 0;
  int owner = -1;  // the client whose session owns this ephemeral node
  std::uint64_t next_seq = 0;
};

struct Model {
  std::map<std::string, MNode> nodes;  // every path, the case root included

  static std::string parent(const std::string& p) {
    auto at = p.rfind('/');
    return at == 0 ? "/" : p.substr(0, at);
  }
  bool has_children(const std::string& p) const {
    auto it = nodes.upper_bound(p + "/");
    return it != nodes.end() && it->first.compare(0, p.size() + 1, p + "/") == 0;
  }
  std::vector<std::string> children(const std::string& p) const {
    std::vector<std::string> out;
    for (auto it = nodes.upper_bound(p + "/"); it != nodes.end() && it->first.compare(0, p.size() + 1, p + "/") == 0; ++it)
      if (it->first.find('/', p.size() + 1) == std::string::npos) out.push_back(it->first.substr(p.size() + 1));
    return out;
  }
  Error create(const std::string& path, const std::string& data, bool ephemeral, bool sequential, int client,
               std::string* actual) {
    auto par = nodes.find(parent(path));
    if (par == nodes.end()) return Error::no_parent;
    if (par->second.owner >= 0) return Error::ephemeral_parent;
    std::string p = path;
    if (sequential) {
      char suffix[24];
      std::snprintf(suffix, sizeof suffix, "%010" PRIu64, par->second.next_seq);
      p += suffix;
    }
    if (nodes.count(p)) return Error::node_exists;
    if (sequential) ++par->second.next_seq;
    nodes[p] = MNode{data, 0, ephemeral ? client : -1, 0};
    *actual = p;
    return Error::ok;
  }
  Error set(const std::string& path, const std::string& data, std::int64_t version) {
    auto it = nodes.find(path);
    if (it == nodes.end()) return Error::no_node;
    if (version >= 0 && version != it->second.version) return Error::bad_version;
    it->second.data = data;
    ++it->second.version;
    return Error::ok;
  }
  Error remove(const std::string& path, std::int64_t version, bool recursive) {
    auto it = nodes.find(path);
    if (it == nodes.end()) return Error::no_node;
    if (version >= 0 && version != it->second.version) return Error::bad_version;
    if (!recursive && has_children(path)) return Error::not_empty;
    auto end = nodes.upper_bound(path + "/\xff");
    nodes.erase(nodes.lower_bound(path + "/"), end);
    nodes.erase(path);
    return Error::ok;
  }
  void session_ended(int client) {
    for (auto it = nodes.begin(); it != nodes.end();) it = it->second.owner == client ? nodes.erase(it) : std::next(it);
  }
};

// --- operations --------------------------------------------------------------------------------

struct Step {
  int kind = 0;  // 0 create, 1 set, 2 remove, 3 get, 4 exists, 5 children, 6 multi, 7 reopen
  int client = 0;
  int path = 0;  // index into the case's path universe
  std::string data;
  int version = 0;  // -1: any; 0: the node's current version; 1: one above; 2: one below; 3: literally 0
  bool existing = false;  // set, remove, multi: act on a node that exists (if any) instead of `path`
  bool ephemeral = false, sequential = false, recursive = false;
  int consistency = 0;
};

std::vector<std::string> universe(const std::string& root) {
  std::vector<std::string> out{root};
  for (const char* a : {"a", "b"}) {
    out.push_back(root + "/" + a);
    for (const char* b : {"x", "y"}) out.push_back(root + "/" + a + "/" + b);
  }
  return out;  // 7 paths: the root, 2 children, 4 grandchildren
}

rc::Gen<Step> gen_step() {
  return rc::gen::build<Step>(rc::gen::set(&Step::kind, rc::gen::weightedElement<int>({{6, 0}, {8, 1}, {5, 2}, {3, 3}, {2, 4}, {2, 5}, {2, 6}, {1, 7}})),
                              rc::gen::set(&Step::client, rc::gen::inRange(0, 2)),
                              rc::gen::set(&Step::path, rc::gen::weightedElement<int>({{1, 0}, {4, 1}, {4, 2}, {1, 3}, {1, 4}, {1, 5}, {1, 6}})),
                              rc::gen::set(&Step::data, rc::gen::element<std::string>("", "v", "w", "long-value")),
                              rc::gen::set(&Step::version, rc::gen::element<int>(-1, 0, 0, 1, 2, 2, 3, 3)),
                              // Versioned operations mostly on nodes that exist (with versions
                              // past 0), where expected-version mistakes show.
                              rc::gen::set(&Step::existing, rc::gen::weightedElement<bool>({{1, false}, {3, true}})),
                              rc::gen::set(&Step::ephemeral, rc::gen::weightedElement<bool>({{3, false}, {1, true}})),
                              rc::gen::set(&Step::sequential, rc::gen::weightedElement<bool>({{4, false}, {1, true}})),
                              rc::gen::set(&Step::recursive, rc::gen::arbitrary<bool>()),
                              rc::gen::set(&Step::consistency, rc::gen::inRange(0, 3)));
}

int case_number = 0;

RC_GTEST_PROP(ClientModel, AnswersThroughTheLibraryMatchTheDataModel, ()) {
  auto& c = cluster();
  const std::string root = "/m" + std::to_string(++case_number);
  auto count = *rc::gen::inRange<std::size_t>(1, 40);
  auto steps = *rc::gen::container<std::vector<Step>>(count, gen_step());
  std::unique_ptr<Client> clients[2] = {connect_to(c, 0), connect_to(c, 1)};  // start on different nodes
  RC_ASSERT(clients[0] != nullptr);
  RC_ASSERT(clients[1] != nullptr);
  RC_ASSERT(clients[0]->create(root, "").ok());
  Model m;
  m.nodes["/"] = MNode{};
  m.nodes[root] = MNode{};
  auto paths = universe(root);
  std::uint64_t last_write = 0;
  for (const auto& s : steps) {
    Client& cl = *clients[s.client];
    std::string path = paths[static_cast<std::size_t>(s.path)];
    if (s.existing && (s.kind == 1 || s.kind == 2 || s.kind == 6)) {
      // The s.path-th existing node below the root (sequential and -t names included).
      std::vector<std::string> present;
      for (auto it = m.nodes.upper_bound(root + "/"); it != m.nodes.end() && it->first.compare(0, root.size() + 1, root + "/") == 0; ++it)
        present.push_back(it->first);
      if (!present.empty()) path = present[static_cast<std::size_t>(s.path) % present.size()];
    }
    const bool is_root = path == root;
    ReadOptions ro{static_cast<Consistency>(s.consistency), last_write};
    // Expected versions relative to the model's: right, one above, one below (the off-by-one
    // mistakes a server could make), or none.
    std::int64_t current = m.nodes.count(path) ? m.nodes[path].version : 0;
    std::int64_t version = s.version < 0    ? -1
                           : s.version == 0 ? current
                           : s.version == 1 ? current + 1
                           : s.version == 2 ? std::max<std::int64_t>(current - 1, 0)
                                            : 0;
    if (ro.consistency == Consistency::serializable) ro.consistency = Consistency::at_least;  // see below
    switch (s.kind) {
      case 0: {
        if (is_root) break;  // the case root stays
        std::string actual;
        Error want = m.create(path, s.data, s.ephemeral, s.sequential, s.client, &actual);
        auto r = cl.create(path, s.data, CreateOptions{.ephemeral = s.ephemeral, .sequential = s.sequential});
        RC_ASSERT(r.error == want);
        if (r.ok()) {
          RC_ASSERT(r.path == actual);
          last_write = r.index;
        }
        break;
      }
      case 1: {
        Error want = m.set(path, s.data, version);
        auto r = cl.set(path, s.data, version);
        RC_ASSERT(r.error == want);
        if (r.ok()) {
          RC_ASSERT(r.stat.version == m.nodes[path].version);
          last_write = r.index;
        }
        break;
      }
      case 2: {
        if (is_root) break;
        Error want = m.remove(path, version, s.recursive);
        auto r = cl.remove(path, version, s.recursive);
        RC_ASSERT(r.error == want);
        if (r.ok()) last_write = r.index;
        break;
      }
      case 3: {
        // Reads follow the writes of both clients: linearizable, or at least the last write's
        // index (a serializable read could be stale, so it is checked as at_least here).
        auto r = cl.get(path, ro);
        auto it = m.nodes.find(path);
        RC_ASSERT(r.error == (it == m.nodes.end() ? Error::no_node : Error::ok));
        if (r.ok()) {
          RC_ASSERT(r.data == it->second.data);
          RC_ASSERT(r.stat.version == it->second.version);
          RC_ASSERT(r.stat.child_count == m.children(path).size());
          RC_ASSERT((r.stat.ephemeral_owner != 0) == (it->second.owner >= 0));
        }
        break;
      }
      case 4: {
        auto r = cl.exists(path, ro);
        RC_ASSERT(r.error == (m.nodes.count(path) ? Error::ok : Error::no_node));
        break;
      }
      case 5: {
        auto r = cl.children(path, {}, 0, ro);
        if (!m.nodes.count(path)) {
          RC_ASSERT(r.error == Error::no_node);
        } else {
          RC_ASSERT(r.ok());
          RC_ASSERT(r.names == m.children(path));
        }
        break;
      }
      case 6: {
        // check the version of `path`, then set it and create a sibling: all or nothing.
        if (is_root) break;
        std::string sibling = path + "-t";
        std::vector<TxnOp> ops{{TxnOp::Kind::check_version, path, "", std::max<std::int64_t>(version, 0), {}},
                               {TxnOp::Kind::set, path, s.data, -1, {}},
                               {TxnOp::Kind::create, sibling, s.data, -1, {}}};
        Model trial = m;
        std::string ignored;
        Error want = Error::ok;
        auto it = trial.nodes.find(path);
        if (it == trial.nodes.end()) want = Error::no_node;
        else if (it->second.version != ops[0].version) want = Error::bad_version;
        else if (Error e = trial.set(path, s.data, -1); e != Error::ok) want = e;
        else if (Error e2 = trial.create(sibling, s.data, false, false, s.client, &ignored); e2 != Error::ok) want = e2;
        auto r = cl.multi(ops);
        RC_ASSERT(r.error == want);
        if (r.ok()) {
          m = trial;
          last_write = r.index;
        }
        break;
      }
      case 7: {
        // The session ends cleanly; its ephemerals go in the same entry.
        clients[s.client].reset();
        m.session_ended(s.client);
        clients[s.client] = connect_to(c, static_cast<std::size_t>(s.client) + 1);
        RC_ASSERT(clients[s.client] != nullptr);
        // Renumber: the new session owns nothing.
        break;
      }
    }
  }
  // Final state: every path of the universe as the model says, read linearizably.
  for (const auto& p : paths) {
    auto r = clients[0]->get(p);
    RC_ASSERT(r.error == (m.nodes.count(p) ? Error::ok : Error::no_node));
  }
  RC_ASSERT(clients[0]->remove(root, -1, true).ok());
}

}  // namespace
}  // namespace tern::testing
