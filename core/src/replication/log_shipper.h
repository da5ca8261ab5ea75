// The leader's log shipper for one database (internal to the Replicator):
// committed log bytes go in, log segments come out in the store, in order,
// each after the checkpoint segment it is based on.
//
// Threads and locks: push/supersede/wait/status run on the caller's thread
// and take only mu_; the shipper's own thread uploads. It asks the
// Replicator about a base (base_state) without holding mu_, so the
// Replicator may call into the shipper while holding its own lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/replicator.h"
#include "duckblock/store.h"

namespace duckblock {

class LogShipper {
 public:
  struct BaseState {
    bool stored = false;      // the checkpoint segment `base` is in the store
    bool superseded = false;  // the chain has moved past `base`
    uint64_t checksum = 0;    // the chain checksum at base (when stored)
  };
  struct Options {
    std::string prefix, db;
    LogSyncMode mode = LogSyncMode::kInterval;
    std::chrono::milliseconds interval{1000};
    std::chrono::milliseconds retry_initial{100}, retry_max{10000};
    std::function<int64_t()> now_ms;
    std::function<BaseState(uint64_t base)> base_state;
  };

  LogShipper(std::shared_ptr<ObjectStore> store, Options options);
  ~LogShipper();  // stops the thread; what was not uploaded is dropped
  LogShipper(const LogShipper&) = delete;
  LogShipper& operator=(const LogShipper&) = delete;

  // Queues committed log bytes: the log of the file at `base_seq` holds
  // `bytes` at `offset` and ends there. Returns a ticket for wait().
  uint64_t push(uint64_t base_seq, uint64_t offset, std::vector<uint8_t> bytes);
  // A push of checkpoint `new_base` happened: queued bytes of older bases
  // are folded into it and need not go up (unless already in flight).
  void supersede(uint64_t new_base);
  // The Replicator uploaded a segment: a waiting base may now go.
  void kick();
  // Waits until the bytes of `ticket` are in the store (true), or were
  // superseded by a checkpoint before they went up (false: the caller waits
  // for that checkpoint instead). Throws the shipping error (its kind kept:
  // kFenced, or kRetryable on timeout with the last error).
  bool wait(uint64_t ticket, std::chrono::milliseconds timeout);
  // Waits until nothing is queued or in flight.
  void drain(std::chrono::milliseconds timeout);
  void fill_status(ReplicationStatus& s) const;

 private:
  struct Chunk {
    uint64_t ticket, base, offset;
    std::vector<uint8_t> bytes;
    int64_t pushed_ms;
  };
  struct Batch {
    uint64_t base = 0, offset = 0, last_ticket = 0;
    std::vector<uint8_t> bytes;
    int64_t oldest_ms = 0;
  };
  void loop();
  std::optional<Batch> take_batch_locked(const BaseState& base);
  void upload(Batch& batch, const BaseState& base);  // throws
  void continue_chain(uint64_t base, uint64_t base_checksum);
  int64_t now() const;

  std::shared_ptr<ObjectStore> store_;
  Options opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Chunk> queue_;
  uint64_t next_ticket_ = 1;
  uint64_t stored_ticket_ = 0;      // every ticket <= this is stored or dropped
  uint64_t superseded_upto_ = 0;    // tickets <= this were dropped, not stored
  uint64_t urgent_upto_ = 0;        // tickets <= this go up without waiting out the interval
  bool in_flight_ = false;
  bool stopping_ = false;
  std::optional<Error> error_;      // fenced: final; otherwise the last retry's
  bool fenced_ = false;
  uint64_t retries_ = 0;
  // The chain of log segments of the current base in the store.
  uint64_t chain_base_ = UINT64_MAX, chain_index_ = 0, chain_checksum_ = 0, chain_length_ = 0;
  uint64_t bytes_shipped_ = 0, objects_shipped_ = 0;
  int64_t last_upload_ms_ = 0;
  int64_t last_attempt_ms_ = 0;  // when the last object started up (interval mode paces on it)
  std::mt19937_64 rng_{std::random_device{}()};
  std::thread thread_;
};

}  // namespace duckblock
