#pragma once
// Little-endian binary writer/reader shared by the command and snapshot encodings.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/le.h"

namespace tern::sm {

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() {  // leaves the writer empty, ready for more
    std::string s = std::move(out_);
    out_.clear();
    return s;
  }
  const std::string& bytes() const { return out_; }

 private:
  void put(std::uint64_t v, int n) { le::put(out_, v, n); }
  std::string out_;
};

// Every read checks bounds; after the first failure ok() is false and values are zero.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
  std::uint64_t u64() { return get(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(get(8)); }
  std::string str() {
    std::uint32_t n = u32();
    if (!ok_ || n > in_.size()) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(0, n));
    in_.remove_prefix(n);
    return s;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }
  std::size_t left() const { return in_.size(); }

 private:
  std::uint64_t get(int n) {
    if (!ok_ || in_.size() < static_cast<std::size_t>(n)) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = le::get(in_.data(), n);
    in_.remove_prefix(static_cast<std::size_t>(n));
    return v;
  }
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace tern::sm
