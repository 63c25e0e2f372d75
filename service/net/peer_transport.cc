#include "service/net/peer_transport.h"

#include <cstring>
#include <optional>
#include <vector>

#include "common/assert.h"
#include "common/le.h"
#include "raft/message_check.h"
#include "service/net/peer_auth.h"
#include "service/net/peer_codec.h"

namespace tern::net {

using asio::ip::tcp;

struct PeerTransport::Peer {
  enum class State { idle, connecting, handshaking, connected, backoff };
  Peer(asio::io_context& io, raft::NodeId i) : id(i), socket(io), retry(io), deadline(io) {}
  raft::NodeId id;
  std::string host;
  std::uint16_t port = 0;
  tcp::socket socket;
  asio::steady_timer retry;
  asio::steady_timer deadline;  // bounds the handshake
  State state = State::idle;
  std::chrono::milliseconds backoff{0};
  std::uint64_t generation = 0;  // bumped on every close: stale handlers see a different value
  std::deque<std::string> queue;  // complete wire frames (header included)
  std::size_t queued_bytes = 0;
  std::vector<std::string> in_flight;
  bool writing = false;
  bool removed = false;
  // A snapshot being streamed: the request (with data) and the next offset to queue.
  std::optional<raft::Message> snapshot;
  std::size_t snapshot_offset = 0;
  // Authenticated connections: the handshake in progress, then the session key and frame counter.
  Hello hello;
  std::string hs_out;
  std::array<char, kChallengeBytes> hs_in{};
  Mac session{};
  std::uint64_t send_seq = 0;
};

struct PeerTransport::Inbound {
  using Clock = std::chrono::steady_clock;
  enum class State { hello, response, open };
  Inbound(tcp::socket s, std::uint64_t n) : socket(std::move(s)), serial(n) {}
  tcp::socket socket;
  std::uint64_t serial;  // acceptance order: the oldest pending connection is evicted first
  State state = State::open;
  raft::NodeId peer;     // the authenticated member (insecure: the first frame's sender); 0: pending
  Clock::time_point accepted = Clock::now(), last_read = accepted;
  bool closed = false;
  std::vector<char> buf;
  std::size_t begin = 0, end = 0;
  std::size_t charged = 0;  // buf.size() as counted in buffered_bytes_
  Hello hello;
  Nonce nonce_s{};
  std::string hs_out;
  Mac session{};
  std::uint64_t recv_seq = 0;
  std::optional<raft::Message> snapshot;  // chunks received so far belong to this request
  std::string snapshot_data;
  std::string remote;
};

namespace {

std::string with_header(std::string payload) {
  std::string frame;
  frame.reserve(PeerTransport::kFrameHeaderBytes + payload.size());
  le::put_u32(frame, PeerTransport::kFrameMagic);
  le::put_u32(frame, static_cast<std::uint32_t>(payload.size()));
  frame += payload;
  return frame;
}

std::optional<tcp::endpoint> resolve(asio::io_context& io, const std::string& host, std::uint16_t port) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(addr, port);
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) return std::nullopt;
  return results.begin()->endpoint();
}

}  // namespace

PeerTransport::PeerTransport(asio::io_context& io, PeerTransportOptions options, Deliver deliver)
    : io_(io), opt_(std::move(options)), deliver_(std::move(deliver)), warn_(opt_.warn) {
  if (opt_.backoff_min.count() <= 0) opt_.backoff_min = std::chrono::milliseconds(1);
  TERN_ASSERT_MSG(opt_.secret.empty() || opt_.secret.size() >= kMinSecretBytes, "peer secret too short");
}

PeerTransport::~PeerTransport() { stop(); }

void PeerTransport::warn(const std::string& text) { warn_(text); }

std::uint16_t PeerTransport::listen(const std::string& host, std::uint16_t port) {
  auto ep = resolve(io_, host, port);
  if (!ep) throw std::runtime_error("cannot resolve peer address " + host);
  acceptor_ = std::make_unique<tcp::acceptor>(io_);
  accept_retry_ = std::make_unique<asio::steady_timer>(io_);
  acceptor_->open(ep->protocol());
  acceptor_->set_option(tcp::acceptor::reuse_address(true));
  acceptor_->bind(*ep);
  acceptor_->listen();
  accept();
  sweep_timer_ = std::make_unique<asio::steady_timer>(io_);
  sweep();
  return acceptor_->local_endpoint().port();
}

