#pragma once
// The usual std::visit helper: Overloaded{[](A&){...}, [](B&){...}} calls the lambda that fits.

namespace tern {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

}  // namespace tern
