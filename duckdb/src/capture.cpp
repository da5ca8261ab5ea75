// The capture file system and its per-database state. See duckdb_capture.h
// for when a push happens and why.
#include "duckblock/duckdb_capture.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "duckblock/page_reader.h"
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/log.h"
#include "duckdb/common/checksum.hpp"
#include "duckdb/common/virtual_file_system.hpp"

namespace duckblock::duckdb_integration {

namespace {

constexpr uint64_t kPage = 4096;

// DuckDB's WAL framing (1.4, write_ahead_log.cpp): after a version header,
// entries of [u64 size][u64 checksum][payload], little-endian, where the
// payload is a BinarySerializer object whose first field (id 100, two
// bytes) is the entry type as a varint. Every flush ends with a WAL_FLUSH
// entry (type 100); a checkpoint's flush has a CHECKPOINT entry (type 99)
// just before it.
constexpr uint8_t kWalCheckpoint = 99;
constexpr uint8_t kWalFlush = 100;

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool wal_entry_at(const uint8_t* p, uint64_t size, uint8_t type) {
  if (size < 3 || p[16] != 100 || p[17] != 0 || p[18] != type) return false;
  return le64(p + 8) == duckdb::Checksum(const_cast<uint8_t*>(p + 16), size);
}

// True if `tail` (the last bytes of a WAL just flushed) ends with a
// CHECKPOINT entry and the flush marker: the flush DuckDB makes inside a
// checkpoint, right before it writes the database header. Both entries'
// checksums must match, so log bytes are never mistaken for them.
bool ends_with_checkpoint(const std::vector<uint8_t>& tail) {
  const size_t n = tail.size();
  constexpr size_t kFlushEntry = 16 + 5;  // payload: field 100, type, end marker
  if (n < kFlushEntry + 16 + 3) return false;
  const uint8_t* flush = tail.data() + n - kFlushEntry;
  if (le64(flush) != 5 || !wal_entry_at(flush, 5, kWalFlush)) return false;
  // The CHECKPOINT entry ends where the flush begins; its payload is small.
  for (size_t len = 3; len + 16 + kFlushEntry <= n && len < 96; ++len) {
    const uint8_t* e = flush - 16 - len;
    if (le64(e) == len && wal_entry_at(e, len, kWalCheckpoint)) return true;
  }
  return false;
}

// DuckDB's own account of the file's state for a clean close's proof
// (clean_close.h): the main header's checksum and both database headers'
// checksum, iteration, meta block and block count (each header block starts
// with its checksum, then the fields in DatabaseHeader::Write's order). A
// .wal beside the file means commits the file does not hold: no evidence,
// so add() compares the whole file. The core hashes these pages too; this
// names what in them identifies a checkpoint.
std::optional<std::string> duckdb_evidence(PageReader& reader, const std::string& path) {
  if (::access((path + ".wal").c_str(), F_OK) == 0) return std::nullopt;
  std::vector<uint8_t> head(kHeadersEnd);
  if (reader.read_at(0, head.data(), head.size()) != head.size()) return std::nullopt;
  if (std::memcmp(head.data() + 8, "DUCK", 4) != 0) return std::nullopt;
  char buf[256];
  std::string out = "duckdb main=" + checksum_hex(le64(head.data()));
  for (uint64_t at : {kHeader1, kHeader2}) {
    const uint8_t* h = head.data() + at;
    std::snprintf(buf, sizeof buf, " h%d=%s/%llu/%llu/%llu", at == kHeader1 ? 1 : 2, checksum_hex(le64(h)).c_str(),
                  static_cast<unsigned long long>(le64(h + 8)), static_cast<unsigned long long>(le64(h + 16)),
                  static_cast<unsigned long long>(le64(h + 32)));
    out += buf;
  }
  return out + " wal=none";
}

}  // namespace

// Reads the database file through DuckDB's own handle: opening and closing a
// second descriptor would drop DuckDB's POSIX lock on the file.
class Capture::HandleReader final : public PageReader {
 public:
  HandleReader(duckdb::LocalFileSystem& fs, duckdb::FileHandle& h, const std::string& path)
      : fs_(fs), h_(h), path_(path) {}
  size_t read_at(uint64_t offset, void* buf, size_t n) override {
    uint64_t size = file_size();
    if (offset >= size) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, size - offset));
    // LocalFileSystem's positional read is a pread loop that throws on a
    // short read; we asked for no more than the file holds.
    fs_.LocalFileSystem::Read(h_, buf, static_cast<int64_t>(n), offset);
    return n;
  }
  uint64_t file_size() override {
    return static_cast<uint64_t>(fs_.LocalFileSystem::GetFileSize(h_));
  }
  // DuckDB keeps its descriptor to itself, so the stamp comes from the
  // path, and only if the path is still the file DuckDB has open (its
  // version tag starts with the handle's device and inode, from fstat).
  std::optional<FileStamp> stamp() override {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
    std::string tag = fs_.LocalFileSystem::GetVersionTag(h_);
    uint64_t dev = 0, ino = 0;
    if (tag.size() < 16) return std::nullopt;
    std::memcpy(&dev, tag.data(), 8);
    std::memcpy(&ino, tag.data() + 8, 8);
    if (dev != static_cast<uint64_t>(st.st_dev) || ino != static_cast<uint64_t>(st.st_ino)) return std::nullopt;
    return stamp_of(st);
  }
  std::optional<std::string> evidence() override { return duckdb_evidence(*this, path_); }

 private:
  duckdb::LocalFileSystem& fs_;
  duckdb::FileHandle& h_;
  const std::string& path_;
};