void PeerTransport::set_peer(raft::NodeId id, const std::string& host, std::uint16_t port) {
  if (id == opt_.self) return;
  auto& p = peers_[id];
  if (p && p->host == host && p->port == port) return;
  if (p) {  // the address changed: start over
    p->removed = true;
    asio::error_code ec;
    p->socket.close(ec);
    p->retry.cancel();
  }
  p = std::make_shared<Peer>(io_, id);
  p->host = host;
  p->port = port;
  p->backoff = opt_.backoff_min;
}

void PeerTransport::remove_peer(raft::NodeId id) {
  // A removed member's inbound connections go with it: it is no longer allowed to speak Raft here.
  std::vector<std::shared_ptr<Inbound>> from_it;
  for (auto& [ptr, in] : inbound_)
    if (in->peer == id) from_it.push_back(in);
  for (auto& in : from_it) close_inbound(*in);
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  auto& p = *it->second;
  p.removed = true;
  asio::error_code ec;
  p.socket.close(ec);
  p.retry.cancel();
  peers_.erase(it);
}

void PeerTransport::send(const raft::Message& m) {
  if (*stopped_) return;
  if (blocked_.count(m.to) != 0) {
    ++stats_.blocked;
    return;
  }
  auto it = peers_.find(m.to);
  if (it == peers_.end()) {
    ++stats_.dropped;
    return;
  }
  auto p = it->second;
  if (p->state == Peer::State::backoff) {
    ++stats_.dropped;  // Raft resends what matters once the peer is reachable again
    return;
  }
  enqueue(*p, with_header(encode_peer_frame(opt_.cluster_id, m)));
  if (p->state == Peer::State::idle) connect(p);
  pump(p);
}

void PeerTransport::send_snapshot(const raft::Message& m) {
  if (*stopped_) return;
  if (blocked_.count(m.to) != 0) {
    ++stats_.blocked;
    return;
  }
  const auto* req = std::get_if<raft::InstallSnapshotRequest>(&m.body);
  TERN_ASSERT(req != nullptr && req->data != nullptr);
  auto it = peers_.find(m.to);
  if (it == peers_.end() || it->second->state == Peer::State::backoff) {
    ++stats_.dropped;
    return;
  }
  auto p = it->second;
  if (p->snapshot) {
    const auto& cur = std::get<raft::InstallSnapshotRequest>(p->snapshot->body);
    if (cur.meta.index == req->meta.index && p->snapshot->term == m.term) return;  // already streaming it
  }
  p->snapshot = m;
  p->snapshot_offset = 0;
  ++stats_.snapshots_sent;
  if (p->state == Peer::State::idle) connect(p);
  refill_snapshot(*p);
  pump(p);
}

void PeerTransport::enqueue(Peer& p, std::string frame) {
  if (p.queue.size() >= opt_.max_queued_frames || p.queued_bytes + frame.size() > opt_.max_queue_bytes) {
    ++stats_.dropped;
    return;
  }
  p.queued_bytes += frame.size();
  p.queue.push_back(std::move(frame));
}

void PeerTransport::refill_snapshot(Peer& p) {
  while (p.snapshot && p.queued_bytes < opt_.snapshot_low_water_bytes) {
    const auto& req = std::get<raft::InstallSnapshotRequest>(p.snapshot->body);
    const std::string& data = *req.data;
    std::size_t n = std::min(opt_.snapshot_chunk_bytes, data.size() - p.snapshot_offset);
    bool done = p.snapshot_offset + n == data.size();
    std::size_t before = stats_.dropped;
    enqueue(p, with_header(encode_snapshot_chunk(opt_.cluster_id, *p.snapshot, p.snapshot_offset,
                                                 std::string_view(data).substr(p.snapshot_offset, n), done)));
    if (stats_.dropped != before) {  // the queue is full of other traffic: give up, the core retries
      p.snapshot.reset();
      return;
    }
    p.snapshot_offset += n;
    if (done) p.snapshot.reset();
  }
}

