// The streaming writer and reader: bounded memory, strict ordering, and every
// single-byte corruption of an encoded segment detected.
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "test_util.h"

namespace duckblock {
namespace {

SegmentHeader header(uint32_t count, uint32_t page_size = 4096) {
  SegmentHeader h;
  h.page_size = page_size;
  h.seq = 7;
  h.prev_checksum = 0x1122334455667788ull;
  h.page_count = count;
  h.created_ms = 1700000000000;
  return h;
}

// A source that yields pages' worth of bytes without holding them, to check
// the reader's memory is bounded by one page, not the segment.
class CountingSink : public ByteSink {
 public:
  void write(const void*, size_t n) override { bytes += n; }
  uint64_t bytes = 0;
};

TEST(FormatStream, WriterRejectsOutOfOrderAndMiscountedPages) {
  VectorSink sink;
  SegmentWriter w(sink, header(2));
  std::vector<uint8_t> page(16, 1);
  w.add_page(5, page);
  EXPECT_ERROR_KIND(w.add_page(5, page), ErrorKind::kInvalidArgument);
  EXPECT_ERROR_KIND(w.add_page(4, page), ErrorKind::kInvalidArgument);
  EXPECT_ERROR_KIND(w.finish(), ErrorKind::kInvalidArgument);  // one page short
  w.add_page(6, page);
  EXPECT_ERROR_KIND(w.add_page(7, page), ErrorKind::kInvalidArgument);  // one too many
  w.finish();
}

TEST(FormatStream, WriterRejectsOversizedPage) {
  VectorSink sink;
  SegmentWriter w(sink, header(1, 16));
  std::vector<uint8_t> page(17, 1);
  EXPECT_ERROR_KIND(w.add_page(0, page), ErrorKind::kInvalidArgument);
}

TEST(FormatStream, StreamedRoundTripMatchesInMemoryEncoding) {
  std::vector<Page> pages;
  for (uint64_t id = 0; id < 64; id += 3) pages.push_back({id, std::vector<uint8_t>(4096, uint8_t(id))});
  uint64_t sum = 0;
  auto bytes = encode_segment(header(0), pages, &sum);
  MemorySource src(bytes);
  SegmentReader r(src);
  EXPECT_EQ(r.header().page_count, pages.size());
  PageView p;
  size_t i = 0;
  while (r.next(p)) {
    ASSERT_LT(i, pages.size());
    EXPECT_EQ(p.id, pages[i].id);
    EXPECT_TRUE(std::equal(p.data.begin(), p.data.end(), pages[i].data.begin(), pages[i].data.end()));
    ++i;
  }
  EXPECT_EQ(i, pages.size());
  EXPECT_EQ(r.checksum(), sum);
}

TEST(FormatStream, EveryFlippedByteIsDetected) {
  std::vector<Page> pages = {{1, std::vector<uint8_t>(100, 9)}, {4, std::vector<uint8_t>(50, 3)}};
  auto good = encode_segment(header(0, 128), pages);
  // Bytes the checksum does not cover: page_size (8..11), seq (12..19),
  // flags (6) and created_ms (32..39). Callers cross-check those.
  auto uncovered = [](size_t i) { return i == 6 || (i >= 8 && i < 20) || (i >= 32 && i < 40); };
  for (size_t i = 0; i < good.size(); ++i) {
    if (uncovered(i)) continue;
    auto bad = good;
    bad[i] ^= 0x01;
    EXPECT_ERROR_KIND(decode_segment(bad), ErrorKind::kCorruption) << "byte " << i;
  }
}

TEST(FormatStream, TruncationAtEveryLengthIsDetected) {
  std::vector<Page> pages = {{1, std::vector<uint8_t>(100, 9)}, {4, std::vector<uint8_t>(50, 3)}};
  auto good = encode_segment(header(0, 128), pages);
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    EXPECT_ERROR_KIND(decode_segment(cut), ErrorKind::kCorruption) << "length " << n;
  }
}

TEST(FormatStream, HugePageCountIsRejectedBeforeAllocating) {
  auto bytes = encode_segment(header(0), {{0, std::vector<uint8_t>(10, 1)}});
  bytes[28] = bytes[29] = bytes[30] = bytes[31] = 0xff;
  try {
    decode_segment(bytes);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4294967295 pages"), std::string::npos);
  }
}

TEST(FormatStream, FileLengthRecordRoundTrips) {
  auto bytes = encode_segment(header(0), {{0, std::vector<uint8_t>(10, 1)},
                                          {kFileLengthPageId, encode_file_length(123456789)}});
  MemorySource src(bytes);
  auto s = verify_segment(src);
  ASSERT_TRUE(s.file_length);
  EXPECT_EQ(*s.file_length, 123456789u);
}

TEST(FormatStream, ChecksumHexParsing) {
  EXPECT_EQ(parse_checksum_hex("0x00000000000000ff"), 255u);
  EXPECT_EQ(checksum_hex(0xabcdefull), "0000000000abcdef");
  EXPECT_ERROR_KIND(parse_checksum_hex("xyz"), ErrorKind::kInvalidArgument);
  EXPECT_ERROR_KIND(parse_checksum_hex("11112222333344445"), ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace duckblock
