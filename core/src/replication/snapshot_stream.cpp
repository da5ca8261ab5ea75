// Restoring a snapshot straight from the store: the download runs on a
// helper thread into a bounded pipe, this thread decodes and verifies, and
// the replica's page writer writes (three stages on up to three cores), with
// no temporary copy of the segment on disk.
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/restore.h"

namespace duckblock {

namespace {

// A bounded byte pipe between one writer (a store's get) and one reader (the
// segment decoder). Memory: at most kChunks chunks of kChunkBytes.
class Pipe final : public ByteSink, public ByteSource {
 public:
  static constexpr size_t kChunkBytes = size_t{1} << 20;
  static constexpr size_t kChunks = 8;

  void write(const void* buf, size_t n) override {
    auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return aborted_ || chunks_.size() < kChunks || (!chunks_.empty() && chunks_.back().size() < kChunkBytes); });
      if (aborted_) throw Error(ErrorKind::kIO, "restore stopped reading the snapshot");
      if (chunks_.empty() || chunks_.back().size() >= kChunkBytes) {
        // A chunk the reader is done with is reused: a fresh 1 MiB buffer
        // each time costs 256 page faults (a GiB of them per GiB restored).
        if (spare_.empty()) {
          chunks_.emplace_back();
          chunks_.back().reserve(kChunkBytes);
        } else {
          chunks_.push_back(std::move(spare_.back()));
          spare_.pop_back();
        }
      }
      auto& c = chunks_.back();
      size_t k = std::min(n, kChunkBytes - c.size());
      c.insert(c.end(), p, p + k);
      p += k;
      n -= k;
      l.unlock();
      cv_.notify_all();
    }
  }

  size_t read(void* buf, size_t n) override {
    if (n == 0) return 0;
    std::unique_lock l(mu_);
    for (;;) {
      // A chunk read to its end goes once the writer has moved past it.
      while (!chunks_.empty() && pos_ == chunks_.front().size() && (chunks_.size() > 1 || closed_)) {
        chunks_.front().clear();
        spare_.push_back(std::move(chunks_.front()));
        chunks_.pop_front();
        pos_ = 0;
        cv_.notify_all();
      }
      if (!chunks_.empty()) {
        auto& c = chunks_.front();
        size_t avail = c.size() - pos_;
        // Wait for a full read while the writer is still filling this chunk
        // (fewer wake-ups), but never past the end of the stream.
        if (avail > 0 && (avail >= n || chunks_.size() > 1 || closed_ || c.size() == kChunkBytes)) {
          // No notify: a read inside a chunk frees no room for the writer
          // (only dropping a chunk does, above), and waking it per page
          // record (twice per 4 KiB page) cost a context switch each.
          size_t k = std::min(n, avail);
          std::memcpy(buf, c.data() + pos_, k);
          pos_ += k;
          return k;
        }
      } else if (closed_) {
        // A download that failed part-way reports its own error, not a
        // truncated segment.
        if (error_) std::rethrow_exception(error_);
        return 0;
      }
      cv_.wait(l);
    }
  }

  // The writer is done (error: how it failed).
  void close(std::exception_ptr error) {
    std::lock_guard l(mu_);
    closed_ = true;
    error_ = error;
    cv_.notify_all();
  }
  // The reader gave up: the writer's next write throws.
  void abort() {
    std::lock_guard l(mu_);
    aborted_ = true;
    chunks_.clear();
    spare_.clear();
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<uint8_t>> chunks_;
  std::vector<std::vector<uint8_t>> spare_;  // read chunks, kept for reuse
  size_t pos_ = 0;
  bool closed_ = false, aborted_ = false;
  std::exception_ptr error_;
};

}  // namespace

ApplyResult restore_snapshot_streaming(ObjectStore& store, const ChainEntry& entry, Replica& replica,
                                      const std::function<ChainPosition(const SegmentSummary&)>& bind) {
  Pipe pipe;
  std::thread fetch([&] {
    try {
      store.get(entry.key, pipe);
      pipe.close(nullptr);
    } catch (...) {
      pipe.close(std::current_exception());
    }
  });
  try {
    // The object's mode where the store keeps it (the leader file's), else
    // owner-only, as download_segment gives a snapshot.
    ApplyResult r = replica.reset_from_snapshot(pipe, entry.mode.value_or(0600), [&](const SegmentSummary& s) {
      if (s.header.seq != entry.seq) {
        throw Error(ErrorKind::kCorruption, "object " + entry.key + " holds seq " + std::to_string(s.header.seq) +
                                                ", its key says " + std::to_string(entry.seq));
      }
      return bind ? bind(s) : snapshot_position(s.header);
    });
    fetch.join();
    return r;
  } catch (const Error& e) {
    pipe.abort();
    fetch.join();
    if (e.kind() == ErrorKind::kCorruption && std::string(e.what()).rfind("object ", 0) != 0) {
      throw Error(e.kind(), "object " + entry.key + ": " + e.what());
    }
    throw;
  } catch (...) {
    pipe.abort();
    fetch.join();
    throw;
  }
}

}  // namespace duckblock
