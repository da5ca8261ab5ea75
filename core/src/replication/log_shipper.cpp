#include "log_shipper.h"

#include <algorithm>

#include "duckblock/error.h"
#include "duckblock/io.h"
#include "duckblock/wal.h"

namespace duckblock {

namespace {
// One object carries at most this much log (DuckDB checkpoints at 16 MiB of
// WAL by default, so a base rarely needs more than one full object).
constexpr uint64_t kMaxBatchBytes = 64ull << 20;

int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

LogShipper::LogShipper(std::shared_ptr<ObjectStore> store, Options options)
    : store_(std::move(store)), opt_(std::move(options)) {
  DUCKBLOCK_ASSERT(opt_.base_state);
  thread_ = std::thread([this] { loop(); });
}

LogShipper::~LogShipper() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  done_cv_.notify_all();
  thread_.join();
}

int64_t LogShipper::now() const { return opt_.now_ms ? opt_.now_ms() : system_ms(); }

uint64_t LogShipper::push(uint64_t base_seq, uint64_t offset, std::vector<uint8_t> bytes) {
  std::lock_guard l(mu_);
  uint64_t t = next_ticket_++;
  queue_.push_back(Chunk{t, base_seq, offset, std::move(bytes), system_ms()});
  cv_.notify_all();
  return t;
}

void LogShipper::supersede(uint64_t new_base) {
  std::lock_guard l(mu_);
  while (!queue_.empty() && queue_.front().base < new_base) {
    superseded_upto_ = std::max(superseded_upto_, queue_.front().ticket);
    queue_.pop_front();
  }
  if (!in_flight_) stored_ticket_ = std::max(stored_ticket_, superseded_upto_);
  done_cv_.notify_all();
  cv_.notify_all();
}

void LogShipper::kick() {
  std::lock_guard l(mu_);
  cv_.notify_all();
}

bool LogShipper::wait(uint64_t ticket, std::chrono::milliseconds timeout) {
  std::unique_lock l(mu_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (fenced_) throw *error_;
    if (stored_ticket_ >= ticket) return ticket > superseded_upto_;
    if (stopping_) throw Error(ErrorKind::kRetryable, "replication of '" + opt_.db + "' stopped before the log was stored");
    if (done_cv_.wait_until(l, deadline) == std::cv_status::timeout) {
      throw Error(ErrorKind::kRetryable, "the log of '" + opt_.db + "' did not reach the store in time" +
                                             (error_ ? std::string(": ") + error_->what() : std::string()));
    }
  }
}

void LogShipper::drain(std::chrono::milliseconds timeout) {
  uint64_t last;
  {
    std::lock_guard l(mu_);
    last = next_ticket_ - 1;
    urgent_upto_ = std::max(urgent_upto_, last);  // a sync does not wait out the interval
    cv_.notify_all();
  }
  if (last > 0) wait(last, timeout);
}

void LogShipper::fill_status(ReplicationStatus& s) const {
  std::lock_guard l(mu_);
  s.log_base_seq = chain_base_ == UINT64_MAX ? 0 : chain_base_;
  s.log_index = chain_index_;
  s.log_length = chain_length_;
  s.log_bytes_shipped = bytes_shipped_;
  s.log_segments_shipped = objects_shipped_;
  s.log_pending_bytes = 0;
  for (const auto& c : queue_) s.log_pending_bytes += c.bytes.size();
  s.log_lag_ms = queue_.empty() ? 0 : std::max<int64_t>(0, system_ms() - queue_.front().pushed_ms);
  s.last_log_upload_ms = last_upload_ms_;
  if (error_ && !s.last_error) s.last_error = error_->what();
  if (fenced_) s.fenced = true;
  s.upload_retries += retries_;
}

// The chunks at the queue's front that can go up as one object: same base,
// each continuing (or cutting back into) what came before.
std::optional<LogShipper::Batch> LogShipper::take_batch_locked(const BaseState& base) {
  (void)base;
  if (queue_.empty()) return std::nullopt;
  Batch b;
  b.base = queue_.front().base;
  b.offset = queue_.front().offset;
  b.oldest_ms = queue_.front().pushed_ms;
  while (!queue_.empty() && queue_.front().base == b.base) {
    Chunk& c = queue_.front();
    uint64_t end = b.offset + b.bytes.size();
    if (b.last_ticket != 0) {
      // A log cut back before the batch's start, or past its end (a gap the
      // capture never makes), starts a new object.
      if (c.offset < b.offset || c.offset > end) break;
      if (b.bytes.size() + c.bytes.size() > kMaxBatchBytes) break;
      b.bytes.resize(c.offset - b.offset);  // a cut back inside the batch
    }
    b.bytes.insert(b.bytes.end(), c.bytes.begin(), c.bytes.end());
    b.last_ticket = c.ticket;
    queue_.pop_front();
  }
  return b;
}

// Finds where the store's log of `base` ends (a restarted leader, or
// another process of ours, may have shipped some of it already).
void LogShipper::continue_chain(uint64_t base, uint64_t base_checksum) {
  chain_base_ = base;
  chain_index_ = 0;
  chain_checksum_ = base_checksum;
  chain_length_ = 0;
  auto entries = list_log(*store_, opt_.prefix, opt_.db, base);
  if (entries.empty()) return;
  LogSegment last = fetch_log_segment(*store_, entries.back());
  if (last.header.base_checksum != base_checksum) {
    throw Error(ErrorKind::kFenced, "the store's log of '" + opt_.db + "' at seq " + std::to_string(base) +
                                        " belongs to another chain: another leader has written it");
  }
  chain_index_ = last.header.index;
  chain_checksum_ = last.checksum;
  chain_length_ = last.header.offset + last.header.length;
}

void LogShipper::upload(Batch& b, const BaseState& base) {
  if (chain_base_ != b.base) continue_chain(b.base, base.checksum);
  if (b.offset > chain_length_ && chain_index_ > 0) {
    // Never leave a hole in the follower's log.
    throw Error(ErrorKind::kChainBroken, "log bytes at offset " + std::to_string(b.offset) +
                                             " would leave a gap after the store's log end " +
                                             std::to_string(chain_length_));
  }
  LogSegmentHeader h;
  h.base_seq = b.base;
  h.base_checksum = base.checksum;
  h.index = chain_index_ + 1;
  h.prev_checksum = chain_index_ == 0 ? base.checksum : chain_checksum_;
  h.offset = b.offset;
  h.length = b.bytes.size();
  h.created_ms = now();
  uint64_t checksum = 0;
  auto encoded = encode_log_segment(h, b.bytes.data(), &checksum);
  std::string key = log_key(opt_.prefix, opt_.db, h.base_seq, h.index);
  MemorySource src(std::span<const uint8_t>(encoded.data(), encoded.size()));
  try {
    store_->put_if_absent(key, src);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kAlreadyExists) throw;
    // Our own earlier attempt (a lost reply), or another leader's.
    auto theirs = get_bytes(*store_, key);
    if (theirs != encoded) {
      throw Error(ErrorKind::kFenced, "fenced: " + key + " was already written by another leader; this leader must "
                                      "stop writing " + opt_.db);
    }
  }
  chain_index_ = h.index;
  chain_checksum_ = checksum;
  chain_length_ = h.offset + h.length;
  bytes_shipped_ += encoded.size();
  objects_shipped_++;
}

