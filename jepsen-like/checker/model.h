#pragma once
// Models of the objects whose histories the checker verifies. Each model turns operations into
// a compact form (values interned to integers) and steps a small integer-vector state. Adding a
// model is one small class plus a line in make_model().
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "jepsen-like/checker/history.h"

namespace tern::check {

using State = std::vector<std::int64_t>;

// Interns canonical JSON values to small integers; "null" is always 0.
class Interner {
 public:
  Interner() { intern("null"); }
  std::int64_t intern(const std::string& json);
  const std::string& text(std::int64_t id) const { return texts_.at(static_cast<std::size_t>(id)); }

 private:
  std::unordered_map<std::string, std::int64_t> ids_;
  std::vector<std::string> texts_;
};

struct ModelOp {
  int kind = 0;                 // model-specific
  std::vector<std::int64_t> in;   // interned input values
  std::vector<std::int64_t> out;  // interned observed output (ok operations)
  bool indeterminate = false;   // info: may or may not take effect
  std::int64_t process = 0;
  bool skip = false;            // no effect and no observation (e.g. an indeterminate read)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const char* name() const = 0;
  virtual Result<ModelOp, std::string> prepare(const Operation& op, Interner& interner) const = 0;
  virtual State initial() const = 0;
  // Applies op to s. False if op, with what it observed, cannot happen in state s.
  virtual bool step(State& s, const ModelOp& op) const = 0;
  virtual std::string describe(const State& s, const Interner& interner) const;
};

// register: read / write / cas [expected, new]; initially missing (read as null).
// list:     append v / write [values] / read -> [values]; initially empty.
// mutex:    acquire (ok value: an optional fencing token) / release; holders never overlap and
//           tokens strictly increase.
std::unique_ptr<Model> make_model(const std::string& name);

}  // namespace tern::check
