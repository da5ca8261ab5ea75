#include <algorithm>
#include <cstring>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "zstd_stream.h"

namespace duckblock {

namespace {

constexpr uint8_t kMagic[5] = {'H', 'A', 'D', 'B', 'P'};

void put_be(uint8_t* p, uint64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t get_be(const uint8_t* p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v = (v << 8) | p[i];
  return v;
}

uint64_t checksum_of(Sha256& hash) {
  auto digest = hash.finish();
  return get_be(digest.data(), 8);
}

[[noreturn]] void corrupt(const std::string& msg) { throw Error(ErrorKind::kCorruption, msg); }

// A compressed segment starts its body with this 12-byte record, exactly
// where a v1 reader expects the first page: id 2^64-1 with a data length of
// 2^32-1, which is longer than any page size, so a reader that ignores the
// flags rejects the segment here (docs/FORMAT.md, "Compressed segments").
constexpr size_t kGuardSize = 12;
constexpr uint8_t kGuard[kGuardSize] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

std::string hex_flags(uint8_t flags) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", flags);
  return buf;
}

}  // namespace

int parse_compression(const std::string& text) {
  if (text == "none" || text == "off" || text == "0") return 0;
  if (text == "zstd") return kDefaultCompressionLevel;
  if (text.rfind("zstd:", 0) == 0) {
    std::string n = text.substr(5);
    if (!n.empty() && n.size() <= 2 && n.find_first_not_of("0123456789") == std::string::npos) {
      int level = std::stoi(n);
      if (level >= 1 && level <= kMaxCompressionLevel) return level;
    }
  }
  throw Error(ErrorKind::kInvalidArgument,
              "not a compression setting: '" + text + "' (expected none, zstd or zstd:LEVEL with LEVEL 1.." +
                  std::to_string(kMaxCompressionLevel) + ")");
}

std::string compression_name(int level) {
  return level == 0 ? "none" : "zstd:" + std::to_string(level);
}

std::string checksum_hex(uint64_t checksum) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(checksum));
  return buf;
}

uint64_t parse_checksum_hex(const std::string& text) {
  std::string s = text;
  if (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0) s = s.substr(2);
  if (s.empty() || s.size() > 16 ||
      s.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    throw Error(ErrorKind::kInvalidArgument,
                "not a checksum: '" + text + "' (expected up to 16 hex digits)");
  }
  return std::stoull(s, nullptr, 16);
}

SegmentHeader parse_header(std::span<const uint8_t, kHeaderSize> b) {
  if (std::memcmp(b.data(), kMagic, 5) != 0) corrupt("invalid magic bytes: not a hadbp segment");
  if (b[5] != kFormatVersion) {
    corrupt("unsupported version: " + std::to_string(b[5]) + " (this build reads version 1)");
  }
  SegmentHeader h;
  h.flags = b[6];
  h.page_id_size = b[7];
  if (h.page_id_size != 4 && h.page_id_size != 8) {
    corrupt("invalid page_id_size: " + std::to_string(h.page_id_size) + " (expected 4 or 8)");
  }
  h.page_size = static_cast<uint32_t>(get_be(&b[8], 4));
  h.seq = get_be(&b[12], 8);
  h.prev_checksum = get_be(&b[20], 8);
  h.page_count = static_cast<uint32_t>(get_be(&b[28], 4));
  h.created_ms = static_cast<int64_t>(get_be(&b[32], 8));
  if (h.page_size == 0 || h.page_size > kMaxPageSize) {
    corrupt("unsupported page size " + std::to_string(h.page_size) + " (allowed 1.." +
            std::to_string(kMaxPageSize) + ")");
  }
  return h;
}

void serialize_header(const SegmentHeader& h, std::span<uint8_t, kHeaderSize> b) {
  std::memcpy(b.data(), kMagic, 5);
  b[5] = kFormatVersion;
  b[6] = h.flags;
  b[7] = h.page_id_size;
  put_be(&b[8], h.page_size, 4);
  put_be(&b[12], h.seq, 8);
  put_be(&b[20], h.prev_checksum, 8);
  put_be(&b[28], h.page_count, 4);
  put_be(&b[32], static_cast<uint64_t>(h.created_ms), 8);
}

// ---- writer ----

