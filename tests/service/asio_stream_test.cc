// AsioStream (service/net/kj_asio.h), the kj::AsyncIoStream every client connection of ternd
// reads through: bytes arrive whole and in order whatever the write and read sizes (short reads,
// reads that fill the 64 KiB read-ahead, writes that pause mid-message), and a stream's end
// returns what arrived before it.
#include <gtest/gtest.h>

#include <asio.hpp>
#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "service/net/kj_asio.h"

namespace tern::net {
namespace {

// One KJ loop on an io_context (the test drives it with promise.wait) and a connected pair of
// loopback sockets: `server` inside an AsioStream, `client` a blocking socket for a writer thread.
struct Loop {
  asio::io_context io;
  // As in ternd, where listeners and timers always wait: run_one() with no work stops the
  // io_context for good.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  AsioEventPort port{io};
  kj::EventLoop loop{port};
  kj::WaitScope ws{loop};
  asio::io_context client_io;
  asio::ip::tcp::socket client{client_io};
  kj::Own<AsioStream> server;

  Loop() {
    port.attach(loop, ws);
    asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    server = kj::heap<AsioStream>(acceptor.accept());
  }
};

std::vector<std::uint8_t> pattern(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

TEST(AsioStream, BytesArriveWholeAndInOrderWhateverTheWriteAndReadSizes) {
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Loop l;
    const auto sent = pattern(600 * 1024, seed);
    std::thread writer([&] {
      std::mt19937 rng(seed * 7919);
      std::size_t at = 0;
      while (at < sent.size()) {
        // Mostly small writes (one message at a time, as a client at one outstanding call sends),
        // some larger than the read-ahead, some after a pause (the reader finds the socket empty).
        std::size_t n = rng() % 4 == 0 ? 1 + rng() % (150 * 1024) : 1 + rng() % 400;
        n = std::min(n, sent.size() - at);
        asio::write(l.client, asio::buffer(sent.data() + at, n));
        at += n;
        if (rng() % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
      }
    });
    std::vector<std::uint8_t> got(sent.size());
    std::mt19937 rng(seed * 104729);
    std::size_t at = 0;
    while (at < got.size()) {
      std::size_t max = std::min<std::size_t>(got.size() - at, 1 + rng() % (100 * 1024));
      std::size_t min = 1 + rng() % max;
      std::size_t n = l.server->tryRead(got.data() + at, min, max).wait(l.ws);
      ASSERT_GE(n, min);
      ASSERT_LE(n, max);
      at += n;
    }
    writer.join();
    EXPECT_EQ(got, sent);
    EXPECT_EQ(l.server->bytes_read(), sent.size());
  }
}

TEST(AsioStream, EndOfStreamReturnsWhatArrivedThenZero) {
  Loop l;
  const auto sent = pattern(10, 3);
  std::vector<std::uint8_t> got(64);
  // A first read that waits (nothing sent yet), then a short message and the end of the stream.
  auto first = l.server->tryRead(got.data(), 4, 4);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    asio::write(l.client, asio::buffer(sent));
    l.client.shutdown(asio::socket_base::shutdown_send);
  });
  EXPECT_EQ(first.wait(l.ws), 4u);
  EXPECT_EQ(l.server->tryRead(got.data() + 4, 60, 60).wait(l.ws), 6u);
  writer.join();
  EXPECT_EQ(std::vector<std::uint8_t>(got.begin(), got.begin() + 10), sent);
  EXPECT_EQ(l.server->tryRead(got.data(), 1, 64).wait(l.ws), 0u);
}

}  // namespace
}  // namespace tern::net