void PeerTransport::connect(const std::shared_ptr<Peer>& p) {
  auto ep = resolve(io_, p->host, p->port);
  if (!ep) {
    on_broken(p, "cannot resolve " + p->host);
    return;
  }
  p->state = Peer::State::connecting;
  p->socket = tcp::socket(io_);
  std::uint64_t gen = p->generation;
  p->socket.async_connect(*ep, [this, p, gen, stopped = stopped_](const asio::error_code& ec) {
    if (*stopped || p->removed || gen != p->generation) return;
    if (ec) {
      on_broken(p, "connect: " + ec.message());
      return;
    }
    asio::error_code ignored;
    p->socket.set_option(tcp::no_delay(true), ignored);
    if (authenticated()) {
      handshake(p);
    } else {
      on_connected(p);
    }
  });
}

void PeerTransport::on_connected(const std::shared_ptr<Peer>& p) {
  p->state = Peer::State::connected;
  p->backoff = opt_.backoff_min;
  p->send_seq = 0;
  ++stats_.connects;
  pump(p);
}

// The connector's side of the handshake (peer_auth.h): hello, verify the acceptor's proof, send
// ours. Frames queued meanwhile wait; the whole exchange is bounded by handshake_timeout.
void PeerTransport::handshake(const std::shared_ptr<Peer>& p) {
  p->state = Peer::State::handshaking;
  p->hello = Hello{opt_.cluster_id, opt_.self, p->id, random_nonce()};
  p->hs_out = encode_hello(p->hello);
  std::uint64_t gen = p->generation;
  p->deadline.expires_after(opt_.handshake_timeout);
  p->deadline.async_wait([p, gen, stopped = stopped_](const asio::error_code& ec) {
    if (ec || *stopped || p->removed || gen != p->generation || p->state != Peer::State::handshaking) return;
    asio::error_code ignored;
    p->socket.close(ignored);  // the pending read fails and on_broken() takes over
  });
  asio::async_write(p->socket, asio::buffer(p->hs_out), [this, p, gen, stopped = stopped_](const asio::error_code& ec, std::size_t) {
    if (*stopped || p->removed || gen != p->generation) return;
    if (ec) return on_broken(p, "handshake: " + ec.message());
    asio::async_read(p->socket, asio::buffer(p->hs_in), [this, p, gen, stopped](const asio::error_code& ec2, std::size_t) {
      if (*stopped || p->removed || gen != p->generation) return;
      if (ec2) return on_broken(p, "handshake: " + ec2.message());
      const char* in = p->hs_in.data();
      Nonce nonce_s{};
      std::memcpy(nonce_s.data(), in + 4, kNonceBytes);
      Mac expect = handshake_mac(opt_.secret, Role::acceptor, p->hello, nonce_s);
      if (le::get_u32(in) != kChallengeMagic ||
          !equal_macs(expect.data(), reinterpret_cast<const std::uint8_t*>(in + 4 + kNonceBytes), kMacBytes)) {
        ++stats_.auth_failed;
        return on_broken(p, "handshake: the peer did not prove the cluster secret");
      }
      Mac mine = handshake_mac(opt_.secret, Role::connector, p->hello, nonce_s);
      p->session = handshake_mac(opt_.secret, Role::session, p->hello, nonce_s);
      p->hs_out.clear();
      le::put_u32(p->hs_out, kResponseMagic);
      p->hs_out.append(reinterpret_cast<const char*>(mine.data()), mine.size());
      asio::async_write(p->socket, asio::buffer(p->hs_out), [this, p, gen, stopped](const asio::error_code& ec3, std::size_t) {
        if (*stopped || p->removed || gen != p->generation) return;
        if (ec3) return on_broken(p, "handshake: " + ec3.message());
        p->deadline.cancel();
        on_connected(p);
      });
    });
  });
}

