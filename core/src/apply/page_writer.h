// Writes a segment's pages to a file on a helper thread, coalescing runs of
// adjacent pages into large pwrites (internal to apply/).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace duckblock {
class Env;
}

namespace duckblock::detail {

// pwrite of all `n` bytes at `offset` through `env`, retrying short writes
// and EINTR; throws Error(kIO) naming `path`.
void pwrite_all(Env& env, int fd, const uint8_t* p, size_t n, uint64_t offset, const std::string& path);

// The caller decodes and verifies; this writes. write() copies the bytes
// into the current run (the caller's buffer is free when it returns); a run
// is handed to the writer thread when the next page is not adjacent or the
// run is full. Memory: kRuns runs of kRunBytes, whatever the segment's size.
// Every 8 MiB written the kernel is asked to start writeback, so the final
// fdatasync has little left to do. Writes go through `env` (env.h), so fault
// injection reaches them; the writeback hint does not (it reports nothing).
class PageWriter {
 public:
  PageWriter(Env& env, int fd, std::string path);
  ~PageWriter();
  PageWriter(const PageWriter&) = delete;
  PageWriter& operator=(const PageWriter&) = delete;
  void write(uint64_t offset, const uint8_t* data, size_t n);
  // Writes everything handed over so far and waits for it; rethrows the
  // writer thread's first error. Does not fsync.
  void flush();

  static constexpr size_t kRunBytes = size_t{1} << 20;
  static constexpr size_t kRuns = 4;

 private:
  struct Run {
    uint64_t offset = 0;
    std::vector<uint8_t> buf;
    size_t len = 0;
  };
  void submit();
  void loop();
  void check_error();

  Env& env_;
  int fd_;
  std::string path_;
  Run current_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Run> queue_;
  std::vector<Run> free_;
  size_t in_flight_ = 0;  // runs queued or being written
  std::exception_ptr error_;
  bool stop_ = false;
  uint64_t since_writeback_ = 0;
  uint64_t wb_lo_ = UINT64_MAX, wb_hi_ = 0;
  std::thread thread_;
};

}  // namespace duckblock::detail
