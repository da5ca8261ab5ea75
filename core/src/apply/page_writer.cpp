#include "page_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "duckblock/env.h"
#include "duckblock/error.h"

namespace duckblock::detail {

namespace {
constexpr uint64_t kWritebackChunk = uint64_t{8} << 20;
}

void pwrite_all(Env& env, int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& path) {
  while (n > 0) {
    ssize_t w = env.pwrite(fd, p, n, static_cast<int64_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
}

PageWriter::PageWriter(Env& env, int fd, std::string path) : env_(env), fd_(fd), path_(std::move(path)) {
  current_.buf.resize(kRunBytes);
  for (size_t i = 1; i < kRuns; ++i) free_.push_back(Run{0, std::vector<uint8_t>(kRunBytes), 0});
  thread_ = std::thread([this] { loop(); });
}

PageWriter::~PageWriter() {
  {
    // Reached without flush() only on an error path: what is still queued
    // is not wanted.
    std::lock_guard l(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void PageWriter::check_error() {
  if (error_) std::rethrow_exception(error_);
}

void PageWriter::write(uint64_t offset, const uint8_t* data, size_t n) {
  while (n > 0) {
    if (current_.len > 0 && (offset != current_.offset + current_.len || current_.len == current_.buf.size())) {
      submit();
    }
    if (current_.len == 0) current_.offset = offset;
    size_t k = std::min(n, current_.buf.size() - current_.len);
    std::memcpy(current_.buf.data() + current_.len, data, k);
    current_.len += k;
    data += k;
    offset += k;
    n -= k;
  }
}

void PageWriter::submit() {
  if (current_.len == 0) return;
  std::unique_lock l(mu_);
  cv_.wait(l, [&] { return !free_.empty() || error_; });
  check_error();
  queue_.push_back(std::move(current_));
  ++in_flight_;
  current_ = std::move(free_.back());
  free_.pop_back();
  current_.len = 0;
  l.unlock();
  cv_.notify_all();
}

void PageWriter::flush() {
  submit();
  std::unique_lock l(mu_);
  cv_.wait(l, [&] { return in_flight_ == 0 || error_; });
  check_error();
}

void PageWriter::loop() {
  std::unique_lock l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ with nothing left
    Run run = std::move(queue_.front());
    queue_.pop_front();
    bool failed = error_ != nullptr;
    l.unlock();
    try {
      if (!failed) {
        pwrite_all(env_, fd_, run.buf.data(), run.len, run.offset, path_);
        wb_lo_ = std::min(wb_lo_, run.offset);
        wb_hi_ = std::max<uint64_t>(wb_hi_, run.offset + run.len);
        since_writeback_ += run.len;
#ifdef SYNC_FILE_RANGE_WRITE
        // Only a hint (the caller's fdatasync reports real errors).
        if (since_writeback_ >= kWritebackChunk) {
          ::sync_file_range(fd_, static_cast<off_t>(wb_lo_), static_cast<off_t>(wb_hi_ - wb_lo_),
                            SYNC_FILE_RANGE_WRITE);
          since_writeback_ = 0;
          wb_lo_ = UINT64_MAX;
          wb_hi_ = 0;
        }
#endif
      }
      l.lock();
    } catch (...) {
      l.lock();
      if (!error_) error_ = std::current_exception();
    }
    run.len = 0;
    free_.push_back(std::move(run));
    --in_flight_;
    cv_.notify_all();
  }
}

}  // namespace duckblock::detail