void PeerTransport::on_broken(const std::shared_ptr<Peer>& p, const std::string& why) {
  if (p->state == Peer::State::connected || p->backoff == opt_.backoff_min)
    warn("peer " + std::to_string(p->id.value) + " (" + p->host + ":" + std::to_string(p->port) + "): " + why);
  ++p->generation;
  asio::error_code ec;
  p->socket.close(ec);
  p->deadline.cancel();
  stats_.dropped += p->queue.size();
  p->queue.clear();
  p->queued_bytes = 0;
  p->in_flight.clear();
  p->writing = false;
  p->snapshot.reset();
  p->state = Peer::State::backoff;
  p->retry.expires_after(p->backoff);
  p->backoff = std::min(p->backoff * 2, opt_.backoff_max);
  p->retry.async_wait([this, p, stopped = stopped_](const asio::error_code& ec2) {
    if (ec2 || *stopped || p->removed) return;
    p->state = Peer::State::idle;
    connect(p);
  });
}

void PeerTransport::pump(const std::shared_ptr<Peer>& p) {
  if (p->state != Peer::State::connected || p->writing || p->queue.empty()) return;
  // Everything queued leaves in one gathered write (bounded by the queue bounds).
  p->in_flight.clear();
  while (!p->queue.empty()) {
    p->queued_bytes -= p->queue.front().size();
    p->in_flight.push_back(std::move(p->queue.front()));
    p->queue.pop_front();
    if (authenticated()) {  // the frame's MAC, bound to its position in this connection
      auto& f = p->in_flight.back();
      auto tag = frame_tag(p->session, p->send_seq++, f);
      f.append(reinterpret_cast<const char*>(tag.data()), tag.size());
    }
  }
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(p->in_flight.size());
  for (const auto& f : p->in_flight) bufs.emplace_back(f.data(), f.size());
  p->writing = true;
  std::uint64_t gen = p->generation;
  asio::async_write(p->socket, bufs, [this, p, gen, stopped = stopped_](const asio::error_code& ec, std::size_t) {
    if (*stopped || p->removed || gen != p->generation) return;
    p->writing = false;
    if (ec) {
      on_broken(p, "write: " + ec.message());
      return;
    }
    stats_.frames_sent += p->in_flight.size();
    p->in_flight.clear();
    refill_snapshot(*p);
    pump(p);
  });
}

void PeerTransport::accept() {
  acceptor_->async_accept([this, stopped = stopped_](const asio::error_code& ec, tcp::socket socket) {
    if (*stopped) return;
    if (ec) {  // e.g. out of file descriptors: back off instead of spinning on the error
      warn("peer listener: accept: " + ec.message());
      accept_retry_->expires_after(std::chrono::milliseconds(50));
      accept_retry_->async_wait([this, stopped](const asio::error_code& e) {
        if (!e && !*stopped) accept();
      });
      return;
    }
    std::size_t pending = 0;
    for (auto& [ptr, in] : inbound_) pending += in->peer == raft::NodeId{0} ? 1 : 0;
    if (pending >= opt_.max_pending_connections) evict_oldest_pending();
    auto in = std::make_shared<Inbound>(std::move(socket), next_serial_++);
    asio::error_code ignored;
    in->socket.set_option(tcp::no_delay(true), ignored);
    auto remote = in->socket.remote_endpoint(ignored);
    in->remote = ignored ? std::string("?") : remote.address().to_string() + ":" + std::to_string(remote.port());
    in->state = authenticated() ? Inbound::State::hello : Inbound::State::open;
    in->buf.resize(kInitialReadBuffer);
    in->charged = in->buf.size();
    buffered_bytes_ += in->charged;
    inbound_[in.get()] = in;
    read_more(in);
    accept();
  });
}

