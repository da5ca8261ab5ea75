// libFuzzer target for the hadbp v1 decoder (docs/FORMAT.md).
//
// Every input is decoded three ways: the in-memory decode_segment, the
// streaming SegmentReader over a source that hands out bytes in uneven pieces
// and knows its length, and verify_segment over a source that does not know
// its length (as a network stream may not). They must agree on whether the
// input is a valid segment and, if it is, on every field. A valid input must
// re-encode to exactly its own bytes, with the in-memory encoder and with the
// streaming writer. Any defect must surface as duckblock::Error, never as a
// crash, a sanitizer report or another exception.
//
// Compressed segments (flag 0x01) are decoded the same three ways. A valid
// one cannot be expected to re-encode to its own bytes (another zstd encoder
// or level may have made it), so it must instead re-encode plain to the same
// checksum, and a v1-only reader (one that ignores the flags) must reject it.
// Every valid plain segment is also compressed, and the compressed copy, a
// copy with one byte flipped and a truncated copy are decoded: the first must
// give the same pages, the others the same pages or a kCorruption error.
//
// Random bytes almost never carry a matching checksum, which would keep the
// fuzzer out of the decoder's success path. So each input is also tried with
// its last 8 bytes replaced by the checksum its body would have: the checksum
// covers prev_checksum (bytes 20..27) and everything between the header and
// the trailer, so it can be computed without parsing anything.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/sha256.h"

namespace {

using namespace duckblock;

// A check that stays on in release builds: a failure is a finding.
#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                  \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

// Yields the data in pieces of 1 to 4096 bytes chosen by a simple PRNG seeded
// from the data, so the reader's handling of short reads is exercised.
class ChunkedSource final : public ByteSource {
 public:
  ChunkedSource(std::span<const uint8_t> data, bool know_length)
      : data_(data), know_length_(know_length), state_(0x9e3779b97f4a7c15ull ^ data.size()) {}

