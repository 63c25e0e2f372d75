#include "service/net/answer_guard.h"

#include <capnp/rpc.capnp.h>

namespace tern::net {

using capnp::IncomingRpcMessage;
using capnp::OutgoingRpcMessage;
using Connection = capnp::TwoPartyVatNetworkBase::Connection;

void AnswerGuard::Questions::opened(std::uint32_t id) { open.emplace(id, 0); }

void AnswerGuard::Questions::returned(std::uint32_t id, std::size_t bytes) {
  auto it = open.find(id);
  if (it == open.end() || it->second != 0) return;  // already Finished (cancelled), or a second Return
  it->second = bytes;
  ++held->answers;
  held->bytes += bytes;
  if (held->exceeded || (held->answers <= max_answers && held->bytes <= max_answer_bytes)) return;
  held->exceeded = true;
  exceeded(std::to_string(held->answers) + " replies (" + std::to_string(held->bytes) +
           " bytes) never Finished by the client; limits " + std::to_string(max_answers) + " and " +
           std::to_string(max_answer_bytes));
}

void AnswerGuard::Questions::finished(std::uint32_t id) {
  auto it = open.find(id);
  if (it == open.end()) return;  // capnp itself refuses a Finish for an unknown question
  if (it->second != 0) {
    --held->answers;
    held->bytes -= it->second;
  }
  open.erase(it);
}

namespace {

// A Return leaving the server: the reply the client must now Finish.
class WatchedOutgoing final : public OutgoingRpcMessage {
 public:
  WatchedOutgoing(kj::Own<OutgoingRpcMessage> inner, std::shared_ptr<AnswerGuard::Questions> q)
      : inner_(kj::mv(inner)), q_(std::move(q)) {}
  capnp::AnyPointer::Builder getBody() override { return inner_->getBody(); }
  void setFds(kj::Array<int> fds) override { inner_->setFds(kj::mv(fds)); }
  size_t sizeInWords() override { return inner_->sizeInWords(); }
  void send() override {
    auto m = inner_->getBody().getAs<capnp::rpc::Message>();
    if (m.isReturn()) q_->returned(m.getReturn().getAnswerId(), std::max<std::size_t>(1, inner_->sizeInWords() * sizeof(capnp::word)));
    inner_->send();
  }

 private:
  kj::Own<OutgoingRpcMessage> inner_;
  std::shared_ptr<AnswerGuard::Questions> q_;
};

class WatchedConnection final : public Connection {
 public:
  WatchedConnection(kj::Own<Connection> inner, std::shared_ptr<AnswerGuard::Questions> q)
      : inner_(kj::mv(inner)), q_(std::move(q)) {}

  kj::Own<capnp::RpcFlowController> newStream() override { return inner_->newStream(); }
  capnp::rpc::twoparty::VatId::Reader getPeerVatId() override { return inner_->getPeerVatId(); }
  kj::Own<OutgoingRpcMessage> newOutgoingMessage(uint words) override {
    return kj::heap<WatchedOutgoing>(inner_->newOutgoingMessage(words), q_);
  }
  kj::Promise<kj::Maybe<kj::Own<IncomingRpcMessage>>> receiveIncomingMessage() override {
    // Over the limit: read nothing more; capnp aborts the connection and drops its answers.
    if (q_->held->exceeded) return KJ_EXCEPTION(DISCONNECTED, "too many replies never Finished");
    return inner_->receiveIncomingMessage().then([q = q_](kj::Maybe<kj::Own<IncomingRpcMessage>>&& in) {
      KJ_IF_MAYBE(msg, in) {
        auto m = (*msg)->getBody().getAs<capnp::rpc::Message>();
        switch (m.which()) {
          case capnp::rpc::Message::CALL: q->opened(m.getCall().getQuestionId()); break;
          case capnp::rpc::Message::BOOTSTRAP: q->opened(m.getBootstrap().getQuestionId()); break;
          case capnp::rpc::Message::FINISH: q->finished(m.getFinish().getQuestionId()); break;
          default: break;
        }
      }
      return kj::mv(in);
    });
  }
  kj::Promise<void> shutdown() override { return inner_->shutdown(); }

 private:
  kj::Own<Connection> inner_;
  std::shared_ptr<AnswerGuard::Questions> q_;
};

}  // namespace

AnswerGuard::AnswerGuard(capnp::TwoPartyVatNetwork& inner, std::size_t max_answers, std::size_t max_answer_bytes,
                         std::function<void(const std::string&)> exceeded)
    : inner_(inner),
      questions_(std::make_shared<Questions>(Questions{{}, held_, max_answers, max_answer_bytes, std::move(exceeded)})) {}

kj::Own<Connection> AnswerGuard::wrap(kj::Own<Connection> c) { return kj::heap<WatchedConnection>(kj::mv(c), questions_); }

kj::Maybe<kj::Own<Connection>> AnswerGuard::connect(capnp::rpc::twoparty::VatId::Reader ref) {
  KJ_IF_MAYBE(c, inner_.connect(ref)) { return wrap(kj::mv(*c)); }
  return nullptr;
}

kj::Promise<kj::Own<Connection>> AnswerGuard::accept() {
  return inner_.accept().then([this](kj::Own<Connection>&& c) { return wrap(kj::mv(c)); });
}

}  // namespace tern::net