void LogShipper::loop() {
  auto backoff = opt_.retry_initial;
  std::unique_lock l(mu_);
  while (!stopping_) {
    if (queue_.empty() || fenced_) {
      cv_.wait(l);
      continue;
    }
    // Interval mode: at most one object per interval. Bytes go up at once
    // if nothing went up within the last interval, else when the interval
    // since the last upload is over, carrying every commit made meanwhile;
    // either way within one interval (plus the upload) of their commit.
    if (opt_.mode == LogSyncMode::kInterval && queue_.front().ticket > urgent_upto_) {
      auto due = std::chrono::milliseconds(last_attempt_ms_ + opt_.interval.count() - system_ms());
      if (due.count() > 0) {
        cv_.wait_for(l, due);
        continue;
      }
    }
    uint64_t base_seq = queue_.front().base;
    l.unlock();
    BaseState base = opt_.base_state(base_seq);
    l.lock();
    if (queue_.empty() || queue_.front().base != base_seq) continue;
    if (base.superseded) {
      while (!queue_.empty() && queue_.front().base == base_seq) {
        superseded_upto_ = std::max(superseded_upto_, queue_.front().ticket);
        queue_.pop_front();
      }
      stored_ticket_ = std::max(stored_ticket_, superseded_upto_);
      done_cv_.notify_all();
      continue;
    }
    if (!base.stored) {
      // The checkpoint it is based on is still on its way: kick() wakes us.
      cv_.wait_for(l, std::chrono::milliseconds(200));
      continue;
    }
    auto batch = take_batch_locked(base);
    in_flight_ = true;
    last_attempt_ms_ = system_ms();
    l.unlock();
    std::optional<Error> err;
    try {
      upload(*batch, base);
    } catch (const Error& e) {
      err = e;
    } catch (const std::exception& e) {
      err = Error(ErrorKind::kIO, e.what());
    }
    l.lock();
    in_flight_ = false;
    if (!err) {
      // Chunks dropped while it was in flight came after it in the queue.
      stored_ticket_ = std::max({stored_ticket_, batch->last_ticket, superseded_upto_});
      last_upload_ms_ = system_ms();
      error_.reset();
      backoff = opt_.retry_initial;
      done_cv_.notify_all();
      continue;
    }
    error_ = *err;
    if (err->kind() == ErrorKind::kFenced) {
      fenced_ = true;
      done_cv_.notify_all();
      continue;
    }
    // Put the batch back at the front as one chunk and retry later; the
    // chain's position is re-read from the store before the next attempt.
    retries_++;
    chain_base_ = UINT64_MAX;
    queue_.push_front(Chunk{batch->last_ticket, batch->base, batch->offset, std::move(batch->bytes), batch->oldest_ms});
    done_cv_.notify_all();
    auto jitter = std::uniform_int_distribution<int64_t>(0, backoff.count() / 2 + 1)(rng_);
    cv_.wait_for(l, backoff + std::chrono::milliseconds(jitter), [&] { return stopping_; });
    backoff = std::min(backoff * 2, opt_.retry_max);
  }
}

}  // namespace duckblock
