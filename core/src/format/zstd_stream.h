// zstd streams for compressed hadbp segments (docs/FORMAT.md, "Compressed
// segments"). Internal to the format: SegmentWriter and SegmentReader route a
// segment's page records through these when header flag 0x01 is set.
#pragma once

#include <cstdint>
#include <vector>

#include "duckblock/io.h"

typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;

namespace duckblock::detail {

// The largest zstd window a decoder accepts (8 MiB, what levels up to 19 use
// on large inputs). A frame that asks for more is rejected before anything
// is allocated for it, so a hostile frame header cannot drive memory.
inline constexpr int kZstdWindowLogMax = 23;

// Compresses everything written into one zstd frame on `out`. finish() ends
// the frame; out_bytes() counts what reached `out`.
class ZstdSink final : public ByteSink {
 public:
  ZstdSink(ByteSink& out, int level);
  ~ZstdSink() override;
  ZstdSink(const ZstdSink&) = delete;
  ZstdSink& operator=(const ZstdSink&) = delete;
  void write(const void* buf, size_t n) override;
  void finish();
  uint64_t out_bytes() const { return out_bytes_; }

 private:
  void drain(int mode, const void* buf, size_t n);
  ByteSink& out_;
  ZSTD_CCtx* cctx_ = nullptr;
  // Small writes (a page's 12-byte prefix, a 4 KiB page) are gathered here
  // and handed to zstd in large pieces: a call per record costs more than
  // the compression of a small one.
  std::vector<uint8_t> ibuf_;
  size_t ibuf_len_ = 0;
  std::vector<uint8_t> obuf_;
  uint64_t out_bytes_ = 0;
};

// Decompresses one zstd frame read from `in`. read() returns 0 once the frame
// has ended. Input is read ahead in chunks, so bytes after the frame may sit
// in this object's buffer: take them with read_after_frame().
class ZstdSource final : public ByteSource {
 public:
  explicit ZstdSource(ByteSource& in);
  ~ZstdSource() override;
  ZstdSource(const ZstdSource&) = delete;
  ZstdSource& operator=(const ZstdSource&) = delete;
  size_t read(void* buf, size_t n) override;
  // True once the frame has been decoded to its end.
  bool frame_ended() const { return ended_; }
  // Compressed bytes consumed from `in` so far (including read-ahead).
  uint64_t in_bytes() const { return in_bytes_ - (ibuf_len_ - ibuf_pos_); }
  // After the frame: reads the bytes that follow it (read-ahead first, then
  // `in`).
  size_t read_after_frame(void* buf, size_t n);

 private:
  bool refill();
  ByteSource& in_;
  ZSTD_DCtx* dctx_ = nullptr;
  std::vector<uint8_t> ibuf_;
  size_t ibuf_pos_ = 0;
  size_t ibuf_len_ = 0;
  uint64_t in_bytes_ = 0;
  bool ended_ = false;
  bool in_eof_ = false;
};

}  // namespace duckblock::detail
