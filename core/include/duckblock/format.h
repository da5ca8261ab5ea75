// hadbp v1: the segment format. See docs/FORMAT.md for the byte layout, the
// file-length record and the snapshot convention.
//
// A segment is a 40-byte header, pages in ascending page id order, and an
// 8-byte trailer holding the first 8 bytes (big-endian) of
//   SHA-256(prev_checksum_be || for each page: page_id_be || data_len_be || data).
// The checksum leaves out seq, page_size, flags and created_ms: callers
// cross-check those (key seq against header seq, page size against the file).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "duckblock/io.h"
#include "duckblock/sha256.h"

namespace duckblock {

inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kTrailerSize = 8;
inline constexpr uint8_t kFormatVersion = 1;
// We refuse pages larger than this: no real page is, and it bounds the buffer
// a hostile header can make a reader allocate.
inline constexpr uint32_t kMaxPageSize = 64u << 20;

// duckblock's file-length record (docs/FORMAT.md): a page with this id and an
// 8-byte big-endian payload gives the source file's length after the segment.
// A v1 reader decodes it as an ordinary page; an applier that does not know it
// fails loudly (page_id * page_size overflows the file offset range) rather
// than writing wrong bytes.
inline constexpr uint64_t kFileLengthPageId = UINT64_MAX;

// Header flag bit 0: the page records are one zstd frame (docs/FORMAT.md,
// "Compressed segments"). The checksum is the plain segment's, over the
// uncompressed records. Bit 1 is reserved for encryption; other bits unused.
inline constexpr uint8_t kFlagCompressed = 0x01;
// Compression levels: 0 writes plain hadbp v1 (what the reference
// implementation reads); 1..19 are zstd levels.
inline constexpr int kDefaultCompressionLevel = 3;
inline constexpr int kMaxCompressionLevel = 19;
// Parses a compression setting: "none" (or "off", "0") gives 0, "zstd" the
// default level, "zstd:N" level N (1..19). Throws kInvalidArgument otherwise.
// The command line's --compression and the extension's duckblock_compression
// share this spelling.
int parse_compression(const std::string& text);
// The setting's spelling for a level: "none" or "zstd:N".
std::string compression_name(int level);

namespace detail {
class ZstdSink;
class ZstdSource;
}  // namespace detail

struct SegmentHeader {
  uint8_t flags = 0;
  uint8_t page_id_size = 8;  // 4 or 8
  uint32_t page_size = 0;
  uint64_t seq = 0;
  uint64_t prev_checksum = 0;
  uint32_t page_count = 0;
  int64_t created_ms = 0;

  bool operator==(const SegmentHeader&) const = default;
};

// Parses and checks the fixed 40-byte header (magic, version, id size, page size).
SegmentHeader parse_header(std::span<const uint8_t, kHeaderSize> bytes);
void serialize_header(const SegmentHeader& h, std::span<uint8_t, kHeaderSize> out);

// Streams a segment out page by page in bounded memory. The header's
// page_count is declared up front (it precedes the pages); add_page must be
// called exactly that many times with strictly ascending ids, then finish().
// With kFlagCompressed in header.flags the records are compressed at
// `compression_level` (1..19; page_id_size must be 8), otherwise the level
// is ignored and the segment is plain v1.
class SegmentWriter {
 public:
  SegmentWriter(ByteSink& out, const SegmentHeader& header, int compression_level = kDefaultCompressionLevel);
  ~SegmentWriter();
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;
  void add_page(uint64_t page_id, std::span<const uint8_t> data);
  // Writes the trailer and returns the segment's checksum.
  uint64_t finish();
  // Encoded bytes written to `out` so far.
  uint64_t bytes_written() const { return out_.bytes; }

