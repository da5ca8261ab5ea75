#include "zstd_stream.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <cstring>
#include <string>

#include "duckblock/error.h"

namespace duckblock::detail {

namespace {

[[noreturn]] void corrupt(const std::string& msg) { throw Error(ErrorKind::kCorruption, msg); }

void check_c(size_t r, const char* what) {
  if (ZSTD_isError(r)) {
    throw Error(ErrorKind::kInvalidArgument, std::string("zstd ") + what + ": " + ZSTD_getErrorName(r));
  }
}

constexpr size_t kInputChunk = size_t{64} << 10;

}  // namespace

ZstdSink::ZstdSink(ByteSink& out, int level)
    : out_(out), ibuf_(ZSTD_CStreamInSize()), obuf_(ZSTD_CStreamOutSize()) {
  // Readers refuse windows above 8 MiB. Levels 1 to 19 stay within it (19
  // uses exactly 8 MiB on large inputs); the format allows no higher level.
  if (level < 1 || level > 19) {
    throw Error(ErrorKind::kInvalidArgument, "zstd level " + std::to_string(level) + " out of range 1..19");
  }
  cctx_ = ZSTD_createCCtx();
  if (!cctx_) throw Error(ErrorKind::kIO, "out of memory creating a zstd compressor");
  try {
    check_c(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level), "compression level");
    // The segment's SHA-256 trailer already protects the pages; a second
    // checksum would cost time and 4 bytes for nothing.
    check_c(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 0), "checksum flag");
  } catch (...) {
    // A throwing constructor runs no destructor.
    ZSTD_freeCCtx(cctx_);
    throw;
  }
}

ZstdSink::~ZstdSink() { ZSTD_freeCCtx(cctx_); }

void ZstdSink::drain(int mode, const void* buf, size_t n) {
  ZSTD_inBuffer in{buf, n, 0};
  for (;;) {
    ZSTD_outBuffer out{obuf_.data(), obuf_.size(), 0};
    size_t left = ZSTD_compressStream2(cctx_, &out, &in, static_cast<ZSTD_EndDirective>(mode));
    check_c(left, "compression");
    if (out.pos) {
      out_.write(obuf_.data(), out.pos);
      out_bytes_ += out.pos;
    }
    if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return;
  }
}

void ZstdSink::write(const void* buf, size_t n) {
  if (ibuf_len_ + n > ibuf_.size() && ibuf_len_) {
    drain(ZSTD_e_continue, ibuf_.data(), ibuf_len_);
    ibuf_len_ = 0;
  }
  if (n >= ibuf_.size()) {
    drain(ZSTD_e_continue, buf, n);
    return;
  }
  std::memcpy(ibuf_.data() + ibuf_len_, buf, n);
  ibuf_len_ += n;
}

void ZstdSink::finish() {
  drain(ZSTD_e_end, ibuf_.data(), ibuf_len_);
  ibuf_len_ = 0;
}

ZstdSource::ZstdSource(ByteSource& in) : in_(in), dctx_(ZSTD_createDCtx()), ibuf_(kInputChunk) {
  if (!dctx_) throw Error(ErrorKind::kIO, "out of memory creating a zstd decompressor");
  ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, kZstdWindowLogMax);
}

ZstdSource::~ZstdSource() { ZSTD_freeDCtx(dctx_); }

bool ZstdSource::refill() {
  size_t got = in_.read(ibuf_.data(), ibuf_.size());
  ibuf_pos_ = 0;
  ibuf_len_ = got;
  in_bytes_ += got;
  if (got == 0) in_eof_ = true;
  return got > 0;
}

size_t ZstdSource::read(void* buf, size_t n) {
  if (ended_ || n == 0) return 0;
  ZSTD_outBuffer out{buf, n, 0};
  for (;;) {
    if (ibuf_pos_ == ibuf_len_ && !in_eof_) refill();
    ZSTD_inBuffer in{ibuf_.data(), ibuf_len_, ibuf_pos_};
    size_t r = ZSTD_decompressStream(dctx_, &out, &in);
    ibuf_pos_ = in.pos;
    if (ZSTD_isError(r)) {
      std::string why = ZSTD_getErrorName(r);
      if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge) {
        why += "; frames must use a window of at most " + std::to_string((1u << kZstdWindowLogMax) >> 20) + " MiB";
      }
      corrupt("compressed page data does not decode (zstd: " + why + ")");
    }
    if (r == 0) {
      ended_ = true;
      return out.pos;
    }
    if (out.pos > 0) return out.pos;
    if (in_eof_ && ibuf_pos_ == ibuf_len_) {
      corrupt("truncated segment: the compressed page data ends inside its zstd frame");
    }
  }
}

size_t ZstdSource::read_after_frame(void* buf, size_t n) {
  if (ibuf_pos_ < ibuf_len_) {
    size_t k = std::min(n, ibuf_len_ - ibuf_pos_);
    std::memcpy(buf, ibuf_.data() + ibuf_pos_, k);
    ibuf_pos_ += k;
    return k;
  }
  size_t got = in_.read(buf, n);
  in_bytes_ += got;
  return got;
}

}  // namespace duckblock::detail
