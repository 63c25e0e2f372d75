#pragma once
// Path rules (ZooKeeper's, made strict): absolute, '/'-separated, no empty component, no trailing
// slash (except the root "/"), no NUL, no "." or ".." component, at most max_path_bytes.
#include <string>
#include <string_view>

#include "service/sm/types.h"

namespace tern::sm {

inline constexpr std::size_t max_path_bytes = 4096;

Errc validate_path(std::string_view path);
// "/a/b" -> "/a"; "/a" -> "/"; requires a valid, non-root path.
std::string_view parent_of(std::string_view path);
std::string_view name_of(std::string_view path);
// Is `path` equal to `root` or below it?
bool in_subtree(std::string_view path, std::string_view root);

}  // namespace tern::sm