 private:
  struct CountingSink final : ByteSink {
    explicit CountingSink(ByteSink& o) : out(o) {}
    void write(const void* buf, size_t n) override {
      out.write(buf, n);
      bytes += n;
    }
    ByteSink& out;
    uint64_t bytes = 0;
  };
  ByteSink& records();
  CountingSink out_;
  std::unique_ptr<detail::ZstdSink> zstd_;
  SegmentHeader header_;
  Sha256 hash_;
  uint32_t pages_added_ = 0;
  std::optional<uint64_t> last_id_;
  bool finished_ = false;
};

struct PageView {
  uint64_t id = 0;
  std::span<const uint8_t> data;  // valid until the next call to next()
};

// Streams a segment in page by page. The header is read and checked by the
// constructor. next() yields pages in order and, after the last page, reads
// the trailer and throws Error(kCorruption) if the checksum does not match or
// bytes follow it. A page's bytes are NOT verified until next() has returned
// false: write nothing durable before then (see apply.h).
//
// Compressed segments (kFlagCompressed) are decompressed as they stream, in
// bounded memory (a zstd window of at most 8 MiB, one page buffer of at most
// page_size). Flag bits this build does not know throw kUnsupported.
struct SegmentReaderOptions {
  // Read as a v1-only reader that ignores the flags byte would. Such a reader
  // must reject every compressed segment (docs/FORMAT.md explains why it
  // does); tests use this to prove it. Never set it to read real data.
  bool ignore_flags = false;
  // The checksum of these very bytes, verified by an earlier pass (apply.h:
  // an unchanged file verified on a download thread). The reader then does
  // not hash the pages again; it still checks the structure, and a trailer
  // that differs from this value is corruption (the bytes changed).
  std::optional<uint64_t> verified_checksum;
};
class SegmentReader {
 public:
  explicit SegmentReader(ByteSource& in, SegmentReaderOptions options = {});
  ~SegmentReader();
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;
  const SegmentHeader& header() const { return header_; }
  bool next(PageView& page);
  // Valid once next() has returned false.
  uint64_t checksum() const { return checksum_; }
  uint64_t bytes_read() const { return bytes_; }

 private:
  ByteSource& records();
  void read_trailer();
  ByteSource& in_;
  std::unique_ptr<detail::ZstdSource> zstd_;
  SegmentHeader header_;
  Sha256 hash_;
  std::vector<uint8_t> buf_;
  uint32_t pages_read_ = 0;
  std::optional<uint64_t> last_id_;
  uint64_t checksum_ = 0;
  std::optional<uint64_t> verified_checksum_;
  uint64_t bytes_ = 0;
  bool done_ = false;
};

// Reads a whole segment, discarding page data, and returns its verified
// header and checksum. Throws Error(kCorruption) on any defect.
struct SegmentSummary {
  SegmentHeader header;
  uint64_t checksum = 0;
  uint64_t encoded_size = 0;
  std::optional<uint64_t> file_length;  // from the file-length record
  // Where the segment's data pages end in the file: id * page_size + length
  // of its highest page other than the length record (0 if it has none).
  // With file_length, what an applier's file length becomes (compaction).
  uint64_t data_end = 0;
};
SegmentSummary verify_segment(ByteSource& in);

// The one page walk that every reader of a whole segment goes through
// (verify_segment, apply's verification and write pass, a snapshot streamed
// into a file). For kApply (a segment about to be written into a file) the
// file-length record is decoded (exactly 8 bytes, else kCorruption) and
// kept out of the pages, and every data page must lie at a possible file
// offset (id * page_size + length fits an off_t, else kCorruption). For
// kFormat (verify_segment: is this a sound hadbp v1 segment?) any page id is
// valid, as the format allows (golden vector extreme_ids.hadbp), and a
// length record of another size is a page like any other. `on_page` (may be
// empty) sees each data page with its byte offset. Returns the summary once
// the trailer has verified.
enum class SegmentUse { kFormat, kApply };
using SegmentPageVisitor = std::function<void(uint64_t offset, std::span<const uint8_t> data)>;
SegmentSummary walk_segment(SegmentReader& reader, SegmentUse use, const SegmentPageVisitor& on_page = {});

// In-memory helpers for small segments.
struct Page {
  uint64_t id = 0;
  std::vector<uint8_t> data;
  bool operator==(const Page&) const = default;
};
struct Segment {
  SegmentHeader header;
  std::vector<Page> pages;  // ascending id
  uint64_t checksum = 0;
};
// Sorts pages by id (input order does not matter) and sets page_count.
std::vector<uint8_t> encode_segment(SegmentHeader header, std::vector<Page> pages,
                                    uint64_t* checksum_out = nullptr,
                                    int compression_level = kDefaultCompressionLevel);
Segment decode_segment(std::span<const uint8_t> bytes, SegmentReaderOptions options = {});

// The 8-byte payload of a file-length record. Decoding throws kCorruption
// unless it is 8 bytes and at most INT64_MAX (an off_t).
std::vector<uint8_t> encode_file_length(uint64_t length);
uint64_t decode_file_length(std::span<const uint8_t> data);

std::string checksum_hex(uint64_t checksum);
// Parses 16 hex digits (an optional 0x prefix is allowed).
uint64_t parse_checksum_hex(const std::string& text);

}  // namespace duckblock