void PeerTransport::evict_oldest_pending() {
  // The oldest pending connection that has sent nothing (nothing read, nothing waiting in the
  // kernel) goes first: a member that has just reconnected and whose hello the loop has not read
  // yet is not idle, and while the accept loop drains a backlog of idle sockets it would become
  // "the oldest" (the admin port's /status probe failed that way, issue 17). Else the oldest.
  Inbound* oldest = nullptr;
  Inbound* oldest_silent = nullptr;
  for (auto& [ptr, in] : inbound_) {
    if (in->peer != raft::NodeId{0}) continue;
    if (oldest == nullptr || in->serial < oldest->serial) oldest = ptr;
    asio::error_code ec;
    bool silent = in->last_read == in->accepted && in->socket.available(ec) == 0 && !ec;
    if (silent && (oldest_silent == nullptr || in->serial < oldest_silent->serial)) oldest_silent = ptr;
  }
  if (oldest_silent != nullptr) oldest = oldest_silent;
  if (oldest == nullptr) return;
  ++stats_.evicted;
  ++stats_.rejected;
  warn("peer listener: " + std::to_string(opt_.max_pending_connections) +
       " unauthenticated connections pending; closing the oldest (" + oldest->remote + ")");
  close_inbound(*oldest);
}

void PeerTransport::close_inbound(Inbound& in) {
  if (in.closed) return;
  in.closed = true;
  asio::error_code ignored;
  in.socket.close(ignored);
  buffered_bytes_ -= in.charged;
  in.charged = 0;
  snapshot_bytes_ -= in.snapshot_data.size();
  in.snapshot_data = std::string();
  in.snapshot.reset();
  inbound_.erase(&in);  // pending handlers still hold the connection; they see `closed`
}

// Handshake and idle timeouts, checked a few times a second for every inbound connection.
void PeerTransport::sweep() {
  auto now = Inbound::Clock::now();
  std::vector<std::shared_ptr<Inbound>> expired;
  for (auto& [ptr, in] : inbound_) {
    bool pending = in->peer == raft::NodeId{0};
    if ((pending && now - in->accepted > opt_.handshake_timeout) || now - in->last_read > opt_.idle_timeout)
      expired.push_back(in);
  }
  for (auto& in : expired) {
    ++stats_.timed_out;
    ++stats_.rejected;
    warn("peer connection from " + in->remote + " closed: " +
         (in->peer == raft::NodeId{0} ? "no handshake (or first frame) in time" : "idle"));
    close_inbound(*in);
  }
  sweep_timer_->expires_after(std::chrono::milliseconds(200));
  sweep_timer_->async_wait([this, stopped = stopped_](const asio::error_code& ec) {
    if (!ec && !*stopped) sweep();
  });
}

void PeerTransport::read_more(const std::shared_ptr<Inbound>& in) {
  if (in->closed) return;
  if (in->end == in->buf.size()) {  // make room: drop consumed bytes, or grow for a large frame
    if (in->begin > 0) {
      std::memmove(in->buf.data(), in->buf.data() + in->begin, in->end - in->begin);
      in->end -= in->begin;
      in->begin = 0;
    } else {
      // A frame larger than the buffer is arriving (its length passed the bound in parse()):
      // double, so the buffer never holds more than twice what has actually arrived.
      constexpr std::size_t cap = kFrameHeaderBytes + max_peer_frame_bytes + kFrameTagBytes;
      std::size_t grown = std::min(in->buf.size() * 2, cap);
      if (grown == in->buf.size() || buffered_bytes_ - in->charged + grown > opt_.max_inbound_buffer_bytes) {
        ++stats_.rejected;
        warn("peer connection from " + in->remote + " closed: inbound buffer budget exhausted");
        return close_inbound(*in);
      }
      in->buf.resize(grown);
      buffered_bytes_ += grown - in->charged;
      in->charged = grown;
    }
  }
  in->socket.async_read_some(asio::buffer(in->buf.data() + in->end, in->buf.size() - in->end),
                             [this, in, stopped = stopped_](const asio::error_code& ec, std::size_t n) {
                               if (*stopped || in->closed) return;
                               if (ec) return close_inbound(*in);
                               in->end += n;
                               in->last_read = Inbound::Clock::now();
                               if (!parse(*in)) {
                                 ++stats_.rejected;
                                 return close_inbound(*in);
                               }
                               if (in->closed) return;  // e.g. delivery removed this member
                               if (in->begin == in->end) {
                                 in->begin = in->end = 0;
                                 if (in->buf.size() > kInitialReadBuffer) {  // a large frame is done: give it back
                                   std::vector<char>(kInitialReadBuffer).swap(in->buf);
                                   buffered_bytes_ -= in->charged - in->buf.size();
                                   in->charged = in->buf.size();
                                 }
                               }
                               read_more(in);
                             });
}

