// Compressed segments (header flag 0x01, docs/FORMAT.md "Compressed
// segments"): golden vectors from our encoder re-encoded byte for byte, the
// checksum equal to the plain segment's, a reader that ignores the flags
// rejecting every compressed segment, and damaged compressed data (a bad
// frame, a frame claiming a huge size or window, truncation, extra data)
// rejected as kCorruption.
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "duckblock/apply.h"
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "test_util.h"

namespace duckblock {
namespace {

using nlohmann::json;

std::vector<uint8_t> sample_file() { return read_file(test::data_path("hadbp/sample.duckdb")); }

std::vector<uint8_t> page_bytes(const json& p) {
  size_t len = p["len"].get<size_t>();
  if (p.contains("zero")) return std::vector<uint8_t>(len, 0);
  if (p.contains("length")) return encode_file_length(p["length"].get<uint64_t>());
  if (p.contains("fill")) return test::fill_bytes(p["fill"].get<unsigned>(), len);
  auto src = read_file(test::data_path("hadbp/" + p["source"].get<std::string>()));
  size_t off = p["offset"].get<size_t>();
  return {src.begin() + off, src.begin() + off + len};
}

std::vector<Page> vector_pages(const json& v) {
  std::vector<Page> pages;
  if (v.contains("whole_file")) {
    auto file = read_file(test::data_path("hadbp/" + v["whole_file"].get<std::string>()));
    uint32_t ps = v["page_size"].get<uint32_t>();
    for (size_t off = 0, id = 0; off < file.size(); off += ps, ++id) {
      size_t n = std::min<size_t>(ps, file.size() - off);
      pages.push_back(Page{id, {file.begin() + off, file.begin() + off + n}});
    }
    pages.push_back(Page{kFileLengthPageId, encode_file_length(file.size())});
    return pages;
  }
  for (const auto& p : v["pages"]) pages.push_back(Page{p["id"].get<uint64_t>(), page_bytes(p)});
  return pages;
}

struct Vector {
  json spec;
  SegmentHeader header;
  int level = 0;
  std::vector<Page> pages;
};

// Reads the manifest, resolving a prev_checksum that names an earlier file
// to that file's checksum. DUCKBLOCK_WRITE_ZSTD_VECTORS=1 (re)writes the
// files and the manifest's results from the encoder: only when the encoding
// is meant to change, and say so in the commit.
std::vector<Vector> vectors() {
  std::string path = test::data_path("hadbp-zstd/manifest.json");
  std::ifstream in(path);
  json m = json::parse(in);
  bool write = std::getenv("DUCKBLOCK_WRITE_ZSTD_VECTORS") != nullptr;
  std::map<std::string, uint64_t> sums;
  std::vector<Vector> out;
  for (auto& v : m["valid"]) {
    Vector x;
    x.level = v["level"].get<int>();
    x.header.flags = kFlagCompressed;
    x.header.seq = v["seq"].get<uint64_t>();
    std::string prev = v["prev_checksum"];
    x.header.prev_checksum = sums.count(prev) ? sums[prev] : parse_checksum_hex(prev);
    x.header.page_size = v["page_size"].get<uint32_t>();
    x.header.created_ms = v["created_ms"].get<int64_t>();
    x.pages = vector_pages(v);
    x.header.page_count = static_cast<uint32_t>(x.pages.size());
    uint64_t sum = 0;
    auto bytes = encode_segment(x.header, x.pages, &sum, x.level);
    sums[v["file"].get<std::string>()] = sum;
    if (write) {
      v["prev_checksum"] = checksum_hex(x.header.prev_checksum);
      v["checksum"] = checksum_hex(sum);
      v["page_count"] = x.header.page_count;
      v["encoded_size"] = bytes.size();
      v["sha256"] = to_hex(sha256(bytes));
      write_file_atomic(test::data_path("hadbp-zstd/" + v["file"].get<std::string>()), bytes);
    }
    x.spec = v;
    out.push_back(std::move(x));
  }
  if (write) {
    std::string text = m.dump(1) + "\n";
    write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  return out;
}

TEST(FormatCompress, GoldenVectorsDecodeToTheirPagesWithThePlainChecksum) {
  auto vs = vectors();
  ASSERT_EQ(vs.size(), 5u);
  for (const auto& v : vs) {
    SCOPED_TRACE(v.spec["file"].get<std::string>());
    auto bytes = read_file(test::data_path("hadbp-zstd/" + v.spec["file"].get<std::string>()));
    EXPECT_EQ(bytes.size(), v.spec["encoded_size"].get<size_t>());
    Segment s = decode_segment(bytes);
    EXPECT_EQ(s.header, v.header);
    EXPECT_EQ(s.pages, v.pages);
    EXPECT_EQ(checksum_hex(s.checksum), v.spec["checksum"]);
    // The checksum is the plain segment's: compression never changes a chain.
    SegmentHeader plain = v.header;
    plain.flags = 0;
    uint64_t plain_sum = 0;
    auto plain_bytes = encode_segment(plain, v.pages, &plain_sum);
    EXPECT_EQ(plain_sum, s.checksum);
    if (!v.pages.empty()) EXPECT_LT(bytes.size(), plain_bytes.size());
  }
}

TEST(FormatCompress, EncodingTheInputsReproducesEachVectorByteForByte) {
  for (const auto& v : vectors()) {
    SCOPED_TRACE(v.spec["file"].get<std::string>());
    uint64_t sum = 0;
    auto bytes = encode_segment(v.header, v.pages, &sum, v.level);
    EXPECT_EQ(to_hex(sha256(bytes)), v.spec["sha256"]);
    EXPECT_EQ(checksum_hex(sum), v.spec["checksum"]);
    // The streaming writer makes the same bytes and counts them.
    VectorSink sink;
    SegmentWriter w(sink, v.header, v.level);
    for (const auto& p : v.pages) w.add_page(p.id, p.data);
    EXPECT_EQ(w.finish(), sum);
    EXPECT_EQ(w.bytes_written(), bytes.size());
    EXPECT_EQ(sink.data(), bytes);
  }
}

TEST(FormatCompress, CompressedChainAppliesLikeThePlainOne) {
  test::TempDir dir;
  ChainPosition zat{0, 0}, pat{0, 0};
  for (const char* name : {"zstd_chain_1.hadbp", "zstd_chain_2.hadbp", "zstd_chain_3_empty.hadbp"}) {
    std::string z = test::data_path(std::string("hadbp-zstd/") + name);
    Segment s = decode_segment(read_file(z));
    SegmentHeader plain = s.header;
    plain.flags = 0;
    write_file_atomic(dir / "plain.hadbp", encode_segment(plain, s.pages));
    zat = apply_segment(dir / "z.bin", z, zat).position;
    pat = apply_segment(dir / "p.bin", dir / "plain.hadbp", pat).position;
    EXPECT_EQ(zat.checksum, pat.checksum);
  }
  EXPECT_EQ(read_file(dir / "z.bin"), read_file(dir / "p.bin"));
  EXPECT_EQ(read_file(dir / "z.bin").size(), 20480u);  // the length record shrank it
}

std::vector<Page> mixed_pages(size_t n, uint32_t ps, unsigned seed) {
  std::mt19937 rng(seed);
  auto file = sample_file();
  std::vector<Page> pages;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint8_t> d(ps, 0);
    switch (i % 3) {
      case 0: break;  // a zero page
      case 1:
        for (auto& b : d) b = static_cast<uint8_t>(rng());
        break;
      case 2: {
        size_t off = (i * ps) % (file.size() - ps);
        std::copy(file.begin() + off, file.begin() + off + ps, d.begin());
      }
    }
    pages.push_back(Page{i * 3, d});
  }
  return pages;
}

std::vector<uint8_t> compressed(const std::vector<Page>& pages, uint32_t ps = 4096, int level = 3,
                                uint64_t* sum = nullptr) {
  SegmentHeader h;
  h.flags = kFlagCompressed;
  h.page_size = ps;
  h.seq = 4;
  h.prev_checksum = 0xfeedfacecafebeefull;
  h.created_ms = 1764633600000;
  return encode_segment(h, pages, sum, level);
}

ErrorKind kind_of(std::span<const uint8_t> bytes, SegmentReaderOptions o = {}) {
  try {
    decode_segment(bytes, o);
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "decoded without error";
  return ErrorKind::kIO;
}

std::string error_of(std::span<const uint8_t> bytes, SegmentReaderOptions o = {}) {
  try {
    decode_segment(bytes, o);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "decoded without error";
  return "";
}

// A source that does not know its length and yields a few bytes at a time,
// as a network stream may.
class TrickleSource final : public ByteSource {
 public:
  explicit TrickleSource(std::span<const uint8_t> d) : d_(d) {}
  size_t read(void* buf, size_t n) override {
    size_t k = std::min({n, d_.size() - pos_, size_t{7}});
    std::memcpy(buf, d_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::span<const uint8_t> d_;
  size_t pos_ = 0;
};

TEST(FormatCompress, RoundTripsThroughEveryReader) {
  for (size_t n : {0, 1, 2, 300}) {
    SCOPED_TRACE(n);
    auto pages = mixed_pages(n, 4096, 7);
    pages.push_back(Page{kFileLengthPageId, encode_file_length(123456)});
    uint64_t sum = 0;
    auto z = compressed(pages, 4096, 3, &sum);
    Segment s = decode_segment(z);
    EXPECT_EQ(s.pages, pages);
    EXPECT_EQ(s.checksum, sum);
    EXPECT_EQ(s.header.flags, kFlagCompressed);
    TrickleSource trickle(z);
    auto summary = verify_segment(trickle);
    EXPECT_EQ(summary.checksum, sum);
    EXPECT_EQ(summary.encoded_size, z.size());
    EXPECT_EQ(summary.file_length, 123456u);
    MemorySource mem(z);
    EXPECT_EQ(verify_segment(mem).encoded_size, z.size());
  }
}

TEST(FormatCompress, AReaderThatIgnoresTheFlagsRejectsEveryCompressedSegment) {
  // Many pages in few bytes (the size check fails first), few pages (the
  // guard record's length fails), none at all (the guard is read as the
  // trailer and bytes follow it): each must be an error, from a source that
  // knows its length and from one that does not.
  std::vector<std::vector<Page>> cases = {
      {}, mixed_pages(1, 4096, 1), mixed_pages(30, 4096, 2), std::vector<Page>(2000, Page{0, std::vector<uint8_t>(4096)})};
  for (size_t i = 0; i < cases[3].size(); ++i) cases[3][i].id = i;
  for (const auto& pages : cases) {
    SCOPED_TRACE(pages.size());
    auto z = compressed(pages);
    std::string msg = error_of(z, SegmentReaderOptions{.ignore_flags = true, .verified_checksum = std::nullopt});
    if (pages.size() == 1) EXPECT_NE(msg.find("page data length 4294967295 exceeds page size"), std::string::npos) << msg;
    if (pages.empty()) EXPECT_NE(msg.find("trailing bytes"), std::string::npos) << msg;
    TrickleSource trickle(z);
    EXPECT_THROW(
        {
          SegmentReader r(trickle, SegmentReaderOptions{.ignore_flags = true, .verified_checksum = std::nullopt});
          PageView p;
          while (r.next(p)) {
          }
        },
        Error);
    // Our reader reads them.
    EXPECT_EQ(decode_segment(z).pages, pages);
  }
}

TEST(FormatCompress, UnknownFlagsAreUnsupportedNotMisread) {
  auto plain = encode_segment(SegmentHeader{.page_size = 4096}, mixed_pages(2, 4096, 3));
  for (uint8_t flags : {0x02, 0x03, 0x80}) {
    auto b = plain;
    b[6] = flags;
    EXPECT_EQ(kind_of(b), ErrorKind::kUnsupported) << int(flags);
  }
  EXPECT_ERROR_KIND(encode_segment(SegmentHeader{.flags = 0x02, .page_size = 4096}, {}), ErrorKind::kInvalidArgument);
  // The guard's id must overflow a file offset, which 4-byte ids cannot.
  EXPECT_THROW(encode_segment(SegmentHeader{.flags = kFlagCompressed, .page_id_size = 4, .page_size = 4096}, {}),
               Error);
  auto z = compressed(mixed_pages(2, 4096, 3));
  z[7] = 4;
  EXPECT_NE(error_of(z).find("page_id_size 8"), std::string::npos);
}

TEST(FormatCompress, EveryTruncationIsCorruption) {
  auto z = compressed(mixed_pages(5, 4096, 4));
  for (size_t len = 0; len < z.size(); ++len) {
    SCOPED_TRACE(len);
    EXPECT_EQ(kind_of(std::span<const uint8_t>(z.data(), len)), ErrorKind::kCorruption);
    TrickleSource t(std::span<const uint8_t>(z.data(), len));
    try {
      verify_segment(t);
      ADD_FAILURE() << "verified a truncated segment";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption);
    }
  }
  auto longer = z;
  longer.push_back(0);
  EXPECT_NE(error_of(longer).find("trailing bytes"), std::string::npos);
}

// A flipped bit may leave a frame that still decodes to the same records (a
// larger window size, say); what must never happen is different pages.
TEST(FormatCompress, EveryFlippedByteAfterTheHeaderIsCorruptionOrHarmless) {
  auto pages = mixed_pages(4, 4096, 5);
  auto z = compressed(pages);
  int rejected = 0;
  for (size_t i = kHeaderSize; i < z.size(); ++i) {
    auto b = z;
    b[i] ^= 0x10;
    try {
      EXPECT_EQ(decode_segment(b).pages, pages) << "byte " << i;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << "byte " << i << ": " << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, int(z.size() - kHeaderSize) - 8);
}

TEST(FormatCompress, FrameHoldingMorePagesThanTheHeaderIsCorruption) {
  auto z = compressed(mixed_pages(3, 4096, 6));
  z[31] = 2;  // page_count (big-endian u32 at 28) from 3 to 2
  EXPECT_NE(error_of(z).find("more than the header's 2 pages"), std::string::npos);
  z[31] = 4;
  EXPECT_EQ(kind_of(z), ErrorKind::kCorruption);  // the frame ends a page early
}

// A hand-made zstd frame of raw blocks around `payload`, declaring
// `content_size` and either a window (descriptor byte) or a single segment
// (window = content size).
std::vector<uint8_t> raw_frame(std::span<const uint8_t> payload, uint64_t content_size, bool single_segment,
                               uint8_t window_descriptor = 0x58 /* 2^21 */) {
  std::vector<uint8_t> f = {0x28, 0xb5, 0x2f, 0xfd};
  f.push_back(static_cast<uint8_t>((3u << 6) | (single_segment ? 1u << 5 : 0)));  // 8-byte content size
  if (!single_segment) f.push_back(window_descriptor);
  for (int i = 0; i < 8; ++i) f.push_back(static_cast<uint8_t>(content_size >> (8 * i)));
  size_t block = std::max<size_t>(payload.size(), 0);
  uint32_t bh = 1u /* last */ | (0u << 1) /* raw */ | static_cast<uint32_t>(block << 3);
  f.push_back(bh & 0xff);
  f.push_back((bh >> 8) & 0xff);
  f.push_back((bh >> 16) & 0xff);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

// A compressed segment of one 16-byte page whose frame is `frame`.
std::vector<uint8_t> segment_with_frame(const std::function<std::vector<uint8_t>(std::span<const uint8_t>)>& frame) {
  std::vector<Page> pages = {Page{5, std::vector<uint8_t>(16, 0xab)}};
  SegmentHeader h{.page_size = 4096};
  uint64_t sum = 0;
  auto plain = encode_segment(h, pages, &sum);
  std::span<const uint8_t> records(plain.data() + kHeaderSize, plain.size() - kHeaderSize - kTrailerSize);
  h.flags = kFlagCompressed;
  h.page_count = 1;
  std::vector<uint8_t> out(kHeaderSize);
  serialize_header(h, std::span<uint8_t, kHeaderSize>(out.data(), kHeaderSize));
  out.insert(out.end(), 12, 0xff);
  auto f = frame(records);
  out.insert(out.end(), f.begin(), f.end());
  out.insert(out.end(), plain.end() - kTrailerSize, plain.end());
  return out;
}

TEST(FormatCompress, FramesClaimingHugeSizesOrWindowsAreCorruption) {
  // The hand-made frame is right when it tells the truth...
  auto honest = segment_with_frame([](auto r) { return raw_frame(r, r.size(), false); });
  EXPECT_EQ(decode_segment(honest).pages.at(0).data, std::vector<uint8_t>(16, 0xab));
  auto honest_single = segment_with_frame([](auto r) { return raw_frame(r, r.size(), true); });
  EXPECT_EQ(decode_segment(honest_single).pages.size(), 1u);
  // ...and rejected, without allocating what it claims, when it does not.
  auto huge = segment_with_frame([](auto r) { return raw_frame(r, uint64_t{1} << 40, false); });
  EXPECT_EQ(kind_of(huge), ErrorKind::kCorruption);
  auto huge_single = segment_with_frame([](auto r) { return raw_frame(r, uint64_t{1} << 40, true); });
  EXPECT_EQ(kind_of(huge_single), ErrorKind::kCorruption);
  auto huge_window = segment_with_frame([](auto r) { return raw_frame(r, r.size(), false, 0xf8 /* 2^41 */); });
  EXPECT_NE(error_of(huge_window).find("window of at most 8 MiB"), std::string::npos);
  // One step above the 8 MiB limit is refused, the limit itself is not.
  auto window_16m = segment_with_frame([](auto r) { return raw_frame(r, r.size(), false, 0x70 /* 2^24 */); });
  EXPECT_NE(error_of(window_16m).find("window of at most 8 MiB"), std::string::npos);
  auto window_8m = segment_with_frame([](auto r) { return raw_frame(r, r.size(), false, 0x68 /* 2^23 */); });
  EXPECT_EQ(decode_segment(window_8m).pages.size(), 1u);
  auto small_claim = segment_with_frame([](auto r) { return raw_frame(r, r.size() - 1, false); });
  EXPECT_EQ(kind_of(small_claim), ErrorKind::kCorruption);
}

TEST(FormatCompress, GarbageInsteadOfAFrameOrGuardIsCorruption) {
  auto z = compressed(mixed_pages(2, 4096, 8));
  auto bad_magic = z;
  bad_magic[kHeaderSize + 12] ^= 0xff;  // the frame's magic number
  EXPECT_NE(error_of(bad_magic).find("does not decode"), std::string::npos);
  auto bad_guard = z;
  bad_guard[kHeaderSize + 3] = 0;
  EXPECT_NE(error_of(bad_guard).find("guard record"), std::string::npos);
}

TEST(FormatCompress, EveryLevelRoundTripsAndLevelsOutOfRangeAreRefused) {
  auto pages = mixed_pages(40, 4096, 9);
  for (int level : {1, 3, 9, 19}) {
    auto z = compressed(pages, 4096, level);
    EXPECT_EQ(decode_segment(z).pages, pages) << level;
  }
  EXPECT_ERROR_KIND(compressed(pages, 4096, 20), ErrorKind::kInvalidArgument);
  EXPECT_ERROR_KIND(compressed(pages, 4096, 0), ErrorKind::kInvalidArgument);
}

TEST(FormatCompress, ParsesTheCompressionSetting) {
  EXPECT_EQ(parse_compression("none"), 0);
  EXPECT_EQ(parse_compression("off"), 0);
  EXPECT_EQ(parse_compression("zstd"), kDefaultCompressionLevel);
  EXPECT_EQ(parse_compression("zstd:1"), 1);
  EXPECT_EQ(parse_compression("zstd:19"), 19);
  for (const char* bad : {"", "zstd:0", "zstd:20", "zstd:", "zstd:-1", "gzip", "zstd:3x"}) {
    try {
      parse_compression(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    }
  }
  EXPECT_EQ(compression_name(0), "none");
  EXPECT_EQ(compression_name(7), "zstd:7");
}

}  // namespace
}  // namespace duckblock
