#pragma once
// Conversion between raft::Message and the Cap'n Proto peer schema (service/proto/peer.capnp),
// as self-contained frames of bytes. Generated Cap'n Proto types stay inside service/net: callers
// see only raft types and bytes. Malformed or oversized input is an error value, never a crash.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "raft/messages.h"

namespace tern::net {

inline constexpr std::size_t max_peer_frame_bytes = 64 << 20;  // larger snapshots travel in chunks

// One piece of a snapshot streamed in chunks (docs/protocol.md). A snapshot that fits one frame
// travels as a single chunk (offset 0, done) and decodes straight into the message's data.
struct SnapshotChunk {
  std::uint64_t offset = 0;
  bool done = false;
  std::string bytes;
};

struct PeerFrame {
  std::uint64_t cluster_id = 0;
  raft::Message message;
  // Set for an InstallSnapshot frame that is only part of a snapshot: then message.body is an
  // InstallSnapshotRequest without data, and the transport reassembles the chunks.
  std::optional<SnapshotChunk> chunk;
};

enum class CodecError : std::uint8_t { malformed, too_large, unaligned };
const char* codec_error_name(CodecError e);

// One frame: the Cap'n Proto flat-array encoding (segment table + segments), word-aligned.
std::string encode_peer_frame(std::uint64_t cluster_id, const raft::Message& m);
Result<PeerFrame, CodecError> decode_peer_frame(std::string_view bytes);

// One chunk of the snapshot in `header` (an InstallSnapshotRequest; its data is ignored).
std::string encode_snapshot_chunk(std::uint64_t cluster_id, const raft::Message& header, std::uint64_t offset,
                                  std::string_view chunk, bool done);

}  // namespace tern::net
