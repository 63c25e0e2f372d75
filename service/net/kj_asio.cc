#include "service/net/kj_asio.h"

#include <kj/debug.h>

#include <cstring>

namespace tern::net {

bool AsioEventPort::wait() {
  in_kj_wait_ = true;
  io_.run_one();
  in_kj_wait_ = false;
  return woken_.exchange(false);
}

void AsioEventPort::setRunnable(bool runnable) {
  if (!runnable || scheduled_) return;
  scheduled_ = true;
  asio::post(io_, [this] { run_slice(); });
}

void AsioEventPort::run_slice() {
  scheduled_ = false;
  if (in_kj_wait_) return;
  loop_->run(kMaxTurnsPerSlice);
  // More KJ work left: queue the next slice behind the Asio handlers already waiting.
  if (loop_->isRunnable()) setRunnable(true);
}

void AsioEventPort::wake() const {
  // Called from other threads (kj::Executor); asio::post is thread-safe.
  woken_.store(true, std::memory_order_release);
  asio::post(io_, [this] {
    if (in_kj_wait_) return;
    // Cross-thread events only (kj::Executor); ternd uses none, so this never runs unbounded work.
    ws_->poll();
  });
}

AsioStream::AsioStream(asio::ip::tcp::socket socket) : st_(std::make_shared<State>(std::move(socket))) {
  asio::error_code ec;
  st_->socket.non_blocking(true, ec);
  st_->socket.set_option(asio::ip::tcp::no_delay(true), ec);
}

AsioStream::~AsioStream() noexcept(false) {
  asio::error_code ec;
  st_->socket.close(ec);
}

kj::Promise<size_t> AsioStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  std::size_t done = take(out, max_bytes);
  if (done >= min_bytes) return done;
  return fill(out, min_bytes, max_bytes, done);
}

kj::Promise<void> AsioStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> one(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&one, 1));
}

kj::Promise<void> AsioStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  auto& s = *st_;
  KJ_IF_MAYBE(e, s.error) { return kj::cp(*e); }
  for (auto& p : pieces) s.write_buf.insert(s.write_buf.end(), p.begin(), p.end());
  schedule_flush();
  if (s.write_buf.size() < kWriteHighWaterBytes) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();  // capnp serializes writes: one waiter at most
  s.drained = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void AsioStream::shutdownWrite() {
  asio::error_code ec;
  st_->socket.shutdown(asio::socket_base::shutdown_send, ec);
}

void AsioStream::abort() {
  asio::error_code ec;
  st_->socket.close(ec);
}

kj::Promise<void> AsioStream::when_readable() {
  if (st_->read_pos < st_->read_end) return kj::READY_NOW;
  return when_readable_now();
}

kj::Promise<void> AsioStream::when_readable_now() {
  auto& s = *st_;
  auto paf = kj::newPromiseAndFulfiller<void>();
  s.socket.async_wait(asio::socket_base::wait_read, [f = kj::mv(paf.fulfiller)](const asio::error_code& ec) mutable {
    if (!ec) {
      f->fulfill();
    } else {
      f->reject(KJ_EXCEPTION(DISCONNECTED, "async_wait", ec.message().c_str()));
    }
  });
  return kj::mv(paf.promise);
}

void AsioStream::abortRead() {
  asio::error_code ec;
  st_->socket.shutdown(asio::socket_base::shutdown_receive, ec);
}

std::size_t AsioStream::take(kj::byte* out, std::size_t max) {
  auto& s = *st_;
  std::size_t n = std::min(max, s.read_end - s.read_pos);
  if (n > 0) {
    std::memcpy(out, s.read_buf.data() + s.read_pos, n);
    s.read_pos += n;
  }
  return n;
}