Capture::Capture(std::string path, std::string db_name, std::shared_ptr<Replicator> replicator,
                 CaptureOptions options)
    : path_(canonical_path(path)),
      db_name_(std::move(db_name)),
      replicator_(std::move(replicator)),
      options_(std::move(options)) {
  if (!replicator_) throw Error(ErrorKind::kInvalidArgument, "open_replicated: no replicator given");
}

CaptureStats Capture::stats() const {
  std::lock_guard l(mu_);
  CaptureStats s = stats_;
  s.pending_pages = dirty_count_;
  return s;
}

bool Capture::started() const {
  std::lock_guard l(mu_);
  return started_;
}

void Capture::start() {
  std::lock_guard l(mu_);
  if (started_) return;
  if (!handle_) {
    throw Error(ErrorKind::kInvalidArgument,
                "open_replicated: DuckDB did not open '" + path_ +
                    "' for writing through the capture file system (is it read-only or in memory?)");
  }
  HandleReader reader(*fs_, *handle_, path_);
  // Reopened with the replicator that replicated it before: register it
  // afresh, so add() resumes from the spool and checks the file against it.
  auto dbs = replicator_->databases();
  if (std::find(dbs.begin(), dbs.end(), db_name_) != dbs.end()) replicator_->remove(db_name_);
  // add() compares the whole file with the chain, so whatever DuckDB wrote
  // while opening (creation, WAL replay and its checkpoint) ships from here.
  if (options_.continuing) {
    replicator_->add_continuing(db_name_, reader, *options_.continuing);
  } else {
    replicator_->add(db_name_, reader);
  }
  dirty_.clear();
  dirty_count_ = 0;
  bytes_since_push_ = 0;
  wrote_since_push_ = false;
  header_written_ = false;
  stats_.clean_close = false;
  started_ = true;
  // Commits DuckDB has in its log but not in the file (a crash, or a close
  // without checkpoint) belong to the head now: ship the log as it is. A
  // torn tail goes too; DuckDB cuts it before its next append, and the cut
  // ships then.
  log_from_zero_ = true;
  log_cut_ = UINT64_MAX;
  if (::access((path_ + ".wal").c_str(), F_OK) == 0) ship_log_locked();
}

PushResult Capture::push_now() {
  std::lock_guard l(mu_);
  if (!started_ || !handle_) throw Error(ErrorKind::kInvalidArgument, "capture of '" + path_ + "' is not running");
  return push_locked(PushEvent::Reason::kCheckpoint);
}

void Capture::on_open(duckdb::FileHandle& inner, duckdb::LocalFileSystem& fs) {
  std::lock_guard l(mu_);
  handle_ = &inner;
  fs_ = &fs;
}

