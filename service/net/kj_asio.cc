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
  auto& s = *st_;
  if (s.read_pos < s.read_end) return kj::READY_NOW;
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
  if (s.read_buf.empty()) s.read_buf.resize(kReadAheadBytes);
  for (int i = 0; i < kMaxSyncReadsPerCall; ++i) {
    asio::error_code ec;
    s.read_pos = s.read_end = 0;
    std::size_t n = s.socket.read_some(asio::buffer(s.read_buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec == asio::error::eof) return done;
    if (ec) return KJ_EXCEPTION(DISCONNECTED, "read", ec.message().c_str());
    s.read_end = n;
    s.bytes_read += n;
    done += take(out + done, max_bytes - done);
    if (done >= min_bytes) return done;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  s.socket.async_wait(asio::socket_base::wait_read,
                      [f = kj::mv(paf.fulfiller)](const asio::error_code& ec) mutable {
                        if (!ec) {
                          f->fulfill();
                        } else {
                          f->reject(KJ_EXCEPTION(DISCONNECTED, "async_wait", ec.message().c_str()));
                        }
                      });
  return paf.promise.then(
      [this, out, min_bytes, max_bytes, done] { return fill(out, min_bytes, max_bytes, done); });
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