SegmentWriter::SegmentWriter(ByteSink& out, const SegmentHeader& header, int compression_level)
    : out_(out), header_(header) {
  if (header.page_id_size != 4 && header.page_id_size != 8) {
    throw Error(ErrorKind::kInvalidArgument, "page_id_size must be 4 or 8");
  }
  if (header.flags & ~kFlagCompressed) {
    throw Error(ErrorKind::kInvalidArgument, "unsupported segment flags " + hex_flags(header.flags) +
                                                 " (this build writes 0x00 or 0x01, zstd compression)");
  }
  // The guard record's id must overflow any file offset (docs/FORMAT.md),
  // which a 4-byte id would not.
  if ((header.flags & kFlagCompressed) && header.page_id_size != 8) {
    throw Error(ErrorKind::kInvalidArgument, "a compressed segment needs page_id_size 8");
  }
  if (header.page_size == 0 || header.page_size > kMaxPageSize) {
    throw Error(ErrorKind::kInvalidArgument,
                "page size " + std::to_string(header.page_size) + " out of range");
  }
  uint8_t h[kHeaderSize];
  serialize_header(header_, std::span<uint8_t, kHeaderSize>(h));
  out_.write(h, sizeof h);
  if (header.flags & kFlagCompressed) {
    out_.write(kGuard, kGuardSize);
    zstd_ = std::make_unique<detail::ZstdSink>(out_, compression_level);
  }
  uint8_t prev[8];
  put_be(prev, header_.prev_checksum, 8);
  hash_.update(prev, 8);
}

void SegmentWriter::add_page(uint64_t page_id, std::span<const uint8_t> data) {
  if (finished_ || pages_added_ >= header_.page_count) {
    throw Error(ErrorKind::kInvalidArgument, "more pages than the header's page_count " +
                                                 std::to_string(header_.page_count));
  }
  if (last_id_ && page_id <= *last_id_) {
    throw Error(ErrorKind::kInvalidArgument, "page ids must be strictly ascending: " +
                                                 std::to_string(page_id) + " after " +
                                                 std::to_string(*last_id_));
  }
  if (header_.page_id_size == 4 && page_id > UINT32_MAX) {
    throw Error(ErrorKind::kInvalidArgument, "page id does not fit in 4 bytes");
  }
  if (data.size() > header_.page_size) {
    throw Error(ErrorKind::kInvalidArgument, "page data length " + std::to_string(data.size()) +
                                                 " exceeds page size " +
                                                 std::to_string(header_.page_size));
  }
  uint8_t prefix[12];
  int w = header_.page_id_size;
  put_be(prefix, page_id, w);
  put_be(prefix + w, data.size(), 4);
  ByteSink& sink = records();
  sink.write(prefix, w + 4);
  hash_.update(prefix, w + 4);
  if (!data.empty()) {
    sink.write(data.data(), data.size());
    hash_.update(data.data(), data.size());
  }
  last_id_ = page_id;
  ++pages_added_;
}

uint64_t SegmentWriter::finish() {
  if (finished_) throw Error(ErrorKind::kInvalidArgument, "segment already finished");
  if (pages_added_ != header_.page_count) {
    throw Error(ErrorKind::kInvalidArgument,
                "segment declared " + std::to_string(header_.page_count) + " pages but got " +
                    std::to_string(pages_added_));
  }
  finished_ = true;
  if (zstd_) zstd_->finish();
  uint64_t sum = checksum_of(hash_);
  uint8_t t[8];
  put_be(t, sum, 8);
  out_.write(t, 8);
  return sum;
}

SegmentWriter::~SegmentWriter() = default;

ByteSink& SegmentWriter::records() {
  if (zstd_) return *zstd_;
  return out_;
}

// ---- reader ----