void Capture::on_close(duckdb::FileHandle& inner) {
  std::lock_guard l(mu_);
  if (handle_ == &inner) {
    // DuckDB closes the file last thing (after its shutdown checkpoint was
    // pushed at that checkpoint's fsync). Pages written after the last
    // commit point belong to no checkpoint: a reopen's add() compares them.
    // With none, the file is exactly the last push: a clean close, whose
    // proof lets the next add() skip the whole-file comparison.
    if (started_ && !wrote_since_push_ && !header_written_ && dirty_count_ == 0) {
      try {
        HandleReader reader(*fs_, *handle_, path_);
        stats_.clean_close = replicator_->record_clean_close(db_name_, reader);
      } catch (const std::exception& e) {
        // Only the next open's speed depends on it.
        duckblock::log(LogLevel::kWarn, "no clean-close record for '" + db_name_ + "': " + e.what());
      }
    }
    handle_ = nullptr;
    fs_ = nullptr;
    started_ = false;
  }
}

void Capture::mark_locked(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t first = offset / kPage, last = (offset + length - 1) / kPage;
  if (dirty_.size() * 64 <= last) dirty_.resize(last / 64 + 1, 0);
  for (uint64_t p = first; p <= last; ++p) {
    uint64_t bit = uint64_t{1} << (p % 64);
    uint64_t& w = dirty_[p / 64];
    if (!(w & bit)) {
      w |= bit;
      ++dirty_count_;
    }
  }
}

std::vector<uint64_t> Capture::take_candidates_locked() const {
  std::vector<uint64_t> out;
  out.reserve(dirty_count_);
  for (size_t i = 0; i < dirty_.size(); ++i) {
    uint64_t w = dirty_[i];
    while (w) {
      int b = std::countr_zero(w);
      out.push_back(i * 64 + static_cast<uint64_t>(b));
      w &= w - 1;
    }
  }
  return out;  // ascending, as PageIndex::diff expects
}

void Capture::on_trim(uint64_t offset, uint64_t length) {
  std::lock_guard l(mu_);
  // A punched hole (DuckDB's trim_free_blocks, right after a header's
  // fsync) zeroes blocks that header freed. It does not move the file off
  // its commit point (no header uses those blocks), but the bytes changed,
  // and DuckDB may write nothing more until some later checkpoint: ship the
  // zeroed pages now, as for a truncate, so followers stay byte-identical.
  mark_locked(offset, length);
  if (started_ && !wrote_since_push_ && !header_written_) push_locked(PushEvent::Reason::kTrim);
}

void Capture::on_write(uint64_t offset, uint64_t length) {
  std::lock_guard l(mu_);
  wrote_since_push_ = true;
  mark_locked(offset, length);
  bytes_since_push_ += length;
  stats_.bytes_written += length;
  if (length == kHeaderSize && (offset == kHeader1 || offset == kHeader2)) header_written_ = true;
}

void Capture::on_sync() {
  std::lock_guard l(mu_);
  if (!header_written_) return;  // an fsync of blocks only (before a header, or of an early append)
  header_written_ = false;
  ++stats_.commits;
  if (started_) push_locked(PushEvent::Reason::kCheckpoint);
}

void Capture::on_log_open(duckdb::FileHandle& inner, duckdb::LocalFileSystem& fs) {
  std::lock_guard l(mu_);
  log_handle_ = &inner;
  log_fs_ = &fs;
  log_from_zero_ = true;  // a new log after a checkpoint, or one reopened
}

void Capture::on_log_close(duckdb::FileHandle& inner) {
  std::lock_guard l(mu_);
  if (log_handle_ == &inner) {
    log_handle_ = nullptr;
    log_fs_ = nullptr;
  }
}

void Capture::on_log_truncate(uint64_t new_size) {
  std::lock_guard l(mu_);
  log_cut_ = std::min(log_cut_, new_size);
}

