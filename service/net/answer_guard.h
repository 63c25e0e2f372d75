#pragma once
// Bounds the answers a client keeps alive on the server by never sending Finish (issue 17).
//
// Cap'n Proto 0.9 keeps every answered call in the connection's answer table — with its reply
// message — until the client sends Finish for it, and offers no API to bound that table: a
// client that reads its replies but never sends Finish grew a node by 2.3 GiB in 15 s. The flow
// limit does not help (it counts calls *without* a reply). AnswerGuard wraps the server's
// TwoPartyVatNetwork and watches the connection's messages as they pass:
//   incoming Call/Bootstrap  — a question opens (rpc.capnp questionId);
//   outgoing Return          — its reply is now held, sizeInWords of it;
//   incoming Finish          — the client released it.
// Once more than `max_answers` replies, or more than `max_answer_bytes` of them, are held
// without Finish, `exceeded` is called once and every later read fails, which makes capnp
// abort the connection and drop its whole table. Calls still in progress are not counted (the
// flow limit bounds them), so a client may pipeline as deep as the flow limit lets it.
#include <capnp/rpc-twoparty.h>
#include <kj/async.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace tern::net {

// What one connection holds; shared with the listener so it can read it (sweep, node totals).
struct HeldAnswers {
  std::size_t answers = 0;  // replied to, not yet Finished
  std::size_t bytes = 0;    // their reply messages
  bool exceeded = false;
};

class AnswerGuard final : public capnp::TwoPartyVatNetworkBase {
 public:
  AnswerGuard(capnp::TwoPartyVatNetwork& inner, std::size_t max_answers, std::size_t max_answer_bytes,
              std::function<void(const std::string&)> exceeded);
  const HeldAnswers& held() const { return *held_; }

  kj::Maybe<kj::Own<Connection>> connect(capnp::rpc::twoparty::VatId::Reader ref) override;
  kj::Promise<kj::Own<Connection>> accept() override;

  // Shared with the connection wrapper, which capnp may keep past the guard.
  struct Questions {
    std::unordered_map<std::uint32_t, std::size_t> open;  // questionId -> reply bytes (0: no reply yet)
    std::shared_ptr<HeldAnswers> held;
    std::size_t max_answers, max_answer_bytes;
    std::function<void(const std::string&)> exceeded;
    void opened(std::uint32_t id);
    void returned(std::uint32_t id, std::size_t bytes);
    void finished(std::uint32_t id);
  };

 private:
  kj::Own<Connection> wrap(kj::Own<Connection> c);

  capnp::TwoPartyVatNetwork& inner_;
  std::shared_ptr<HeldAnswers> held_ = std::make_shared<HeldAnswers>();
  std::shared_ptr<Questions> questions_;
};

}  // namespace tern::net
