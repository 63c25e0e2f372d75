#pragma once
// A Node operation's callback as a KJ promise, for the RPC servers on the loop thread (the
// admin RPC, the client API). The result waits in a holder and the promise carries only the
// holder: gcc 12 warns spuriously about tl::expected inside kj::Promise. If the caller goes away
// first, the callback still runs harmlessly (the fulfiller outlives the promise).
#include <kj/async.h>

#include <memory>
#include <optional>
#include <utility>

namespace tern::service {

// `start(cb)` begins the operation; `cb(T)` completes it. The promise yields the holder, set.
template <class T, class Start>
kj::Promise<std::shared_ptr<std::optional<T>>> await_node(Start&& start) {
  auto holder = std::make_shared<std::optional<T>>();
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<void>>>(kj::mv(paf.fulfiller));
  std::forward<Start>(start)([holder, fulfiller](T r) {
    *holder = std::move(r);
    (*fulfiller)->fulfill();
  });
  return paf.promise.then([holder]() { return holder; });
}

}  // namespace tern::service