  size_t read(void* buf, size_t n) override {
    size_t left = data_.size() - pos_;
    if (n == 0 || left == 0) return 0;
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    size_t piece = 1 + static_cast<size_t>((state_ >> 33) % 4096);
    size_t k = std::min({n, left, piece});
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

  std::optional<uint64_t> remaining() const override {
    if (!know_length_) return std::nullopt;
    return data_.size() - pos_;
  }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool know_length_;
  uint64_t state_;
};

// Unknown flag bits are valid input this build cannot handle; anything else
// wrong is corruption.
void check_error(std::span<const uint8_t> bytes, const Error& e) {
  bool unknown_flags = bytes.size() >= kHeaderSize && (bytes[6] & ~kFlagCompressed) != 0;
  FUZZ_CHECK(e.kind() == ErrorKind::kCorruption || (unknown_flags && e.kind() == ErrorKind::kUnsupported));
}

std::optional<Segment> try_decode(std::span<const uint8_t> bytes, SegmentReaderOptions options = {}) {
  try {
    return decode_segment(bytes, options);
  } catch (const Error& e) {
    if (options.ignore_flags) {
      FUZZ_CHECK(e.kind() == ErrorKind::kCorruption);
    } else {
      check_error(bytes, e);
    }
    FUZZ_CHECK(std::strlen(e.what()) > 0);
    return std::nullopt;
  }
}

std::optional<Segment> try_stream(std::span<const uint8_t> bytes) {
  ChunkedSource src(bytes, /*know_length=*/true);
  try {
    SegmentReader reader(src);
    Segment s;
    s.header = reader.header();
    PageView page;
    while (reader.next(page)) {
      FUZZ_CHECK(page.data.size() <= s.header.page_size);
      s.pages.push_back(Page{page.id, {page.data.begin(), page.data.end()}});
    }
    FUZZ_CHECK(reader.bytes_read() == bytes.size());
    s.checksum = reader.checksum();
    return s;
  } catch (const Error& e) {
    check_error(bytes, e);
    return std::nullopt;
  }
}

std::optional<SegmentSummary> try_verify_unbounded(std::span<const uint8_t> bytes) {
  ChunkedSource src(bytes, /*know_length=*/false);
  try {
    return verify_segment(src);
  } catch (const Error& e) {
    check_error(bytes, e);
    return std::nullopt;
  }
}

void check_compressed_copies(const Segment& s);

void check_one(std::span<const uint8_t> bytes, bool derived = false) {
  auto decoded = try_decode(bytes);
  auto streamed = try_stream(bytes);
  auto verified = try_verify_unbounded(bytes);
  FUZZ_CHECK(decoded.has_value() == streamed.has_value());
  FUZZ_CHECK(decoded.has_value() == verified.has_value());
  if (!decoded) return;

  const Segment& s = *decoded;
  FUZZ_CHECK(s.header == streamed->header);
  FUZZ_CHECK(s.pages == streamed->pages);
  FUZZ_CHECK(s.checksum == streamed->checksum);
  FUZZ_CHECK(s.header == verified->header);
  FUZZ_CHECK(s.checksum == verified->checksum);
  FUZZ_CHECK(verified->encoded_size == bytes.size());
  FUZZ_CHECK(s.pages.size() == s.header.page_count);
  for (size_t i = 0; i < s.pages.size(); ++i) {
    FUZZ_CHECK(s.pages[i].data.size() <= s.header.page_size);
    if (i > 0) FUZZ_CHECK(s.pages[i - 1].id < s.pages[i].id);
  }
  const Page* last = s.pages.empty() ? nullptr : &s.pages.back();
  bool has_length = last && last->id == kFileLengthPageId && last->data.size() == 8;
  FUZZ_CHECK(verified->file_length.has_value() == has_length);
  if (has_length) FUZZ_CHECK(*verified->file_length == decode_file_length(last->data));

  if (s.header.flags & kFlagCompressed) {
    // A reader that ignores the flags must never accept a compressed segment.
    FUZZ_CHECK(!try_decode(bytes, SegmentReaderOptions{.ignore_flags = true}));
    SegmentHeader plain = s.header;
    plain.flags = 0;
    uint64_t sum = 0;
    encode_segment(plain, s.pages, &sum);
    FUZZ_CHECK(sum == s.checksum);
    return;
  }
  if (!derived) check_compressed_copies(s);

  // Round trip: the in-memory encoder...
  uint64_t sum = 0;
  std::vector<uint8_t> again = encode_segment(s.header, s.pages, &sum);
  FUZZ_CHECK(sum == s.checksum);
  FUZZ_CHECK(again.size() == bytes.size());
  FUZZ_CHECK(std::memcmp(again.data(), bytes.data(), bytes.size()) == 0);

  // ...and the streaming writer must both reproduce the input byte for byte.
  VectorSink sink;
  SegmentWriter writer(sink, s.header);
  for (const auto& p : s.pages) writer.add_page(p.id, p.data);
  FUZZ_CHECK(writer.finish() == s.checksum);
  FUZZ_CHECK(writer.bytes_written() == bytes.size());
  FUZZ_CHECK(sink.data().size() == bytes.size() &&
             std::memcmp(sink.data().data(), bytes.data(), bytes.size()) == 0);
}

void check_compressed_copies(const Segment& s) {
  if (s.header.page_id_size != 8) return;  // compressed segments use 8-byte ids
  SegmentHeader h = s.header;
  h.flags = kFlagCompressed;
  uint64_t sum = 0;
  std::vector<uint8_t> z = encode_segment(h, s.pages, &sum, 1);
  FUZZ_CHECK(sum == s.checksum);
  auto back = try_decode(z);
  FUZZ_CHECK(back && back->pages == s.pages && back->checksum == s.checksum && back->header == h);
  check_one(z, true);
  // Damage it where the pages' own bytes choose, past the header.
  uint64_t pick = s.checksum;
  std::vector<uint8_t> flipped = z;
  size_t at = kHeaderSize + pick % (z.size() - kHeaderSize);
  flipped[at] ^= static_cast<uint8_t>(1u << ((pick >> 32) % 8));
  if (auto d = try_decode(flipped)) FUZZ_CHECK(d->pages == s.pages);
  check_one(flipped, true);
  std::span<const uint8_t> cut(z.data(), kHeaderSize + (pick >> 16) % (z.size() - kHeaderSize));
  FUZZ_CHECK(!try_decode(cut));
  check_one(cut, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  check_one(bytes);

  constexpr size_t kMin = kHeaderSize + kTrailerSize;
  if (size >= kMin) {
    std::vector<uint8_t> fixed(bytes.begin(), bytes.end());
    Sha256 hash;
    hash.update(fixed.data() + 20, 8);
    hash.update(fixed.data() + kHeaderSize, size - kMin);
    Sha256Digest digest = hash.finish();
    std::memcpy(fixed.data() + size - kTrailerSize, digest.data(), kTrailerSize);
    if (fixed != std::vector<uint8_t>(bytes.begin(), bytes.end())) check_one(fixed);
  }
  return 0;
}