kj::Promise<size_t> AsioStream::fill(kj::byte* out, std::size_t min_bytes, std::size_t max_bytes, std::size_t done) {
  auto& s = *st_;
  // The end stays the end: Asio would not read a socket again after it reported eof (it waits
  // for an edge that never comes).
  if (s.eof) return done;
  if (s.read_buf.empty()) {
    // The first read: wait for bytes before allocating the read-ahead buffer, so a connection
    // that never sends costs none.
    return when_readable_now().then([this, out, min_bytes, max_bytes, done] {
      st_->read_buf.resize(kReadAheadBytes);
      st_->maybe_more = true;
      return fill(out, min_bytes, max_bytes, done);
    });
  }
  // Read at once while the last read filled the buffer (more is probably waiting). After a short
  // read the socket was drained: a read now would only return EAGAIN.
  for (int i = 0; i < kMaxSyncReadsPerCall && s.maybe_more; ++i) {
    asio::error_code ec;
    s.read_pos = s.read_end = 0;
    std::size_t n = s.socket.read_some(asio::buffer(s.read_buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec == asio::error::eof) {
      s.eof = true;
      return done;
    }
    if (ec) return KJ_EXCEPTION(DISCONNECTED, "read", ec.message().c_str());
    got(s, n);
    done += take(out + done, max_bytes - done);
    if (done >= min_bytes) return done;
  }
  // Let the reactor read when bytes arrive. A read, not a readiness wait: Asio keeps the socket
  // registered for reads and re-arms it (one epoll_ctl per wait) only for a bare wait.
  auto paf = kj::newPromiseAndFulfiller<std::size_t>();
  s.socket.async_read_some(asio::buffer(s.read_buf),
                           [st = st_, f = kj::mv(paf.fulfiller)](const asio::error_code& ec, std::size_t n) mutable {
                             st->read_pos = st->read_end = 0;
                             if (!ec) {
                               got(*st, n);
                               f->fulfill(kj::mv(n));
                             } else if (ec == asio::error::eof) {
                               st->eof = true;
                               f->fulfill(0);  // Asio reports a stream's end as eof, never as 0 bytes read
                             } else {
                               f->reject(KJ_EXCEPTION(DISCONNECTED, "read", ec.message().c_str()));
                             }
                           });
  return paf.promise.then([this, out, min_bytes, max_bytes, done](std::size_t n) mutable -> kj::Promise<size_t> {
    if (n == 0) return done;
    done += take(out + done, max_bytes - done);
    if (done >= min_bytes) return done;
    return fill(out, min_bytes, max_bytes, done);
  });
}

void AsioStream::got(State& s, std::size_t n) {
  s.read_end = n;
  s.bytes_read += n;
  s.maybe_more = n == s.read_buf.size();
}

void AsioStream::schedule_flush() {
  auto& s = *st_;
  if (s.flush_scheduled || s.writing) return;
  // Runs after the current KJ turn, so every frame written in this turn leaves in one send.
  s.flush_scheduled = true;
  asio::post(s.socket.get_executor(), [st = st_] {
    st->flush_scheduled = false;
    flush(st);
  });
}

void AsioStream::flush(const std::shared_ptr<State>& st) {
  auto& s = *st;
  if (s.writing || s.write_buf.empty()) return;
  std::swap(s.write_buf, s.in_flight);
  s.writing = true;
  asio::async_write(s.socket, asio::buffer(s.in_flight), [st](const asio::error_code& ec, std::size_t n) {
    auto& s = *st;
    s.bytes_written += n;
    s.writing = false;
    s.in_flight.clear();
    if (ec) {
      s.error = KJ_EXCEPTION(DISCONNECTED, "write", ec.message().c_str());
      KJ_IF_MAYBE(f, s.drained) {
        (*f)->reject(kj::cp(KJ_ASSERT_NONNULL(s.error)));
        s.drained = nullptr;
      }
      return;
    }
    if (!s.write_buf.empty()) {
      flush(st);
    } else {
      KJ_IF_MAYBE(f, s.drained) {
        (*f)->fulfill();
        s.drained = nullptr;
      }
    }
  });
}

}  // namespace tern::net
