#include "service/sm/path.h"

namespace tern::sm {

Errc validate_path(std::string_view p) {
  if (p.empty() || p.size() > max_path_bytes || p[0] != '/') return Errc::bad_path;
  if (p == "/") return Errc::ok;
  if (p.back() == '/') return Errc::bad_path;
  std::size_t start = 1;
  while (start <= p.size()) {
    std::size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view c = p.substr(start, end - start);
    if (c.empty() || c == "." || c == "..") return Errc::bad_path;
    for (char ch : c)
      if (ch == '\0') return Errc::bad_path;
    start = end + 1;
  }
  return Errc::ok;
}

std::string_view parent_of(std::string_view p) {
  std::size_t slash = p.rfind('/');
  return slash == 0 ? std::string_view("/") : p.substr(0, slash);
}

std::string_view name_of(std::string_view p) { return p.substr(p.rfind('/') + 1); }

bool in_subtree(std::string_view path, std::string_view root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.substr(0, root.size()) == root && path[root.size()] == '/');
}

}  // namespace tern::sm
