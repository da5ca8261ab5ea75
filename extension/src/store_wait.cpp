// Waiting for the store at ATTACH. See store_wait.h.
#include "store_wait.h"

#include <algorithm>

#include "duckblock/error.h"

namespace duckblock::extension {

StoreWait::~StoreWait() { stop(); }

void StoreWait::stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StoreWait::begin(std::function<void()> probe, const std::string& why, std::chrono::milliseconds interval) {
  std::lock_guard l(mu_);
  if (began_) return;
  began_ = true;
  error_ = "the store could not be reached (" + why +
           "); the database is open and replication starts at the first checkpoint after the store answers";
  thread_ = std::thread([this, probe = std::move(probe), interval]() mutable {
    for (;;) {
      {
        std::unique_lock l(mu_);
        if (cv_.wait_for(l, interval, [&] { return stopping_; })) return;
      }
      try {
        probe();
        std::lock_guard l(mu_);
        ready_ = true;
        error_.reset();
        return;
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kRetryable) {
          std::lock_guard l(mu_);
          error_ = std::string("replication cannot start: ") + e.what() + " (" + std::string(to_string(e.kind())) + ")";
          return;
        }
      } catch (const std::exception& e) {
        std::lock_guard l(mu_);
        error_ = std::string("replication cannot start: ") + e.what();
        return;
      }
      interval = std::min<std::chrono::milliseconds>(interval * 2, std::chrono::seconds(30));
    }
  });
}

bool StoreWait::waiting() const {
  std::lock_guard l(mu_);
  return began_ && !ready_;
}

std::optional<std::string> StoreWait::error() const {
  std::lock_guard l(mu_);
  return error_;
}

}  // namespace duckblock::extension