SegmentReader::SegmentReader(ByteSource& in, SegmentReaderOptions options) : in_(in) {
  uint8_t h[kHeaderSize];
  size_t got = 0;
  while (got < kHeaderSize) {
    size_t r = in_.read(h + got, kHeaderSize - got);
    if (r == 0) break;
    got += r;
  }
  if (got == 0) corrupt("empty segment: 0 bytes (a segment is at least 48 bytes)");
  if (got < kHeaderSize) {
    corrupt("truncated header: have " + std::to_string(got) + " bytes, a header is 40");
  }
  bytes_ = kHeaderSize;
  header_ = parse_header(std::span<const uint8_t, kHeaderSize>(h));
  const uint8_t flags = options.ignore_flags ? 0 : header_.flags;
  if (flags & ~kFlagCompressed) {
    throw Error(ErrorKind::kUnsupported,
                "segment flags " + hex_flags(flags) + " are not supported by this build (it reads 0x00, plain, and " +
                    "0x01, zstd-compressed; 0x02 is reserved for encryption)");
  }
  if (flags & kFlagCompressed) {
    if (header_.page_id_size != 8) {
      corrupt("a compressed segment must have page_id_size 8, this one has 4");
    }
    uint8_t guard[kGuardSize];
    in_.read_exact(guard, kGuardSize, "the compressed segment's guard record (truncated segment)");
    if (std::memcmp(guard, kGuard, kGuardSize) != 0) {
      corrupt("a compressed segment must start with the guard record (page id 2^64-1, length 2^32-1)");
    }
    bytes_ += kGuardSize;
    // A page count cannot be checked against compressed bytes up front; the
    // decoder allocates per page only what the stream really delivers.
    zstd_ = std::make_unique<detail::ZstdSource>(in_);
  } else if (auto left = in_.remaining()) {
    // Reject an impossible page count before anything is allocated or read.
    uint64_t min_needed =
        uint64_t{header_.page_count} * (header_.page_id_size + 4) + kTrailerSize;
    if (*left < min_needed) {
      corrupt("size mismatch: header claims " + std::to_string(header_.page_count) +
              " pages, which need at least " + std::to_string(min_needed + kHeaderSize) +
              " bytes, but the segment has " + std::to_string(*left + kHeaderSize));
    }
  }
  verified_checksum_ = options.verified_checksum;
  if (verified_checksum_) return;  // verified by an earlier pass: no hashing
  uint8_t prev[8];
  put_be(prev, header_.prev_checksum, 8);
  hash_.update(prev, 8);
}

SegmentReader::~SegmentReader() = default;

ByteSource& SegmentReader::records() {
  if (zstd_) return *zstd_;
  return in_;
}

void SegmentReader::read_trailer() {
  uint8_t t[8];
  uint8_t extra;
  bool trailing = false;
  if (zstd_) {
    // The frame must end exactly after the last page record.
    if (zstd_->read(&extra, 1) != 0) {
      corrupt("size mismatch: the compressed data holds more than the header's " +
              std::to_string(header_.page_count) + " pages");
    }
    for (size_t got = 0; got < 8;) {
      size_t r = zstd_->read_after_frame(t + got, 8 - got);
      if (r == 0) corrupt("unexpected end of data in segment trailer (truncated segment)");
      got += r;
    }
    bytes_ = kHeaderSize + kGuardSize + zstd_->in_bytes();
    trailing = zstd_->read_after_frame(&extra, 1) != 0;
  } else {
    in_.read_exact(t, 8, "segment trailer (truncated segment)");
    bytes_ += 8;
    trailing = in_.read(&extra, 1) != 0;
  }
  uint64_t stored = get_be(t, 8);
  checksum_ = verified_checksum_ ? *verified_checksum_ : checksum_of(hash_);
  if (trailing) {
    corrupt("size mismatch: trailing bytes after the segment trailer at offset " + std::to_string(bytes_));
  }
  if (stored != checksum_ && verified_checksum_) {
    corrupt("the segment changed after it was verified: its trailer says " + checksum_hex(stored) +
            ", the verified checksum was " + checksum_hex(checksum_));
  }
  if (stored != checksum_) {
    corrupt("checksum mismatch: trailer says " + checksum_hex(stored) + ", contents hash to " +
            checksum_hex(checksum_));
  }
}

