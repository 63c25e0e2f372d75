#include "service/net/peer_transport.h"

#include <cstring>
#include <optional>
#include <vector>

#include "common/assert.h"
#include "common/le.h"
#include "service/net/peer_codec.h"

namespace tern::net {

using asio::ip::tcp;

struct PeerTransport::Peer {
  enum class State { idle, connecting, connected, backoff };
  Peer(asio::io_context& io, raft::NodeId i) : id(i), socket(io), retry(io) {}
  raft::NodeId id;
  std::string host;
  std::uint16_t port = 0;
  tcp::socket socket;
  asio::steady_timer retry;
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
};

struct PeerTransport::Inbound {
  explicit Inbound(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  std::vector<char> buf = std::vector<char>(64 * 1024);
  std::size_t begin = 0, end = 0;
  std::optional<raft::Message> snapshot;  // chunks received so far belong to this request
  std::string snapshot_data;
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
    : io_(io), opt_(std::move(options)), deliver_(std::move(deliver)) {
  if (opt_.backoff_min.count() <= 0) opt_.backoff_min = std::chrono::milliseconds(1);
}

PeerTransport::~PeerTransport() { stop(); }

void PeerTransport::warn(const std::string& text) {
  if (opt_.warn) opt_.warn(text);
}

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
    p->state = Peer::State::connected;
    p->backoff = opt_.backoff_min;
    ++stats_.connects;
    pump(p);
  });
}

void PeerTransport::on_broken(const std::shared_ptr<Peer>& p, const std::string& why) {
  if (p->state == Peer::State::connected || p->backoff == opt_.backoff_min)
    warn("peer " + std::to_string(p->id.value) + " (" + p->host + ":" + std::to_string(p->port) + "): " + why);
  ++p->generation;
  asio::error_code ec;
  p->socket.close(ec);
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
    {
      if (inbound_.size() >= opt_.max_inbound_connections) {
        ++stats_.rejected;
        warn("peer listener: too many inbound connections, refusing one");
      } else {
        auto in = std::make_shared<Inbound>(std::move(socket));
        asio::error_code ignored;
        in->socket.set_option(tcp::no_delay(true), ignored);
        inbound_[in.get()] = in;
        read_more(in);
      }
    }
    accept();
  });
}

void PeerTransport::read_more(const std::shared_ptr<Inbound>& in) {
  if (in->end == in->buf.size()) {  // make room: drop consumed bytes, or grow for a large frame
    if (in->begin > 0) {
      std::memmove(in->buf.data(), in->buf.data() + in->begin, in->end - in->begin);
      in->end -= in->begin;
      in->begin = 0;
    } else {
      in->buf.resize(in->buf.size() * 2);
    }
  }
  in->socket.async_read_some(asio::buffer(in->buf.data() + in->end, in->buf.size() - in->end),
                             [this, in, stopped = stopped_](const asio::error_code& ec, std::size_t n) {
                               if (*stopped) return;
                               if (ec) {
                                 inbound_.erase(in.get());
                                 return;
                               }
                               in->end += n;
                               if (!parse_frames(*in)) {
                                 ++stats_.rejected;
                                 asio::error_code ignored;
                                 in->socket.close(ignored);
                                 inbound_.erase(in.get());
                                 return;
                               }
                               read_more(in);
                             });
}

bool PeerTransport::parse_frames(Inbound& in) {
  auto reject = [&](const std::string& why) {
    asio::error_code ec;
    auto remote = in.socket.remote_endpoint(ec);
    warn("peer connection from " + (ec ? std::string("?") : remote.address().to_string()) +
         " closed: " + why);
    return false;
  };
  while (in.end - in.begin >= kFrameHeaderBytes) {
    const char* h = in.buf.data() + in.begin;
    if (le::get_u32(h) != kFrameMagic) return reject("bad frame magic (not a tern peer?)");
    std::size_t len = le::get_u32(h + 4);
    if (len > max_peer_frame_bytes) return reject("frame of " + std::to_string(len) + " bytes is over the limit");
    std::size_t need = kFrameHeaderBytes + len;
    if (in.end - in.begin < need) {
      if (need > in.buf.size()) {  // grow once to hold the whole frame
        std::memmove(in.buf.data(), in.buf.data() + in.begin, in.end - in.begin);
        in.end -= in.begin;
        in.begin = 0;
        in.buf.resize(need);
      }
      return true;
    }
    auto frame = decode_peer_frame(std::string_view(h + kFrameHeaderBytes, len));
    in.begin += need;
    if (!frame) return reject(std::string("undecodable frame: ") + codec_error_name(frame.error()));
    if (frame->cluster_id != opt_.cluster_id) return reject("frame from another cluster");
    if (frame->message.to != opt_.self) return reject("frame addressed to node " + std::to_string(frame->message.to.value));
    ++stats_.frames_received;
    if (blocked_.count(frame->message.from) != 0) {
      ++stats_.blocked;
      continue;
    }
    if (frame->chunk) {
      auto& c = *frame->chunk;
      const auto& meta = std::get<raft::InstallSnapshotRequest>(frame->message.body).meta;
      if (c.offset == 0) {
        in.snapshot = frame->message;
        in.snapshot_data.clear();
      } else if (!in.snapshot || std::get<raft::InstallSnapshotRequest>(in.snapshot->body).meta.index != meta.index ||
                 c.offset != in.snapshot_data.size()) {
        return reject("snapshot chunk out of order");
      }
      if (in.snapshot_data.size() + c.bytes.size() > opt_.max_snapshot_bytes) return reject("snapshot too large");
      in.snapshot_data += c.bytes;
      if (c.done) {
        raft::Message m = std::move(*in.snapshot);
        in.snapshot.reset();
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
  if (in.begin == in.end) in.begin = in.end = 0;
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
  for (auto& [ptr, in] : inbound_) in->socket.close(ec);
  inbound_.clear();
}

}  // namespace tern::net
