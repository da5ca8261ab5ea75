// The follower loop (follower.h): list the chain, bring one replica file to
// its head, publish it through the hooks.
#include "duckblock/follower.h"

#include <condition_variable>
#include <filesystem>

#include "duckblock/error.h"
#include "duckblock/restore.h"

namespace duckblock {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Follower::Control {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
};

Follower::Follower(std::shared_ptr<ObjectStore> store, std::string db, std::string path, FollowerOptions options)
    : store_(std::move(store)), db_(std::move(db)), options_(std::move(options)) {
  slots_[0].files = {std::move(path), options_.log_path};
  slots_[1].files = options_.alternate;
  open_slot(0);  // finishes an apply a crash interrupted
  status_.position = slots_[0].replica->position();
}

Follower::~Follower() { stop(); }

Follower::Slot& Follower::open_slot(int i) {
  Slot& s = slots_[i];
  if (!s.replica) s.replica = std::make_unique<Replica>(s.files.path);
  if (!s.log && !s.files.log_path.empty()) {
    s.log = std::make_unique<LogReplica>(s.files.log_path, s.files.path + ".duckblock-log");
  }
  return s;
}

void Follower::start() {
  if (thread_.joinable()) return;
  ctl_ = std::make_shared<Control>();
  // The thread owns copies of what it needs between polls: around_poll may
  // destroy this follower, after which the loop reads only these.
  thread_ = std::thread([this, ctl = ctl_, interval = options_.poll_interval, base = options_.poll_interval,
                         max_backoff = options_.max_backoff, around = options_.hooks.around_poll]() mutable {
    for (;;) {
      bool failed = false, broken = false;
      auto poll = [&] {
        try {
          poll_once();
        } catch (const std::exception&) {
          failed = true;
          broken = status().broken;
        }
      };
      bool go = true;
      if (around) {
        go = around(poll);
      } else {
        poll();
      }
      if (!go || broken) return;
      interval = failed ? std::min(interval * 2, max_backoff) : base;
      std::unique_lock l(ctl->mu);
      if (ctl->cv.wait_for(l, interval, [&] { return ctl->stop; })) return;
    }
  });
}

void Follower::stop() {
  if (!ctl_) return;
  {
    std::lock_guard l(ctl_->mu);
    ctl_->stop = true;
  }
  ctl_->cv.notify_all();
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // from a hook on the loop's own thread: it ends after this poll
  } else {
    thread_.join();
  }
}

FollowerPoll Follower::poll_once() {
  std::lock_guard apply_lock(apply_mu_);
  {
    std::lock_guard l(mu_);
    if (status_.broken) throw Error(ErrorKind::kChainBroken, status_.last_error.value_or("chain broken"));
    ++status_.polls;
  }
  try {
    FollowerPoll p = poll_locked();
    std::lock_guard l(mu_);
    status_.head_seq = p.head_seq;
    if (p.applied()) ++status_.applies;
    // A poll that succeeds leaves the published file at the head it listed.
    status_.caught_up = true;
    status_.last_current_ms = wall_ms();
    status_.last_error.reset();
    return p;
  } catch (const std::exception& e) {
    record_position();  // an in-place file may have moved before the failure
    std::lock_guard l(mu_);
    status_.caught_up = false;
    ++status_.errors;
    status_.last_error = std::string(e.what());
    // A chain that does not link, or a segment that does not verify, will
    // not fix itself by retrying: stop and let an operator look.
    if (auto* err = dynamic_cast<const Error*>(&e)) {
      if (err->kind() == ErrorKind::kChainBroken || err->kind() == ErrorKind::kCorruption) status_.broken = true;
    }
    throw;
  }
}

FollowerPoll Follower::poll_locked() {
  ChainListing chain = list_chain(*store_, options_.prefix, db_);
  if (chain.empty()) {
    throw Error(ErrorKind::kNotFound, "the store " + store_->url() + " has no database '" + db_ + "'" +
                                          (options_.prefix.empty() ? "" : " under prefix '" + options_.prefix + "'"));
  }
  FollowerPoll p;
  p.head_seq = chain.head_seq();
  if (published_ >= 0 && options_.hooks.still_published && !options_.hooks.still_published()) published_ = -1;
  p.seq_before = slots_[published_ >= 0 ? published_ : 0].replica->position().seq;
  int target = choose_target(p.head_seq);
  if (target >= 0) {
    Slot& s = open_slot(target);
    if (options_.hooks.before_apply) options_.hooks.before_apply(s.files);
    // The log belongs to the file's checkpoint: it goes before the file
    // moves, so that no reader ever finds the new file beside the old log.
    if (s.log && s.log->position() && s.replica->position().seq != p.head_seq) s.log->clear();
    p.segments_applied = catch_up(*store_, options_.prefix, db_, *s.replica, p.head_seq);
    if (s.log) {
      p.log_segments_applied = catch_up_log(*store_, options_.prefix, db_, s.replica->position(), *s.log).applied;
    }
    p.position = s.replica->position();
    if (s.log) p.log = s.log->position();
    if (target != published_ || p.applied()) {
      if (options_.hooks.after_apply) options_.hooks.after_apply(s.files, p);
      published_ = target;
    }
  }
  record_position();
  p.seq_after = slots_[published_ >= 0 ? published_ : 0].replica->position().seq;
  if (target < 0) {
    p.position = slots_[published_].replica->position();
    if (slots_[published_].log) p.log = slots_[published_].log->position();
  }
  return p;
}

// Which slot this poll brings up (-1: none, the published file is current).
int Follower::choose_target(uint64_t head) {
  if (published_ < 0) return 0;
  // One file: brought up in place every poll (catch_up checks first that
  // nothing changed it since the last apply).
  if (options_.alternate.path.empty()) return 0;
  return behind(slots_[published_], head) ? 1 - published_ : -1;
}

// True if the store has something newer than slot `s` holds.
bool Follower::behind(Slot& s, uint64_t head) {
  if (!std::filesystem::exists(s.files.path) || s.replica->position() == ChainPosition{}) return true;
  if (s.replica->position().seq != head) return true;
  if (!s.log) return false;
  auto entries = list_log(*store_, options_.prefix, db_, head);
  uint64_t have = s.log->position() && s.log->position()->base_seq == head ? s.log->position()->index : 0;
  return !entries.empty() && entries.back().index > have;
}

// Copies the published slot's position into the status (apply lock held).
void Follower::record_position() {
  const Slot& s = slots_[published_ >= 0 ? published_ : 0];
  std::lock_guard l(mu_);
  status_.published_path = published_ >= 0 ? s.files.path : "";
  status_.position = s.replica->position();
  status_.log = s.log ? s.log->position() : std::nullopt;
}

ChainPosition Follower::catch_up_and_stop() {
  stop();
  poll_once();
  return position();
}

FollowerState Follower::status() const {
  std::lock_guard l(mu_);
  return status_;
}

}  // namespace duckblock
