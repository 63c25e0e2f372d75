#pragma once
// Errors as values: Result<T, E> where E is a per-layer `enum class` (design.md §6).
#include <tl/expected.hpp>

namespace tern {
template <class T, class E>
using Result = tl::expected<T, E>;

template <class E>
auto fail(E e) {
  return tl::make_unexpected(e);
}
}  // namespace tern
