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

// The largest frame the protocol needs: one AppendRequest carries at most raft::Config
// max_msg_bytes (1 MiB) of entries plus one more entry of at most max_entry_bytes (8 MiB);
// snapshots travel in chunks of 1 MiB. 16 MiB leaves room for the encoding overhead.
inline constexpr std::size_t max_peer_frame_bytes = 16 << 20;
// Membership lists in a snapshot's ConfState: far above any real cluster, far below an
// amplification attack.
inline constexpr std::size_t max_conf_members = 4096;

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

enum class CodecError : std::uint8_t { malformed, too_large, unaligned, wrong_cluster, wrong_sender, wrong_receiver };
const char* codec_error_name(CodecError e);

// One frame: the Cap'n Proto flat-array encoding (segment table + segments), word-aligned.
std::string encode_peer_frame(std::uint64_t cluster_id, const raft::Message& m);
// What a receiver expects in a frame's header. The header (cluster, from, to) is read and checked
// before any body is decoded, so a frame that does not belong here costs a few word reads.
struct ExpectedHeader {
  std::uint64_t cluster_id = 0;
  raft::NodeId to;
  raft::NodeId from;  // 0: any sender
};
// Decodes one frame. Bounds before work: the frame size, then the Cap'n Proto traversal limit (a
// small multiple of the frame's own size: a list of zero-sized elements cannot amplify a few
// bytes into millions of objects), then list lengths against the bytes that could encode them.
Result<PeerFrame, CodecError> decode_peer_frame(std::string_view bytes, const ExpectedHeader* expect = nullptr);

// One chunk of the snapshot in `header` (an InstallSnapshotRequest; its data is ignored).
std::string encode_snapshot_chunk(std::uint64_t cluster_id, const raft::Message& header, std::uint64_t offset,
                                  std::string_view chunk, bool done);

}  // namespace tern::net
