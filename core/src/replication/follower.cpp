#include <condition_variable>

#include "duckblock/error.h"
#include "duckblock/restore.h"

namespace duckblock {

FollowerBehavior::FollowerBehavior(std::shared_ptr<ObjectStore> store, std::string db, std::string path,
                                   FollowerOptions options)
    : store_(std::move(store)), db_(std::move(db)), path_(std::move(path)), options_(std::move(options)) {
  replica_ = std::make_unique<Replica>(path_);  // finishes an apply a crash interrupted
  if (!options_.log_path.empty()) log_ = std::make_unique<LogReplica>(options_.log_path, path_ + ".duckblock-log");
}

FollowerBehavior::~FollowerBehavior() { stop(); }

void FollowerBehavior::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void FollowerBehavior::stop() {
  stopping_ = true;
  {
    std::lock_guard l(mu_);  // pairs with the wait in loop()
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t FollowerBehavior::poll_once() {
  std::lock_guard apply_lock(apply_mu_);
  if (broken_) throw Error(ErrorKind::kChainBroken, last_error().value_or("chain broken"));
  polls_++;
  try {
    if (log_ && log_->position()) {
      // The file is about to move to a newer checkpoint: its log goes
      // first, so that no reader ever finds the new file beside the old log.
      ChainListing chain = list_chain(*store_, options_.prefix, db_);
      if (chain.head_seq() != replica_->position().seq) log_->clear();
    }
    uint64_t n = catch_up(*store_, options_.prefix, db_, *replica_);
    if (log_) n += catch_up_log(*store_, options_.prefix, db_, replica_->position(), *log_).applied;
    caught_up_ = true;
    // catch_up applied everything up to the head it listed.
    last_current_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    {
      std::lock_guard l(mu_);
      last_error_.reset();
    }
    if (n && options_.on_applied) options_.on_applied(replica_->position());
    return n;
  } catch (const Error& e) {
    caught_up_ = false;
    errors_++;
    {
      std::lock_guard l(mu_);
      last_error_ = std::string(e.what());
    }
    // A chain that does not link, or a segment that does not verify, will
    // not fix itself by retrying: stop and let an operator look.
    if (e.kind() == ErrorKind::kChainBroken || e.kind() == ErrorKind::kCorruption) broken_ = true;
    throw;
  }
}

void FollowerBehavior::loop() {
  auto interval = options_.poll_interval;
  while (!stopping_) {
    try {
      poll_once();
      interval = options_.poll_interval;
    } catch (const Error&) {
      if (broken_) return;
      interval = std::min(interval * 2, options_.max_backoff);
    }
    std::unique_lock l(mu_);
    cv_.wait_for(l, interval, [&] { return stopping_.load(); });
  }
}

ChainPosition FollowerBehavior::catch_up_and_stop() {
  stop();
  poll_once();
  return position();
}

ChainPosition FollowerBehavior::position() const {
  // Replica::position() is a plain read of two words updated under apply_mu_.
  std::lock_guard l(const_cast<std::mutex&>(apply_mu_));
  return replica_->position();
}

std::optional<LogPosition> FollowerBehavior::log_position() const {
  std::lock_guard l(const_cast<std::mutex&>(apply_mu_));
  return log_ ? log_->position() : std::nullopt;
}

std::optional<std::string> FollowerBehavior::last_error() const {
  std::lock_guard l(mu_);
  return last_error_;
}

}  // namespace duckblock
