#pragma once
// A tiny deterministic harness for unit tests of the Raft core: cores exchange messages through
// an in-memory queue; every Ready is "persisted" instantly and recorded for inspection.
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "raft/core.h"

namespace tern::raft::test {

inline NodeId N(std::uint64_t v) { return NodeId{v}; }
inline Index I(std::uint64_t v) { return Index{v}; }
inline Term T(std::uint64_t v) { return Term{v}; }

inline Config config_for(NodeId id) {
  Config c;
  c.id = id;
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.seed = 7;
  return c;
}

struct Harness {
  std::map<NodeId, std::unique_ptr<Core>> cores;
  std::vector<Message> queue;
  std::map<NodeId, std::vector<Entry>> applied;
  std::map<NodeId, std::vector<ReadState>> reads;
  std::map<NodeId, std::vector<Placed>> placed;  // answers to commands each node forwarded
  std::map<NodeId, std::vector<Ready>> readies;  // every Ready each node produced
  std::set<std::pair<NodeId, NodeId>> cut;       // (from, to) dropped
  // The driver's job: attach the bytes of the sender's snapshot to InstallSnapshot requests.
  std::function<std::shared_ptr<const std::string>(NodeId)> snapshot_data =
      [](NodeId) { return std::make_shared<const std::string>("snapshot"); };

  explicit Harness(int n, std::function<void(Config&)> tweak = {}) {
    ConfState conf;
    for (int i = 1; i <= n; ++i) conf.voters.push_back(N(i));
    for (int i = 1; i <= n; ++i) add(N(i), conf, tweak);
  }

  Core& add(NodeId id, ConfState bootstrap, std::function<void(Config&)> tweak = {}) {
    Config c = config_for(id);
    if (tweak) tweak(c);
    RestoreState rs;
    rs.bootstrap = std::move(bootstrap);
    cores[id] = std::make_unique<Core>(c, std::move(rs));
    return *cores[id];
  }

  Core& operator[](std::uint64_t id) { return *cores.at(N(id)); }

  void process(NodeId id) {
    Core& c = *cores.at(id);
    while (c.has_ready()) {
      Ready rd = c.ready();
      for (auto& m : rd.messages) {
        if (auto* s = std::get_if<InstallSnapshotRequest>(&m.body)) s->data = snapshot_data(m.from);
        if (!cut.count({m.from, m.to}) && cores.count(m.to)) queue.push_back(m);
      }
      for (auto& e : rd.committed) applied[id].push_back(e);
      for (auto& r : rd.read_states) reads[id].push_back(r);
      // The driver's part of forwarding (thesis §6.2): propose a forwarded command, answer.
      for (auto& f : rd.forwarded) c.answer_forwarded(f.from, f.context, c.propose(f.command));
      for (auto& p : rd.placed) placed[id].push_back(p);
      c.advance(rd);
      readies[id].push_back(std::move(rd));
    }
  }

  void process_all() {
    for (auto& [id, c] : cores) process(id);
  }

  // Delivers messages until the network is quiet (bounded).
  void settle(int max_rounds = 1000) {
    process_all();
    for (int r = 0; r < max_rounds && !queue.empty(); ++r) {
      std::vector<Message> batch;
      batch.swap(queue);
      for (auto& m : batch) {
        if (cut.count({m.from, m.to})) continue;
        auto r = cores.at(m.to)->step(m);
        EXPECT_TRUE(r.has_value()) << "a correct peer's message was rejected: " << r.error().reason;
        process(m.to);
      }
    }
  }

  void tick_all(int n = 1) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, c] : cores) c->tick();
      settle();
    }
  }

  // Ticks only `id` until it is leader (others stay passive, so the outcome is deterministic).
  void elect(std::uint64_t id) {
    for (int i = 0; i < 100 && (*this)[id].role() != Role::leader; ++i) {
      (*this)[id].tick();
      settle();
    }
  }

  void isolate(NodeId id) {
    for (auto& [other, c] : cores)
      if (other != id) cut.insert({id, other}), cut.insert({other, id});
  }
  void heal() { cut.clear(); }

  Index propose(std::uint64_t leader, const std::string& data) {
    auto r = (*this)[leader].propose(data);
    EXPECT_TRUE(r.has_value());
    settle();
    return r ? *r : Index{0};
  }
};

// Messages of type M that `from` sent in its Readys.
template <class M>
std::vector<std::pair<Message, M>> sent(Harness& h, NodeId from) {
  std::vector<std::pair<Message, M>> out;
  for (auto& rd : h.readies[from])
    for (auto& m : rd.messages)
      if (auto* b = std::get_if<M>(&m.body)) out.push_back({m, *b});
  return out;
}

}  // namespace tern::raft::test
