// client/buffered_stream.h over an in-memory kj pipe (a pipe's write completes only once the
// other end has read it all, so a reader that does not read is a server that does not drain).
#include "client/buffered_stream.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

namespace tern::testing {
namespace {

// Forwards to a pipe end and counts the calls that reach it.
class Counting final : public kj::AsyncIoStream {
 public:
  explicit Counting(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void* b, size_t min, size_t max) override {
    ++reads;
    return inner_->tryRead(b, min, max);
  }
  kj::Promise<void> write(const void* b, size_t n) override {
    ++writes;
    return inner_->write(b, n);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    ++writes;
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override {
    ++shutdowns;
    inner_->shutdownWrite();
  }
  int reads = 0, writes = 0, shutdowns = 0;

 private:
  kj::Own<kj::AsyncIoStream> inner_;
};

struct Fixture {
  kj::EventLoop loop;
  kj::WaitScope ws{loop};
  kj::TwoWayPipe pipe = kj::newTwoWayPipe();
  Counting* counting = nullptr;
  kj::Own<client::BufferedStream> stream;
  kj::Own<kj::AsyncIoStream> peer = kj::mv(pipe.ends[1]);
  Fixture() {
    auto c = kj::heap<Counting>(kj::mv(pipe.ends[0]));
    counting = c.get();
    stream = kj::heap<client::BufferedStream>(kj::mv(c));
  }
  std::string read_exactly(kj::AsyncInputStream& from, std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = from.tryRead(out.data(), n, n).wait(ws);
    out.resize(got);
    return out;
  }
};

TEST(BufferedStream, TheWritesOfOneTurnReachTheInnerStreamAsOneWrite) {
  Fixture f;
  std::string expected;
  std::vector<kj::Promise<void>> accepted;
  for (int i = 0; i < 50; ++i) {
    std::string m = "message " + std::to_string(i) + ";";
    expected += m;
    accepted.push_back(f.stream->write(m.data(), m.size()));  // copied: `m` may go now
  }
  for (auto& p : accepted) EXPECT_TRUE(p.poll(f.ws)) << "a write below the high water waited";
  EXPECT_EQ(f.read_exactly(*f.peer, expected.size()), expected);
  EXPECT_EQ(f.counting->writes, 1);
}

TEST(BufferedStream, ManySmallMessagesCostOneInnerRead) {
  Fixture f;
  std::string all;
  for (int i = 0; i < 100; ++i) all += "abcdefgh";
  auto sent = f.peer->write(all.data(), all.size());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(f.read_exactly(*f.stream, 8), "abcdefgh");
  sent.wait(f.ws);
  EXPECT_EQ(f.counting->reads, 1);
}

TEST(BufferedStream, AWriterAboveTheHighWaterWaitsUntilThePeerReads) {
  Fixture f;
  std::string big(client::BufferedStream::kWriteHighWaterBytes + 1, 'x');
  auto w = f.stream->write(big.data(), big.size());
  EXPECT_FALSE(w.poll(f.ws)) << "accepted past the high water with nobody reading";
  EXPECT_EQ(f.read_exactly(*f.peer, big.size()), big);
  EXPECT_TRUE(w.poll(f.ws));
  w.wait(f.ws);
  EXPECT_EQ(f.stream->unsent_bytes(), 0u);
}

TEST(BufferedStream, ShutdownWriteSendsEverythingAcceptedFirst) {
  Fixture f;
  f.stream->write("hello ", 6).wait(f.ws);
  f.stream->write("world", 5).wait(f.ws);
  f.stream->shutdownWrite();
  EXPECT_EQ(f.counting->shutdowns, 0) << "shut down with bytes still pending";
  EXPECT_EQ(f.read_exactly(*f.peer, 11), "hello world");
  char c;
  EXPECT_EQ(f.peer->tryRead(&c, 1, 1).wait(f.ws), 0u) << "no end of stream after the data";
  EXPECT_EQ(f.counting->shutdowns, 1);
}

TEST(BufferedStream, AFailedInnerWriteFailsEveryLaterWrite) {
  Fixture f;
  f.peer = nullptr;  // the other end is gone
  f.stream->write("lost", 4).wait(f.ws);  // accepted; the failure shows at the flush
  f.ws.poll();                            // the flush runs, and fails
  EXPECT_EQ(f.counting->writes, 1);
  auto later = f.stream->write("more", 4);
  EXPECT_ANY_THROW(later.wait(f.ws));
}

TEST(BufferedStream, EndOfStreamReturnsWhatArrived) {
  Fixture f;
  auto sent = f.peer->write("abc", 3).then([&f]() { f.peer->shutdownWrite(); }).eagerlyEvaluate(nullptr);
  char buf[8];
  EXPECT_EQ(f.stream->tryRead(buf, 8, 8).wait(f.ws), 3u);
  EXPECT_EQ(f.stream->tryRead(buf, 1, 8).wait(f.ws), 0u);
}

// Any sizes of writes through one buffered stream, read back through another over the same pipe
// in any sizes of reads (some larger than the read-ahead buffer, some past the high water):
// every byte arrives once, in order, then the end of the stream.
RC_GTEST_PROP(BufferedStream, BytesArriveInOrderWhateverTheWriteAndReadSizes, ()) {
  Fixture f;
  client::BufferedStream reader(kj::mv(f.peer));
  auto piece = rc::gen::oneOf(rc::gen::inRange<std::size_t>(1, 200), rc::gen::inRange<std::size_t>(1, 300'000));
  auto sizes = *rc::gen::container<std::vector<std::size_t>>(*rc::gen::inRange<std::size_t>(0, 20), piece);
  auto reads = *rc::gen::container<std::vector<std::size_t>>(*rc::gen::inRange<std::size_t>(1, 10), piece);
  std::string sent;
  std::uint32_t x = 1;
  for (auto n : sizes)
    for (std::size_t i = 0; i < n; ++i) sent.push_back(static_cast<char>((x = x * 1103515245 + 12345) >> 24));
  // The writer writes each piece in turn (waiting where it must), then shuts down; the reader
  // reads meanwhile.
  kj::Promise<void> writing = kj::READY_NOW;
  std::size_t off = 0;
  for (auto n : sizes) {
    writing = writing.then([&f, &sent, off, n]() { return f.stream->write(sent.data() + off, n); });
    off += n;
  }
  writing = writing.then([&f]() { f.stream->shutdownWrite(); }).eagerlyEvaluate(nullptr);
  std::string got;
  for (std::size_t i = 0;; ++i) {
    std::size_t max = reads[i % reads.size()];
    std::size_t min = 1 + max / 2;
    std::string buf(max, '\0');
    std::size_t n = reader.tryRead(buf.data(), min, max).wait(f.ws);
    RC_ASSERT(n <= max);
    got.append(buf.data(), n);
    if (n < min) break;  // the end of the stream, and only there
  }
  writing.wait(f.ws);
  RC_ASSERT(got == sent);
}

}  // namespace
}  // namespace tern::testing