bool SegmentReader::next(PageView& page) {
  if (done_) return false;
  if (pages_read_ == header_.page_count) {
    read_trailer();
    done_ = true;
    return false;
  }
  ByteSource& src = records();
  int w = header_.page_id_size;
  uint8_t prefix[12];
  src.read_exact(prefix, w + 4, "page header (truncated segment)");
  uint64_t id = get_be(prefix, w);
  uint32_t len = static_cast<uint32_t>(get_be(prefix + w, 4));
  if (len > header_.page_size) {
    corrupt("page data length " + std::to_string(len) + " exceeds page size " +
            std::to_string(header_.page_size) + " (page " + std::to_string(pages_read_) + ")");
  }
  if (last_id_ && id <= *last_id_) {
    corrupt("page ids not ascending: " + std::to_string(id) + " after " +
            std::to_string(*last_id_));
  }
  if (auto left = src.remaining(); left && *left < uint64_t{len} + kTrailerSize) {
    corrupt("size mismatch: page " + std::to_string(id) + " claims " + std::to_string(len) +
            " bytes but only " + std::to_string(*left) + " remain");
  }
  if (!verified_checksum_) hash_.update(prefix, w + 4);
  if (src.remaining()) {
    if (buf_.size() < len) buf_.resize(len);  // the check above proved the bytes exist
    src.read_exact(buf_.data(), len, "page data (truncated segment)");
  } else {
    // A stream of unknown length (or decompressed data): grow the buffer only
    // as bytes arrive, so a hostile data_len costs memory in proportion to
    // what was really sent, not up to kMaxPageSize at once.
    for (size_t have = 0; have < len;) {
      size_t step = std::min<size_t>(len - have, std::max<size_t>(have, size_t{64} << 10));
      if (buf_.size() < have + step) buf_.resize(have + step);
      src.read_exact(buf_.data() + have, step, "page data (truncated segment)");
      have += step;
    }
  }
  if (!verified_checksum_) hash_.update(buf_.data(), len);
  if (!zstd_) bytes_ += w + 4 + len;
  last_id_ = id;
  ++pages_read_;
  page.id = id;
  page.data = std::span<const uint8_t>(buf_.data(), len);
  return true;
}

namespace {
// The largest page id whose byte offset (plus its length) fits in an off_t.
bool offset_ok(uint64_t id, uint32_t page_size, uint64_t len) {
  return id <= (uint64_t{INT64_MAX} - len) / page_size;
}
}  // namespace

SegmentSummary walk_segment(SegmentReader& r, SegmentUse use, const SegmentPageVisitor& on_page) {
  SegmentSummary s;
  s.header = r.header();
  const uint32_t ps = s.header.page_size;
  const bool apply = use == SegmentUse::kApply;
  PageView p;
  while (r.next(p)) {
    if (p.id == kFileLengthPageId && (apply || p.data.size() == 8)) {
      s.file_length = decode_file_length(p.data);  // throws kCorruption unless 8 bytes
      continue;
    }
    if (apply && !offset_ok(p.id, ps, p.data.size())) {
      corrupt("page " + std::to_string(p.id) + " lies beyond any possible file offset");
    }
    const uint64_t offset = p.id * ps;  // for kFormat it may wrap: data_end is then meaningless, not used
    if (on_page) on_page(offset, p.data);
    s.data_end = offset + p.data.size();  // ids ascend: the last one is the highest
  }
  s.checksum = r.checksum();
  s.encoded_size = r.bytes_read();
  return s;
}

SegmentSummary verify_segment(ByteSource& in) {
  SegmentReader r(in);
  return walk_segment(r, SegmentUse::kFormat);
}

std::vector<uint8_t> encode_segment(SegmentHeader header, std::vector<Page> pages, uint64_t* checksum_out,
                                    int compression_level) {
  std::sort(pages.begin(), pages.end(), [](const Page& a, const Page& b) { return a.id < b.id; });
  header.page_count = static_cast<uint32_t>(pages.size());
  VectorSink sink;
  SegmentWriter w(sink, header, compression_level);
  for (const auto& p : pages) w.add_page(p.id, p.data);
  uint64_t sum = w.finish();
  if (checksum_out) *checksum_out = sum;
  return std::move(sink.data());
}

Segment decode_segment(std::span<const uint8_t> bytes, SegmentReaderOptions options) {
  MemorySource src(bytes);
  SegmentReader r(src, options);
  Segment s;
  s.header = r.header();
  PageView p;
  while (r.next(p)) s.pages.push_back(Page{p.id, {p.data.begin(), p.data.end()}});
  s.checksum = r.checksum();
  return s;
}

std::vector<uint8_t> encode_file_length(uint64_t length) {
  std::vector<uint8_t> out(8);
  put_be(out.data(), length, 8);
  return out;
}

uint64_t decode_file_length(std::span<const uint8_t> data) {
  if (data.size() != 8) corrupt("file-length record must be 8 bytes");
  const uint64_t length = get_be(data.data(), 8);
  // No file can be longer than an off_t reaches; past it every reader's
  // arithmetic (pages of the file, truncate) would wrap or fail late.
  if (length > uint64_t{INT64_MAX}) {
    corrupt("file-length record " + std::to_string(length) + " is beyond any possible file offset");
  }
  return length;
}

}  // namespace duckblock
