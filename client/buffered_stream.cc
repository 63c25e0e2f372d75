#include "client/buffered_stream.h"

#include <kj/debug.h>

#include <algorithm>
#include <cstring>

namespace tern::client {

std::size_t BufferedStream::take(kj::byte* out, std::size_t max) {
  std::size_t n = std::min(max, read_end_ - read_pos_);
  if (n > 0) std::memcpy(out, read_buf_.data() + read_pos_, n);
  read_pos_ += n;
  return n;
}

kj::Promise<size_t> BufferedStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  std::size_t done = take(out, max_bytes);
  if (done >= min_bytes) return done;
  return fill(out, min_bytes, max_bytes, done);
}

// The buffer is empty here: `done` bytes of the caller's `out` are filled.
kj::Promise<size_t> BufferedStream::fill(kj::byte* out, std::size_t min_bytes, std::size_t max_bytes, std::size_t done) {
  // A read as large as the buffer goes straight to the caller's memory.
  if (max_bytes - done >= kReadAheadBytes)
    return inner_->tryRead(out + done, min_bytes - done, max_bytes - done).then([done](size_t n) { return done + n; });
  if (read_buf_.empty()) read_buf_.resize(kReadAheadBytes);
  return inner_->tryRead(read_buf_.data(), 1, read_buf_.size())
      .then([this, out, min_bytes, max_bytes, done](size_t n) mutable -> kj::Promise<size_t> {
        read_pos_ = 0;
        read_end_ = n;
        if (n == 0) return done;  // end of stream: fewer than min_bytes tells the caller
        done += take(out + done, max_bytes - done);
        if (done >= min_bytes) return done;
        return fill(out, min_bytes, max_bytes, done);
      });
}

kj::Promise<void> BufferedStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> BufferedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  KJ_IF_MAYBE(e, error_) { return kj::cp(*e); }
  KJ_REQUIRE(!shutdown_requested_, "write after shutdownWrite");
  for (auto piece : pieces) pending_.insert(pending_.end(), piece.begin(), piece.end());
  return accepted();
}

kj::Promise<void> BufferedStream::accepted() {
  schedule_flush();
  if (unsent_bytes() <= kWriteHighWaterBytes) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  blocked_writers_.push_back(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

// At the end of the loop turn, so that the writes of the whole turn leave together.
void BufferedStream::schedule_flush() {
  if (flush_scheduled_ || writing_) return;
  flush_scheduled_ = true;
  flushing_ = kj::evalLast([this]() {
                flush_scheduled_ = false;
                return flush();
              }).eagerlyEvaluate(nullptr);
}

// Writes what is pending, then what piled up meanwhile, until nothing is left.
kj::Promise<void> BufferedStream::flush() {
  if (pending_.empty()) {
    writing_ = false;
    wake_writers();
    if (shutdown_requested_) inner_->shutdownWrite();
    return kj::READY_NOW;
  }
  writing_ = true;
  in_flight_.swap(pending_);
  pending_.clear();
  return inner_->write(in_flight_.data(), in_flight_.size())
      .then(
          [this]() {
            in_flight_.clear();
            if (unsent_bytes() <= kWriteHighWaterBytes) wake_writers();
            return flush();
          },
          [this](kj::Exception&& e) {
            writing_ = false;
            error_ = kj::cp(e);
            for (auto& w : blocked_writers_) w->reject(kj::cp(e));
            blocked_writers_.clear();
          });
}

void BufferedStream::wake_writers() {
  for (auto& w : blocked_writers_) w->fulfill();
  blocked_writers_.clear();
}

void BufferedStream::shutdownWrite() {
  shutdown_requested_ = true;
  if (!flush_scheduled_ && !writing_) inner_->shutdownWrite();
}

}  // namespace tern::client
