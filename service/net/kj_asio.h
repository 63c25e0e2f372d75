#pragma once
// Runs Cap'n Proto's KJ event loop inside an asio::io_context on one thread (design.md §1a,
// reference/toolchain.md §5): AsioEventPort lets Asio drive KJ, and AsioStream is a buffered
// kj::AsyncIoStream over an asio TCP socket (64 KiB read-ahead, writes coalesced into one send
// per loop turn). Rules: construct io_context, AsioEventPort, kj::EventLoop, kj::WaitScope on the
// loop thread in that order, call attach(); run the io_context from exactly one thread; destroy
// capnp objects before the KJ loop.
#include <asio.hpp>
#include <kj/async-io.h>
#include <kj/async.h>

#include <atomic>
#include <memory>
#include <vector>

namespace tern::net {

class AsioEventPort final : public kj::EventPort {
 public:
  // Fairness (issue 17): one Asio handler runs at most this many KJ turns, then re-posts itself
  // behind whatever Asio has queued (timers, peer I/O, admin HTTP), so a client that pipelines
  // calls cannot keep the loop inside KJ.
  static constexpr unsigned kMaxTurnsPerSlice = 64;

  explicit AsioEventPort(asio::io_context& io) : io_(io) {}
  void attach(kj::EventLoop& loop, kj::WaitScope& ws) {
    loop_ = &loop;
    ws_ = &ws;
  }
  // Only for a top-level promise.wait(ws) (tools, tests): KJ then drives Asio.
  bool wait() override;
  bool poll() override { return woken_.exchange(false); }
  void setRunnable(bool runnable) override;
  void wake() const override;
  // After a top-level wait(), before io.run(): reschedule KJ work that became runnable meanwhile.
  void kick() { setRunnable(loop_->isRunnable()); }

 private:
  asio::io_context& io_;
  kj::EventLoop* loop_ = nullptr;
  kj::WaitScope* ws_ = nullptr;
  void run_slice();
  bool scheduled_ = false;
  bool in_kj_wait_ = false;
  mutable std::atomic<bool> woken_{false};
};

class AsioStream final : public kj::AsyncIoStream {
 public:
  static constexpr std::size_t kReadAheadBytes = 64 * 1024;
  static constexpr std::size_t kWriteHighWaterBytes = 1 << 20;  // writers wait above this
  // Reads done synchronously in one tryRead() before it yields to the loop (an asynchronous read)
  // even if the socket still has data: bounds the bytes one connection consumes per turn.
  static constexpr int kMaxSyncReadsPerCall = 4;

  explicit AsioStream(asio::ip::tcp::socket socket);
  ~AsioStream() noexcept(false);

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }
  void shutdownWrite() override;
  void abortRead() override;
  // Closes the socket: pending reads and writes fail, capnp sees a disconnect and cleans up.
  void abort();
  // Resolves once there is something to read (or the socket is closed), consuming nothing: the
  // TLS listener waits for a client's first bytes before it spends a TLS session on it.
  kj::Promise<void> when_readable();
  // Bytes accepted by write() and not yet handed to the kernel.
  std::size_t unsent_bytes() const { return st_->write_buf.size() + st_->in_flight.size(); }
  std::uint64_t bytes_read() const { return st_->bytes_read; }
  // Bytes that have arrived and not been consumed yet: read ahead, or still in the kernel. A
  // client whose first bytes wait here is not silent, even if the loop has not read them yet.
  std::size_t bytes_waiting() const {
    asio::error_code ec;
    std::size_t kernel = st_->socket.is_open() ? st_->socket.available(ec) : 0;
    return st_->read_end - st_->read_pos + (ec ? 0 : kernel);
  }
  std::uint64_t bytes_written() const { return st_->bytes_written; }

 private:
  // Shared with pending Asio handlers, so that the stream may die mid-operation.
  struct State {
    explicit State(asio::ip::tcp::socket s) : socket(std::move(s)) {}
    asio::ip::tcp::socket socket;
    // Allocated at the first read: a socket that never sends costs no 64 KiB (1024 idle client
    // connections were 64 MiB of RSS, zeroed on every flood of them).
    std::vector<kj::byte> read_buf;
    std::size_t read_pos = 0, read_end = 0;
    bool maybe_more = false;  // the last read filled read_buf: the socket may hold more
    bool eof = false;
    std::uint64_t bytes_read = 0, bytes_written = 0;
    std::vector<kj::byte> write_buf, in_flight;
    bool flush_scheduled = false, writing = false;
    kj::Maybe<kj::Exception> error;
    kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained;
  };
  std::size_t take(kj::byte* out, std::size_t max);
  static void got(State& s, std::size_t n);
  kj::Promise<void> when_readable_now();
  kj::Promise<size_t> fill(kj::byte* out, std::size_t min_bytes, std::size_t max_bytes, std::size_t done);
  void schedule_flush();
  static void flush(const std::shared_ptr<State>& st);

  std::shared_ptr<State> st_;
};

}  // namespace tern::net
