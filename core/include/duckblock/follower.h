// The follower: the one poll/apply loop that keeps a local replica (and the
// log beside it) at the store's head. `duckblock follow`, the library and the
// extension's duckblock_follow all run it; hooks let each publish the result
// its own way (print it, or swap a DuckDB alias with ATTACH OR REPLACE).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "duckblock/apply.h"
#include "duckblock/store.h"
#include "duckblock/wal.h"

namespace duckblock {

// One replica file and the log beside it.
struct ReplicaFiles {
  std::string path;
  // The log kept current with the store's log segments (for DuckDB,
  // `<path>.wal`); empty: checkpoints only. Its record is
  // `<path>.duckblock-log`. Before the file moves to a newer checkpoint the
  // log is removed, so the file is never beside a log of another base.
  std::string log_path;
};

// What one poll did.
struct FollowerPoll {
  uint64_t head_seq = 0;    // the store's head the poll listed
  uint64_t seq_before = 0;  // the published file's seq before the poll
  uint64_t seq_after = 0;   // and after it
  uint64_t segments_applied = 0;
  uint64_t log_segments_applied = 0;
  // The files the poll brought up (after_apply's), and where they are now.
  ChainPosition position;
  std::optional<LogPosition> log;
  uint64_t applied() const { return segments_applied + log_segments_applied; }
};

// Where a program plugs into the loop. Every hook runs on the thread that
// polls (the caller of poll_once, or the loop's thread) with the apply lock
// held; the status accessors below do not take that lock, so hooks may call
// them.
struct FollowerHooks {
  // Before the follower writes `files`. Throwing gives the poll up: it counts
  // as failed (last_error says why) and the next poll tries again. The
  // extension waits here until no query reads the file.
  std::function<void(const ReplicaFiles& files)> before_apply;
  // After `files` reached the head, when they are to be published: at the
  // first poll, after a poll that applied something, and when the follower
  // switched to the other file. Throwing fails the poll; whatever was
  // published before stays published.
  std::function<void(const ReplicaFiles& files, const FollowerPoll& poll)> after_apply;
  // Asked at each poll once something is published: do readers still read
  // it (the extension: is the alias still attached)? False publishes afresh
  // (the primary file, then after_apply). Null: always true.
  std::function<bool()> still_published;
  // Wraps each poll of the background loop: runs `poll`, returns false to end
  // the loop. The extension holds its DuckDB instance here for just the poll.
  // The follower may be destroyed inside it (its owner dropped meanwhile):
  // the loop touches nothing of the follower after it returns.
  std::function<bool(const std::function<void()>& poll)> around_poll;
};

struct FollowerOptions {
  std::string prefix;
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds max_backoff{30000};  // on errors, the interval doubles up to this
  std::string log_path;                          // the primary file's log (ReplicaFiles::log_path)
  // A second replica file (path empty: none). With one, a published file
  // never changes under its readers: a poll that finds the store ahead
  // brings the other file up and publishes that one (after_apply), and the
  // two take turns (the extension's two-file swap, docs/EXTENSION.md).
  // Without one, the primary file is brought up in place at every poll.
  ReplicaFiles alternate;
  FollowerHooks hooks;
};

// A follower's state, as the status accessors read it: updated at the end of
// each poll, never waiting for an apply in progress.
struct FollowerState {
  std::string published_path;  // the file readers read ("" before the first publish)
  ChainPosition position;      // the published file's (before: the primary's)
  std::optional<LogPosition> log;
  uint64_t head_seq = 0;       // the store's head at the last poll that listed it
  uint64_t polls = 0;
  uint64_t errors = 0;         // polls that failed
  uint64_t applies = 0;        // polls that applied something
  int64_t last_current_ms = 0; // when a poll last found the published file at the head (0: not yet)
  bool caught_up = false;      // the last poll succeeded
  bool broken = false;
  std::optional<std::string> last_error;
};

// A follower never applies a segment that does not chain: a kChainBroken or
// kCorruption error sets broken(), is kept in last_error(), and stops the
// loop rather than guessing (a later poll_once throws it again).
class Follower {
 public:
  Follower(std::shared_ptr<ObjectStore> store, std::string db, std::string path, FollowerOptions options = {});
  ~Follower();  // stops the loop

  void start();               // runs the poll loop on a background thread
  void stop();                // cancels and joins (returns within one poll); from the loop's thread, detaches
  FollowerPoll poll_once();   // one poll on the caller's thread
  // Promotion: applies everything the store has after the current position,
  // stops the loop, and returns the final position.
  ChainPosition catch_up_and_stop();

  FollowerState status() const;
  ChainPosition position() const { return status().position; }
  std::optional<LogPosition> log_position() const { return status().log; }
  bool caught_up() const { return status().caught_up; }
  bool broken() const { return status().broken; }
  std::optional<std::string> last_error() const { return status().last_error; }
  uint64_t polls() const { return status().polls; }
  uint64_t errors() const { return status().errors; }
  uint64_t head_seq() const { return status().head_seq; }
  int64_t last_current_ms() const { return status().last_current_ms; }

 private:
  struct Slot {
    ReplicaFiles files;
    std::unique_ptr<Replica> replica;
    std::unique_ptr<LogReplica> log;
  };
  struct Control;  // what the loop's thread shares with stop()
  Slot& open_slot(int i);
  int choose_target(uint64_t head);
  bool behind(Slot& s, uint64_t head);
  FollowerPoll poll_locked();
  void record_position();

  const std::shared_ptr<ObjectStore> store_;
  const std::string db_;
  const FollowerOptions options_;
  std::mutex apply_mu_;  // one poll at a time; guards the slots and published_
  Slot slots_[2];
  int published_ = -1;   // the slot readers read (-1: none yet)
  mutable std::mutex mu_;  // status_
  FollowerState status_;
  std::shared_ptr<Control> ctl_;
  std::thread thread_;
};

}  // namespace duckblock
