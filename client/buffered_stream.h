#pragma once
// A kj::AsyncIoStream over another one (plaintext or TLS), for the client library's connection.
// It reads ahead: Cap'n Proto 0.9 reads each message in two or more pieces (segment table, then
// segments), one read(2) each without a buffer. And it coalesces writes: every RPC message (a
// call, its Finish) is one write; with many calls outstanding a loop turn makes dozens, and they
// leave as one write of the inner stream at the end of the turn (kj::evalLast). A write is
// accepted at once (copied) while fewer than kWriteHighWaterBytes wait; above that the writer
// waits for the inner stream, so a slow server pushes back on the caller.
#include <kj/async-io.h>

#include <cstddef>
#include <vector>

namespace tern::client {

class BufferedStream final : public kj::AsyncIoStream {
 public:
  static constexpr std::size_t kReadAheadBytes = 64 * 1024;
  static constexpr std::size_t kWriteHighWaterBytes = 256 * 1024;

  explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  // After everything written so far has gone out.
  void shutdownWrite() override;
  void abortRead() override { inner_->abortRead(); }

  // Bytes accepted by write() and not yet handed to the inner stream's completed writes.
  std::size_t unsent_bytes() const { return pending_.size() + in_flight_.size(); }

 private:
  std::size_t take(kj::byte* out, std::size_t max);
  kj::Promise<size_t> fill(kj::byte* out, std::size_t min_bytes, std::size_t max_bytes, std::size_t done);
  kj::Promise<void> accepted();
  void schedule_flush();
  kj::Promise<void> flush();
  void wake_writers();

  kj::Own<kj::AsyncIoStream> inner_;
  // Allocated at the first read that needs it.
  std::vector<kj::byte> read_buf_;
  std::size_t read_pos_ = 0, read_end_ = 0;
  std::vector<kj::byte> pending_;    // accepted, not yet handed to the inner stream
  std::vector<kj::byte> in_flight_;  // handed to the inner stream's current write
  bool flush_scheduled_ = false, writing_ = false, shutdown_requested_ = false;
  kj::Maybe<kj::Exception> error_;  // a failed inner write: every later write fails with it
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> blocked_writers_;  // above the high water
  kj::Promise<void> flushing_ = kj::READY_NOW;  // the flush under way: cancelled with the stream
};

}  // namespace tern::client
