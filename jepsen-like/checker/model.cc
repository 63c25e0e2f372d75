#include "jepsen-like/checker/model.h"

#include <nlohmann/json.hpp>

namespace tern::check {

std::int64_t Interner::intern(const std::string& json) {
  auto [it, fresh] = ids_.emplace(json, static_cast<std::int64_t>(texts_.size()));
  if (fresh) texts_.push_back(json);
  return it->second;
}

std::string Model::describe(const State& s, const Interner& interner) const {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + interner.text(s[i]);
  return out + "]";
}

namespace {

Result<std::vector<std::int64_t>, std::string> intern_array(const std::string& json, Interner& interner) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return fail(std::string("expected a JSON array, got ") + json);
  std::vector<std::int64_t> ids;
  ids.reserve(j.size());
  for (auto& v : j) ids.push_back(interner.intern(v.dump()));
  return ids;
}

class RegisterModel final : public Model {
 public:
  enum Kind { read, write, cas };
  const char* name() const override { return "register"; }
  State initial() const override { return {0}; }
  Result<ModelOp, std::string> prepare(const Operation& op, Interner& interner) const override {
    ModelOp m;
    m.process = op.process;
    m.indeterminate = op.status == OpStatus::info;
    if (op.f == "read") {
      m.kind = read;
      m.skip = m.indeterminate;  // an unanswered read constrains nothing
      m.out = {interner.intern(op.output)};
    } else if (op.f == "write") {
      m.kind = write;
      m.in = {interner.intern(op.input)};
    } else if (op.f == "cas") {
      m.kind = cas;
      auto pair = intern_array(op.input, interner);
      if (!pair || pair->size() != 2) return fail("cas value must be [expected, new], got " + op.input);
      m.in = *pair;
    } else {
      return fail("register has no operation \"" + op.f + "\"");
    }
    return m;
  }
  bool step(State& s, const ModelOp& op) const override {
    switch (op.kind) {
      case read: return s[0] == op.out[0];
      case write: s[0] = op.in[0]; return true;
      default:
        if (s[0] != op.in[0]) return false;
        s[0] = op.in[1];
        return true;
    }
  }
};

class ListModel final : public Model {
 public:
  enum Kind { append, write, read };
  const char* name() const override { return "list"; }
  State initial() const override { return {}; }
  Result<ModelOp, std::string> prepare(const Operation& op, Interner& interner) const override {
    ModelOp m;
    m.process = op.process;
    m.indeterminate = op.status == OpStatus::info;
    if (op.f == "append") {
      m.kind = append;
      m.in = {interner.intern(op.input)};
    } else if (op.f == "write") {
      m.kind = write;
      auto list = intern_array(op.input, interner);
      if (!list) return fail(list.error());
      m.in = *list;
    } else if (op.f == "read") {
      m.kind = read;
      m.skip = m.indeterminate;
      if (!m.skip) {
        auto list = intern_array(op.output, interner);
        if (!list) return fail(list.error());
        m.out = *list;
      }
    } else {
      return fail("list has no operation \"" + op.f + "\"");
    }
    return m;
  }
  bool step(State& s, const ModelOp& op) const override {
    switch (op.kind) {
      case append: s.push_back(op.in[0]); return true;
      case write: s = op.in; return true;
      default: return s == op.out;
    }
  }
};

// State: {holder process or -1, last fencing token or INT64_MIN}.
class MutexModel final : public Model {
 public:
  enum Kind { acquire, release };
  const char* name() const override { return "mutex"; }
  State initial() const override { return {-1, INT64_MIN}; }
  Result<ModelOp, std::string> prepare(const Operation& op, Interner&) const override {
    ModelOp m;
    m.process = op.process;
    m.indeterminate = op.status == OpStatus::info;
    if (op.f == "acquire") {
      m.kind = acquire;
      if (!m.indeterminate) {
        auto j = nlohmann::json::parse(op.output, nullptr, false);
        if (j.is_number_integer()) m.out = {j.get<std::int64_t>()};
        else if (!j.is_null()) return fail("an acquire's ok value must be a fencing token (integer) or null, got " + op.output);
      }
    } else if (op.f == "release") {
      m.kind = release;
    } else {
      return fail("mutex has no operation \"" + op.f + "\"");
    }
    return m;
  }
  bool step(State& s, const ModelOp& op) const override {
    if (op.kind == acquire) {
      if (s[0] != -1) return false;  // holders never overlap
      if (!op.out.empty()) {
        if (op.out[0] <= s[1]) return false;  // fencing tokens strictly increase
        s[1] = op.out[0];
      }
      s[0] = op.process;
      return true;
    }
    if (s[0] != op.process) return false;
    s[0] = -1;
    return true;
  }
  std::string describe(const State& s, const Interner&) const override {
    return s[0] == -1 ? "free" : "held by process " + std::to_string(s[0]);
  }
};

}  // namespace

std::unique_ptr<Model> make_model(const std::string& name) {
  if (name == "register") return std::make_unique<RegisterModel>();
  if (name == "list") return std::make_unique<ListModel>();
  if (name == "mutex") return std::make_unique<MutexModel>();
  return nullptr;
}

}  // namespace tern::check
