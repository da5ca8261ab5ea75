// The replica side of log segments: writing them into the log beside a
// replica, crash-safe, and catching a log up from the store.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/wal.h"

namespace duckblock {

namespace {

bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

uint64_t file_size_or_zero(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

void (*LogReplica::crash_point)(const char* where) = nullptr;

LogReplica::LogReplica(std::string log_path, std::string record_path)
    : log_path_(std::move(log_path)), record_path_(std::move(record_path)) {
  load();
  if (!position_) return;
  if (!exists(log_path_)) {
    // A clear() interrupted between removing the log and its record:
    // finish it (a record must not vouch for a log that is not there, or
    // the next segment would be written past the end of an empty file).
    clear();
  } else if (file_size_or_zero(log_path_) > position_->length) {
    // A crash between writing the log and recording it leaves the log
    // longer than its record: cut it back, so the log holds exactly what the
    // record says (the next apply writes those bytes again).
    if (::truncate(log_path_.c_str(), static_cast<off_t>(position_->length)) != 0) {
      throw_errno("cannot cut " + log_path_ + " back to its recorded length");
    }
  } else if (file_size_or_zero(log_path_) < position_->length) {
    // A crash while a segment cut the log shorter (it rewrites a torn tail)
    // and before its record: the log is no longer what the record vouches
    // for. Start the base's log afresh; catch_up_log fetches it again.
    clear();
  }
}

std::optional<LogPosition> LogReplica::peek(const std::string& record_path) {
  LogReplica r;
  r.record_path_ = record_path;
  r.load();
  return r.position_;
}

void LogReplica::load() {
  position_.reset();
  if (!exists(record_path_)) return;
  auto bytes = read_file(record_path_);
  try {
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    LogPosition p;
    p.base_seq = j.at("base_seq").get<uint64_t>();
    p.base_checksum = parse_checksum_hex(j.at("base_checksum").get<std::string>());
    p.index = j.at("index").get<uint64_t>();
    p.checksum = parse_checksum_hex(j.at("checksum").get<std::string>());
    p.length = j.at("length").get<uint64_t>();
    p.created_ms = j.value("created_ms", int64_t{0});
    position_ = p;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kCorruption, "log record " + record_path_ + " is unreadable: " + e.what() +
                                            " (remove it and the log beside it to start the log afresh)");
  }
}

void LogReplica::save() {
  const auto& p = *position_;
  nlohmann::json j = {{"base_seq", p.base_seq},   {"base_checksum", checksum_hex(p.base_checksum)},
                      {"index", p.index},         {"checksum", checksum_hex(p.checksum)},
                      {"length", p.length},       {"created_ms", p.created_ms}};
  std::string s = j.dump();
  write_file_atomic(record_path_, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

void LogReplica::check_continues(const LogSegment& s, const ChainPosition& at) const {
  const auto& h = s.header;
  auto broken = [&](const std::string& why) {
    throw Error(ErrorKind::kChainBroken, "log segment " + std::to_string(h.index) + " of base " +
                                             std::to_string(h.base_seq) + " " + why);
  };
  if (h.base_seq != at.seq || h.base_checksum != at.checksum) {
    broken("belongs to another checkpoint than the replica's (seq " + std::to_string(at.seq) + " checksum " +
           checksum_hex(at.checksum) + ")");
  }
  bool same_base = position_ && position_->base_seq == at.seq && position_->base_checksum == at.checksum;
  uint64_t want_index = same_base ? position_->index + 1 : 1;
  uint64_t want_prev = same_base ? position_->checksum : at.checksum;
  if (h.index != want_index) broken("is out of order: the log needs segment " + std::to_string(want_index) + " next");
  if (h.prev_checksum != want_prev) broken("does not chain from the log's last segment");
  uint64_t have = same_base ? position_->length : 0;
  if (h.offset > have) {
    broken("starts at offset " + std::to_string(h.offset) + " past the log's end " + std::to_string(have));
  }
}

void LogReplica::apply(const LogSegment& s, const ChainPosition& at) {
  check_continues(s, at);
  const auto& h = s.header;
  bool same_base = position_ && position_->base_seq == at.seq;
  if (!same_base) {
    clear();
    // Recorded empty before the log exists, so a crash while it is written
    // leaves a log longer than its record (cut back on open), never a log
    // without one.
    position_ = LogPosition{h.base_seq, h.base_checksum, 0, h.base_checksum, 0, 0};
    save();
  }
  int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("cannot open " + log_path_);
  try {
    size_t done = 0;
    while (done < s.data.size()) {
      ssize_t w = ::pwrite(fd, s.data.data() + done, s.data.size() - done, static_cast<off_t>(h.offset + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw_errno("cannot write " + log_path_);
      }
      done += static_cast<size_t>(w);
    }
    if (::ftruncate(fd, static_cast<off_t>(h.offset + h.length)) != 0) throw_errno("cannot cut " + log_path_);
    if (::fdatasync(fd) != 0) throw_errno("cannot sync " + log_path_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (!same_base) fsync_dir(dirname_of(log_path_));
  if (crash_point) crash_point("apply:log-written");
  position_ = LogPosition{h.base_seq, h.base_checksum, h.index, s.checksum, h.offset + h.length, h.created_ms};
  save();
}

void LogReplica::clear() {
  // The log goes first: a log left without its record (a crash between the
  // two) could not be told from a foreign .wal, which a follow refuses
  // (stale_log_beside, check_replica_on_chain); a record left without its log is finished
  // by the constructor. A reader of the record checks the log's length
  // (intact()) before trusting it.
  if (exists(log_path_) && ::unlink(log_path_.c_str()) != 0) throw_errno("cannot remove " + log_path_);
  if (crash_point) crash_point("clear:log-removed");
  if (exists(record_path_) && ::unlink(record_path_.c_str()) != 0) throw_errno("cannot remove " + record_path_);
  fsync_dir(dirname_of(log_path_));
  position_.reset();
}

bool LogReplica::intact() const {
  if (!position_) return !exists(log_path_);
  return exists(log_path_) && file_size_or_zero(log_path_) == position_->length;
}

bool stale_log_beside(const std::string& path, LogBesideUse use) {
  const std::string log = path + ".wal";
  if (!exists(log)) return false;
  if (use == LogBesideUse::kRestore) return true;
  // Read-only: the record must vouch for the log's exact length (intact()),
  // judged without opening the log replica, which would repair things.
  auto record = LogReplica::peek(path + ".duckblock-log");
  return !record || file_size_or_zero(log) != record->length;
}

std::string stale_log_refusal(const std::string& path, LogBesideUse use, const std::string& force_flag) {
  return path + ".wal exists: DuckDB would replay that log onto the " +
         (use == LogBesideUse::kRestore ? "restored file" : "replica") + ". Remove it, or pass " + force_flag +
         " to have it removed";
}

void remove_log_beside(const std::string& path) {
  const std::string log = path + ".wal", record = path + ".duckblock-log";
  if (::unlink(log.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + log);
  if (::unlink(record.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + record);
  fsync_dir(dirname_of(log));
}

LogCatchUp catch_up_log(ObjectStore& store, const std::string& prefix, const std::string& db, const ChainPosition& at,
                        LogReplica& log, std::optional<int64_t> up_to_ms) {
  LogCatchUp out;
  if (log.position() && (log.position()->base_seq != at.seq || log.position()->base_checksum != at.checksum)) {
    log.clear();  // the replica moved on: that log was folded into a checkpoint
  }
  uint64_t after = log.position() ? log.position()->index : 0;
  for (const auto& e : list_log(store, prefix, db, at.seq)) {
    if (e.index <= after) continue;
    LogSegment s = fetch_log_segment(store, e);
    if (up_to_ms && s.header.created_ms > *up_to_ms) break;
    log.apply(s, at);
    ++out.applied;
  }
  out.position = log.position();
  return out;
}

}  // namespace duckblock