// The acceptor's side of the handshake (peer_auth.h). Nothing but these fixed-size messages is
// read until the connector has proven the cluster secret.
bool PeerTransport::parse_handshake(Inbound& in) {
  auto refuse = [&](const std::string& why) {
    ++stats_.auth_failed;
    warn("peer connection from " + in.remote + " refused at the handshake: " + why);
    return false;
  };
  if (in.state == Inbound::State::hello) {
    // Anything but a hello (a raw frame, HTTP, noise) is refused on its first four bytes.
    if (in.end - in.begin >= 4 && le::get_u32(in.buf.data() + in.begin) != kHelloMagic) return refuse("not a handshake");
    if (in.end - in.begin < kHelloBytes) return true;
    auto h = decode_hello(std::string_view(in.buf.data() + in.begin, kHelloBytes));
    in.begin += kHelloBytes;
    if (!h) return refuse(h.error());
    if (h->cluster_id != opt_.cluster_id) return refuse("another cluster");
    if (h->to != opt_.self) return refuse("addressed to node " + std::to_string(h->to.value));
    if (h->from == opt_.self || peers_.count(h->from) == 0) return refuse("node " + std::to_string(h->from.value) + " is not a member");
    in.hello = *h;
    in.nonce_s = random_nonce();
    Mac proof = handshake_mac(opt_.secret, Role::acceptor, in.hello, in.nonce_s);
    in.hs_out.clear();
    le::put_u32(in.hs_out, kChallengeMagic);
    in.hs_out.append(reinterpret_cast<const char*>(in.nonce_s.data()), kNonceBytes);
    in.hs_out.append(reinterpret_cast<const char*>(proof.data()), kMacBytes);
    asio::async_write(in.socket, asio::buffer(in.hs_out), [](const asio::error_code&, std::size_t) {});
    in.state = Inbound::State::response;
  }
  if (in.state == Inbound::State::response) {
    if (in.end - in.begin < kResponseBytes) return true;
    const char* r = in.buf.data() + in.begin;
    in.begin += kResponseBytes;
    Mac expect = handshake_mac(opt_.secret, Role::connector, in.hello, in.nonce_s);
    if (le::get_u32(r) != kResponseMagic || !equal_macs(expect.data(), reinterpret_cast<const std::uint8_t*>(r + 4), kMacBytes))
      return refuse("node " + std::to_string(in.hello.from.value) + " did not prove the cluster secret");
    in.session = handshake_mac(opt_.secret, Role::session, in.hello, in.nonce_s);
    in.state = Inbound::State::open;
    // One authenticated connection per member: a reconnecting member replaces its old one.
    std::vector<std::shared_ptr<Inbound>> old;
    for (auto& [ptr, other] : inbound_)
      if (other->peer == in.hello.from && ptr != &in) old.push_back(other);
    for (auto& o : old) close_inbound(*o);
    in.peer = in.hello.from;
    ++stats_.handshakes;
  }
  return true;
}

