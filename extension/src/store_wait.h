// Offline at ATTACH. A database file that has no spool to continue from
// needs the store to start replicating (Replicator::add compares it with the
// store's chain), and its name is claimed in the store (origin.h). When the
// store cannot be reached then (retries exhausted: ErrorKind::kRetryable),
// the database still opens: a StoreWait probes the store in the background,
// and the first commit point after it answers starts replication (at a
// commit point the file is consistent, so add() can read it whole). Until
// then duckblock_status() shows the leader with last_error saying so.
// Checkpoints never wait for the store here: they only look at ready().
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace duckblock::extension {

class StoreWait {
 public:
  StoreWait() = default;
  ~StoreWait();
  StoreWait(const StoreWait&) = delete;
  StoreWait& operator=(const StoreWait&) = delete;

  // Starts probing: calls `probe` every `interval` (doubling up to 30 s)
  // until it returns (ready) or throws an error that is not kRetryable (then
  // recorded and probing stops). `why` is the error that made us wait.
  void begin(std::function<void()> probe, const std::string& why,
             std::chrono::milliseconds interval = std::chrono::milliseconds(500));
  // Whether the database must wait: probing began and has not succeeded.
  bool waiting() const;
  // What duckblock_status() shows while waiting (or after giving up).
  std::optional<std::string> error() const;

 private:
  void stop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool began_ = false, ready_ = false, stopping_ = false;
  std::optional<std::string> error_;
  std::thread thread_;
};

}  // namespace duckblock::extension
