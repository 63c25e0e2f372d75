#include "client/cli/output.h"

#include <algorithm>
#include <cstdio>

namespace tern::cli {

int exit_code(Error e) {
  switch (e) {
    case Error::ok: return exit_ok;
    case Error::bad_path:
    case Error::too_large:
    case Error::bad_request:
    case Error::ephemeral_parent: return exit_usage;
    case Error::no_node:
    case Error::no_parent:
    case Error::unknown_lease: return exit_not_found;
    case Error::node_exists:
    case Error::not_empty:
    case Error::bad_version:
    case Error::check_failed:
    case Error::not_held: return exit_conflict;
    case Error::busy: return exit_not_acquired;
    case Error::unknown_session:
    case Error::not_leader:
    case Error::unknown_outcome:
    case Error::unavailable:
    case Error::timed_out:
    case Error::slow_down:
    case Error::disconnected: return exit_unavailable;
    default: return exit_error;
  }
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0, n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    std::uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (std::size_t k = 1; k < len; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // Overlong forms, surrogates and beyond U+10FFFF are not UTF-8 (RFC 3629).
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

bool base64_decode(const std::string& text, std::string& out) {
  out.clear();
  if (text.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    const char* p = std::find(kAlphabet, kAlphabet + 64, c);
    return p == kAlphabet + 64 ? -1 : static_cast<int>(p - kAlphabet);
  };
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if (pad > 0 || (v[k] = val(c)) < 0) {
        return false;
      }
    }
    std::uint32_t w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>((w >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((w >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(w & 0xff);
  }
  return true;
}

void put_value(Json& j, const std::string& bytes, const char* key) {
  if (valid_utf8(bytes)) j[key] = bytes;
  else j[std::string(key) + "_base64"] = base64_encode(bytes);
}

Json stat_json(const Stat& s) {
  Json j;
  j["version"] = s.version;
  j["created_index"] = s.created_index;
  j["modified_index"] = s.modified_index;
  j["child_index"] = s.child_index;
  j["child_version"] = s.child_version;
  j["ephemeral_owner"] = s.ephemeral_owner;
  j["lease"] = s.lease;
  j["data_length"] = s.data_length;
  j["child_count"] = s.child_count;
  j["ctime_ms"] = s.ctime_ms;
  j["mtime_ms"] = s.mtime_ms;
  return j;
}

std::string printable(const std::string& bytes) {
  bool ok = valid_utf8(bytes) && std::none_of(bytes.begin(), bytes.end(), [](char c) {
              auto u = static_cast<unsigned char>(c);
              return u < 0x20 && c != '\t';
            });
  return ok ? bytes : "<" + std::to_string(bytes.size()) + " bytes>";
}

std::string cell(const Json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return printable(v.get<std::string>());
  return v.dump();
}

void print_table(const std::vector<std::string>& columns, const std::vector<std::vector<std::string>>& cells) {
  std::vector<std::size_t> width(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = columns[c].size();
    for (const auto& row : cells) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out += std::string(width[c] - row[c].size() + 2, ' ');
    }
    std::printf("%s\n", out.c_str());
  };
  std::vector<std::string> header;
  for (const auto& c : columns) {
    std::string u = c;
    std::transform(u.begin(), u.end(), u.begin(), [](unsigned char x) { return static_cast<char>(std::toupper(x)); });
    header.push_back(u);
  }
  line(header);
  for (const auto& row : cells) line(row);
}

bool emit_structured(Format f, const std::vector<Json>& rows, const std::vector<std::string>& columns, bool single) {
  switch (f) {
    case Format::json:
      std::printf("%s\n", (single && rows.size() == 1 ? rows[0] : Json(rows)).dump(2).c_str());
      return true;
    case Format::ndjson:
      for (const auto& r : rows) std::printf("%s\n", r.dump().c_str());
      return true;
    case Format::table: {
      std::vector<std::vector<std::string>> cells;
      for (const auto& r : rows) {
        std::vector<std::string> row;
        for (const auto& c : columns) {
          if (r.contains(c)) row.push_back(cell(r[c]));
          else if (r.contains(c + "_base64")) row.push_back("<binary>");
          else row.push_back("");
        }
        cells.push_back(std::move(row));
      }
      print_table(columns, cells);
      return true;
    }
    default: return false;
  }
}

}  // namespace tern::cli