bool PeerTransport::parse(Inbound& in) {
  auto reject = [&](const std::string& why) {
    warn("peer connection from " + in.remote + " closed: " + why);
    return false;
  };
  if (in.state != Inbound::State::open) {
    if (!parse_handshake(in)) return false;
    if (in.state != Inbound::State::open) return true;
  }
  const std::size_t tag_bytes = authenticated() ? kFrameTagBytes : 0;
  while (!in.closed && in.end - in.begin >= kFrameHeaderBytes) {
    const char* h = in.buf.data() + in.begin;
    // Cheap checks first: magic and length, before a byte of the body is buffered or decoded.
    if (le::get_u32(h) != kFrameMagic) {
      ++stats_.malformed;
      return reject("bad frame magic (not a tern peer?)");
    }
    std::size_t len = le::get_u32(h + 4);
    if (len > max_peer_frame_bytes) {
      ++stats_.malformed;
      return reject("frame of " + std::to_string(len) + " bytes is over the limit");
    }
    std::size_t need = kFrameHeaderBytes + len + tag_bytes;
    if (in.end - in.begin < need) return true;  // read_more() grows the buffer as bytes arrive
    in.begin += need;
    if (tag_bytes > 0) {
      auto tag = frame_tag(in.session, in.recv_seq++, std::string_view(h, kFrameHeaderBytes + len));
      if (!equal_macs(tag.data(), reinterpret_cast<const std::uint8_t*>(h + kFrameHeaderBytes + len), kFrameTagBytes)) {
        ++stats_.auth_failed;
        return reject("frame MAC does not verify");
      }
    }
    // Insecure mode: the first frame names the sender, and it must be a member; after that every
    // frame must come from it (an authenticated connection is bound at the handshake).
    ExpectedHeader expect{opt_.cluster_id, opt_.self, in.peer};
    auto frame = decode_peer_frame(std::string_view(h + kFrameHeaderBytes, len), &expect);
    if (!frame) {
      ++stats_.malformed;
      return reject(std::string("frame refused: ") + codec_error_name(frame.error()));
    }
    // The structural check of the core (raft/message_check.h): a malformed message closes the
    // connection here, counted, instead of reaching the core.
    if (auto why = raft::check_message(frame->message)) {
      ++stats_.malformed;
      return reject("malformed message: " + *why);
    }
    raft::NodeId from = frame->message.from;
    if (in.peer == raft::NodeId{0}) {
      if (from == opt_.self || peers_.count(from) == 0) {
        ++stats_.malformed;
        return reject("frame from node " + std::to_string(from.value) + ", not a member");
      }
      std::size_t identified = 0;
      for (auto& [ptr, other] : inbound_) identified += other->peer != raft::NodeId{0} ? 1 : 0;
      if (identified >= opt_.max_inbound_connections) return reject("too many peer connections");
      in.peer = from;
    }
    ++stats_.frames_received;
    if (blocked_.count(from) != 0) {
      ++stats_.blocked;
      continue;
    }
    if (frame->chunk) {
      auto& c = *frame->chunk;
      const auto& meta = std::get<raft::InstallSnapshotRequest>(frame->message.body).meta;
      if (c.offset == 0) {
        in.snapshot = frame->message;
        snapshot_bytes_ -= in.snapshot_data.size();
        in.snapshot_data.clear();
      } else if (!in.snapshot || std::get<raft::InstallSnapshotRequest>(in.snapshot->body).meta.index != meta.index ||
                 c.offset != in.snapshot_data.size()) {
        ++stats_.malformed;
        return reject("snapshot chunk out of order");
      }
      if (snapshot_bytes_ + c.bytes.size() > opt_.max_snapshot_bytes) return reject("snapshot reassembly over the node's limit");
      in.snapshot_data += c.bytes;
      snapshot_bytes_ += c.bytes.size();
      if (c.done) {
        raft::Message m = std::move(*in.snapshot);
        in.snapshot.reset();
        snapshot_bytes_ -= in.snapshot_data.size();
        std::get<raft::InstallSnapshotRequest>(m.body).data =
            std::make_shared<const std::string>(std::move(in.snapshot_data));
        in.snapshot_data = std::string();
        ++stats_.snapshots_received;
        deliver_(std::move(m));
      }
      continue;
    }
    if (std::holds_alternative<raft::InstallSnapshotRequest>(frame->message.body)) ++stats_.snapshots_received;
    deliver_(std::move(frame->message));
  }
  return true;
}

void PeerTransport::stop() {
  if (*stopped_) return;
  *stopped_ = true;
  asio::error_code ec;
  if (acceptor_) acceptor_->close(ec);
  if (accept_retry_) accept_retry_->cancel();
  for (auto& [id, p] : peers_) {
    p->removed = true;
    p->socket.close(ec);
    p->retry.cancel();
  }
  peers_.clear();
  if (sweep_timer_) sweep_timer_->cancel();
  std::vector<std::shared_ptr<Inbound>> all;
  for (auto& [ptr, in] : inbound_) all.push_back(in);
  for (auto& in : all) close_inbound(*in);
}

}  // namespace tern::net