// DuckDB opens its log write-only, so it is read through a descriptor of
// our own (DuckDB takes no lock on the log, so this drops none).
std::vector<uint8_t> Capture::read_log(uint64_t from, uint64_t* size) {
  std::string path = path_ + ".wal";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *size = 0;
      return {};
    }
    throw_errno("cannot read " + path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_errno("cannot stat " + path);
  }
  *size = static_cast<uint64_t>(st.st_size);
  std::vector<uint8_t> out(from < *size ? *size - from : 0);
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(from + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw Error(ErrorKind::kIO, "cannot read " + path + " (it shrank while being read)");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

uint64_t Capture::ship_log_locked() {
  uint64_t size = 0;
  uint64_t from = log_from_zero_ ? 0 : std::min(log_shipped_end_, log_cut_);
  std::vector<uint8_t> bytes = read_log(from, &size);
  if (from > size) {  // shorter than anything we saw it cut to: ship it whole
    from = 0;
    bytes = read_log(0, &size);
  }
  if (!log_from_zero_ && from == size && log_cut_ >= log_shipped_end_) return 0;
  stats_.log_bytes += bytes.size();
  ++stats_.log_syncs;
  uint64_t ticket = replicator_->push_log(db_name_, from, std::move(bytes));
  log_shipped_end_ = size;
  log_cut_ = UINT64_MAX;
  log_from_zero_ = false;
  return ticket;
}

void Capture::on_log_sync() {
  uint64_t ticket = 0;
  {
    std::lock_guard l(mu_);
    if (!started_ || !log_handle_) return;  // start() ships the log as it is then
    uint64_t size = static_cast<uint64_t>(log_fs_->LocalFileSystem::GetFileSize(*log_handle_));
    uint64_t ignored = 0;
    std::vector<uint8_t> tail = read_log(size - std::min<uint64_t>(size, 160), &ignored);
    // A checkpoint's own flush: its header follows at once and folds the
    // log into the file, so nothing ships now. The file holds blocks of the
    // checkpoint in progress, which must not ship before its header.
    if (ends_with_checkpoint(tail)) {
      ++stats_.checkpoint_log_flushes;
      return;
    }
    try {
      // Blocks DuckDB wrote since the last checkpoint (a large append writes
      // row groups into free blocks and its log entry points at them) ship
      // first, as a segment of their own: the log may need them. No
      // checkpoint runs during a commit (DuckDB's checkpoint lock), so the
      // file is consistent at its current header.
      if (dirty_count_ > 0 && !header_written_) {
        uint64_t failures = stats_.push_failures;
        push_locked(PushEvent::Reason::kCheckpoint);
        if (stats_.push_failures != failures) {
          throw Error(ErrorKind::kIO, stats_.last_error.value_or("push failed"));
        }
      }
      ticket = ship_log_locked();
    } catch (const std::exception& e) {
      ++stats_.push_failures;
      stats_.last_error = std::string("duckblock: shipping the log of '") + db_name_ + "' failed: " + e.what();
      if (replicator_->options().log_sync_mode == LogSyncMode::kCommit) throw duckdb::IOException(*stats_.last_error);
      log_from_zero_ = true;  // the next commit ships the whole log
      return;
    }
  }
  if (ticket == 0 || replicator_->options().log_sync_mode != LogSyncMode::kCommit) return;
  // Synchronous mode: the COMMIT returns only once the store has its bytes.
  try {
    replicator_->wait_log(db_name_, ticket, options_.commit_timeout);
  } catch (const std::exception& e) {
    throw duckdb::IOException(std::string("duckblock: the commit's log did not reach the store: ") + e.what());
  }
}

void Capture::on_truncate(uint64_t old_size, uint64_t new_size) {
  std::lock_guard l(mu_);
  ++stats_.truncates;
  // Growing by truncate leaves zeros DuckDB never wrote: candidates too.
  if (new_size > old_size) mark_locked(old_size, new_size - old_size);
  // DuckDB truncates right after a header's fsync, cutting free blocks off
  // the end. Nothing was written since that commit point was pushed (at
  // most free blocks trimmed), so the file is still consistent: ship the
  // new length now (a length-only segment) rather than leave followers with
  // a longer file until the next checkpoint. A truncate with writes pending
  // is not at a commit point; the length ships with the next checkpoint.
  if (started_ && !wrote_since_push_ && !header_written_) push_locked(PushEvent::Reason::kTruncate);
}

PushResult Capture::push_locked(PushEvent::Reason reason) {
  if (!handle_) return {};
  HandleReader reader(*fs_, *handle_, path_);
  std::vector<uint64_t> candidates = take_candidates_locked();
  PushEvent ev;
  ev.reason = reason;
  ev.candidate_pages = candidates.size();
  ev.bytes_written = bytes_since_push_;
  ++stats_.pushes;
  if (options_.before_push) options_.before_push();
  try {
    ev.result = replicator_->push_checkpoint(db_name_, reader, &candidates);
  } catch (const std::exception& e) {
    // The pages stay marked, so the next commit point ships them; the index
    // of what was shipped did not change either.
    ++stats_.push_failures;
    stats_.last_error = std::string("duckblock: push of '") + db_name_ + "' failed: " + e.what();
    duckblock::log(LogLevel::kError, "push of '" + db_name_ + "' failed: " + e.what());
    if (options_.fail_checkpoint) throw duckdb::IOException(*stats_.last_error);
    return {};
  }
  dirty_.clear();
  dirty_count_ = 0;
  bytes_since_push_ = 0;
  wrote_since_push_ = false;
  if (ev.result.seq != 0) {
    ++stats_.segments;
    stats_.last_seq = ev.result.seq;
    // The log's base moved: its next segment carries it whole.
    log_from_zero_ = true;
  }
  if (options_.on_push) {
    ev.file_length = reader.file_size();
    ev.reader = &reader;
    ev.candidates = &candidates;
    options_.on_push(ev);
  }
  return ev.result;
}

// ---------------------------------------------------------------------------

// DuckDB's handle on a file the capture file system wrapped: forwards to the
// LocalFileSystem handle inside and, for a database file, tells its Capture
// when it closes. Every FileSystem method below unwraps it; every other file
// keeps its plain local handle.
class CaptureFileSystem::Handle final : public duckdb::FileHandle {
 public:
  Handle(CaptureFileSystem& fs, const std::string& path, duckdb::unique_ptr<duckdb::FileHandle> inner,
         std::shared_ptr<Capture> capture, bool log)
      : FileHandle(fs, path, inner->flags), inner_(std::move(inner)), capture_(std::move(capture)), log_(log) {
    if (capture_) log_ ? capture_->on_log_open(*inner_, fs) : capture_->on_open(*inner_, fs);
  }
  ~Handle() override { closed(); }
  void Close() override {
    closed();
    inner_->Close();
  }
  duckdb::idx_t GetProgress() override { return inner_->GetProgress(); }
  duckdb::FileCompressionType GetFileCompressionType() override { return inner_->GetFileCompressionType(); }

  duckdb::FileHandle& inner() { return *inner_; }
  // The Capture of the database file this handle is (null for the log).
  Capture* capture() { return log_ ? nullptr : capture_.get(); }
  // The Capture whose write-ahead log this handle is (null otherwise).
  Capture* log_capture() { return log_ ? capture_.get() : nullptr; }

 private:
  void closed() {
    if (capture_) log_ ? capture_->on_log_close(*inner_) : capture_->on_close(*inner_);
  }
  duckdb::unique_ptr<duckdb::FileHandle> inner_;
  std::shared_ptr<Capture> capture_;
  bool log_;
};

CaptureFileSystem::CaptureFileSystem(std::shared_ptr<Capture> capture)
    : capture_(std::move(capture)), canonical_path_(capture_->path()) {}

duckdb::unique_ptr<duckdb::FileHandle> CaptureFileSystem::OpenFile(const duckdb::string& path,
                                                                   duckdb::FileOpenFlags flags,
                                                                   duckdb::optional_ptr<duckdb::FileOpener> opener) {
  auto h = LocalFileSystem::OpenFile(path, flags, opener);
  // Only the writable handles on the database file and its write-ahead log
  // are watched: DuckDB also opens the file read-only to check its magic
  // bytes, and .tmp files beside it, none of which are replicated.
  if (!h || !flags.OpenForWriting()) return h;
  std::string canon = canonical_path(path);
  bool log = canon == canonical_path_ + ".wal";
  if (!log && canon != canonical_path_) return h;
  std::string name = h->path;
  return wrap(name, std::move(h), capture_, log);
}

duckdb::unique_ptr<duckdb::FileHandle> CaptureFileSystem::wrap(const std::string& path,
                                                               duckdb::unique_ptr<duckdb::FileHandle> inner,
                                                               std::shared_ptr<Capture> capture, bool log) {
  return duckdb::make_uniq<Handle>(*this, path, std::move(inner), std::move(capture), log);
}

Capture* CaptureFileSystem::capture_of(duckdb::FileHandle& handle) {
  auto* w = dynamic_cast<Handle*>(&handle);
  return w ? w->capture() : nullptr;
}

// The methods below call LocalFileSystem's code on the inner handle whichever
// LocalFileSystem opened it (this one, or a subclass's own): that code keeps
// no state of its own and acts on the handle's descriptor.
#define DUCKBLOCK_UNWRAP(h) \
  (dynamic_cast<Handle*>(&(h)) ? static_cast<Handle&>(h).inner() : (h))

void CaptureFileSystem::Read(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes, duckdb::idx_t location) {
  LocalFileSystem::Read(DUCKBLOCK_UNWRAP(handle), buffer, nr_bytes, location);
}

void CaptureFileSystem::Write(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes, duckdb::idx_t location) {
  auto* w = dynamic_cast<Handle*>(&handle);
  if (!w || !w->capture()) return LocalFileSystem::Write(DUCKBLOCK_UNWRAP(handle), buffer, nr_bytes, location);
  // Written first, recorded after: a push that runs in between (another
  // thread's commit point) reads the new bytes and the page still ships
  // again next time, whereas recording first could let a push clear the
  // mark before these bytes reached the file.
  LocalFileSystem::Write(w->inner(), buffer, nr_bytes, location);
  w->capture()->on_write(location, static_cast<uint64_t>(nr_bytes));
}

int64_t CaptureFileSystem::Read(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes) {
  return LocalFileSystem::Read(DUCKBLOCK_UNWRAP(handle), buffer, nr_bytes);
}

int64_t CaptureFileSystem::Write(duckdb::FileHandle& handle, void* buffer, int64_t nr_bytes) {
  auto* w = dynamic_cast<Handle*>(&handle);
  if (!w || !w->capture()) return LocalFileSystem::Write(DUCKBLOCK_UNWRAP(handle), buffer, nr_bytes);
  duckdb::idx_t at = LocalFileSystem::SeekPosition(w->inner());
  int64_t n = LocalFileSystem::Write(w->inner(), buffer, nr_bytes);
  if (n > 0) w->capture()->on_write(at, static_cast<uint64_t>(n));
  return n;
}

bool CaptureFileSystem::Trim(duckdb::FileHandle& handle, duckdb::idx_t offset_bytes, duckdb::idx_t length_bytes) {
  auto* w = dynamic_cast<Handle*>(&handle);
  if (!w || !w->capture()) return LocalFileSystem::Trim(DUCKBLOCK_UNWRAP(handle), offset_bytes, length_bytes);
  bool ok = LocalFileSystem::Trim(w->inner(), offset_bytes, length_bytes);
  // A punched hole reads back as zeros: its pages changed.
  if (ok) w->capture()->on_trim(offset_bytes, length_bytes);
  return ok;
}

int64_t CaptureFileSystem::GetFileSize(duckdb::FileHandle& handle) {
  return LocalFileSystem::GetFileSize(DUCKBLOCK_UNWRAP(handle));
}

duckdb::timestamp_t CaptureFileSystem::GetLastModifiedTime(duckdb::FileHandle& handle) {
  return LocalFileSystem::GetLastModifiedTime(DUCKBLOCK_UNWRAP(handle));
}

duckdb::string CaptureFileSystem::GetVersionTag(duckdb::FileHandle& handle) {
  return LocalFileSystem::GetVersionTag(DUCKBLOCK_UNWRAP(handle));
}

duckdb::FileType CaptureFileSystem::GetFileType(duckdb::FileHandle& handle) {
  return LocalFileSystem::GetFileType(DUCKBLOCK_UNWRAP(handle));
}

void CaptureFileSystem::Truncate(duckdb::FileHandle& handle, int64_t new_size) {
  auto* w = dynamic_cast<Handle*>(&handle);
  if (w && w->log_capture()) {
    LocalFileSystem::Truncate(w->inner(), new_size);
    return w->log_capture()->on_log_truncate(static_cast<uint64_t>(new_size));
  }
  if (!w || !w->capture()) return LocalFileSystem::Truncate(DUCKBLOCK_UNWRAP(handle), new_size);
  int64_t old_size = LocalFileSystem::GetFileSize(w->inner());
  LocalFileSystem::Truncate(w->inner(), new_size);
  w->capture()->on_truncate(static_cast<uint64_t>(old_size), static_cast<uint64_t>(new_size));
}

void CaptureFileSystem::FileSync(duckdb::FileHandle& handle) {
  auto* w = dynamic_cast<Handle*>(&handle);
  if (w && w->log_capture()) {
    // A commit (or a checkpoint's flush): the log is durable up to here.
    LocalFileSystem::FileSync(w->inner());
    return w->log_capture()->on_log_sync();
  }
  if (!w || !w->capture()) return LocalFileSystem::FileSync(DUCKBLOCK_UNWRAP(handle));
  LocalFileSystem::FileSync(w->inner());
  w->capture()->on_sync();
}

void CaptureFileSystem::Seek(duckdb::FileHandle& handle, duckdb::idx_t location) {
  LocalFileSystem::Seek(DUCKBLOCK_UNWRAP(handle), location);
}

void CaptureFileSystem::Reset(duckdb::FileHandle& handle) {
  LocalFileSystem::Reset(DUCKBLOCK_UNWRAP(handle));
}

duckdb::idx_t CaptureFileSystem::SeekPosition(duckdb::FileHandle& handle) {
  return LocalFileSystem::SeekPosition(DUCKBLOCK_UNWRAP(handle));
}

bool CaptureFileSystem::OnDiskFile(duckdb::FileHandle& handle) {
  return LocalFileSystem::OnDiskFile(DUCKBLOCK_UNWRAP(handle));
}

#undef DUCKBLOCK_UNWRAP

// ---------------------------------------------------------------------------

std::unique_ptr<ReplicatedDatabase> open_replicated(const std::string& path,
                                                    std::shared_ptr<Replicator> replicator,
                                                    const std::string& db_name, duckdb::DBConfig* config,
                                                    CaptureOptions options) {
  if (path.empty() || path == ":memory:" || path.rfind(":memory:", 0) == 0) {
    throw Error(ErrorKind::kInvalidArgument, "open_replicated: an in-memory database has no file to replicate");
  }
  duckdb::DBConfig local;
  duckdb::DBConfig& cfg = config ? *config : local;
  if (cfg.file_system) {
    throw Error(ErrorKind::kInvalidArgument,
                "open_replicated: the DBConfig already has a file system; capture installs its own");
  }
  if (cfg.options.access_mode == duckdb::AccessMode::READ_ONLY) {
    throw Error(ErrorKind::kInvalidArgument,
                "open_replicated: a read-only database writes no checkpoints to replicate");
  }
  auto capture = std::make_shared<Capture>(path, db_name, std::move(replicator), std::move(options));
  // As DuckDB's own default: a VirtualFileSystem over the local one, so
  // httpfs and friends still register beside it.
  cfg.file_system = duckdb::make_uniq<duckdb::VirtualFileSystem>(duckdb::make_uniq<CaptureFileSystem>(capture));
  auto db = std::make_unique<duckdb::DuckDB>(path, &cfg);
  capture->start();
  return std::make_unique<ReplicatedDatabase>(std::move(db), std::move(capture));
}

std::string canonical_path(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  if (ec) return std::filesystem::absolute(path).lexically_normal().string();
  return p.string();
}

}  // namespace duckblock::duckdb_integration
