// The capture file system and its per-database state. See duckdb_capture.h
// for when a push happens and why.
#include "duckblock/duckdb_capture.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <filesystem>

#include "duckblock/error.h"
#include "duckblock/log.h"
#include "duckdb/common/virtual_file_system.hpp"

namespace duckblock::duckdb_integration {

namespace {

constexpr uint64_t kPage = 4096;
// DuckDB's two database headers (h1, h2) live at these offsets and are
// exactly one 4 KiB page each; the main header at 0 is written only when the
// file is created or upgraded.
constexpr uint64_t kHeader1 = 4096;
constexpr uint64_t kHeader2 = 8192;
constexpr uint64_t kHeaderSize = 4096;

// The same file, whichever way DuckDB spells its path (relative, with ./).
std::string canonical(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  if (ec) return std::filesystem::absolute(path).lexically_normal().string();
  return p.string();
}

}  // namespace

// Reads the database file through DuckDB's own handle: opening and closing a
// second descriptor would drop DuckDB's POSIX lock on the file.
class Capture::HandleReader final : public PageReader {
 public:
  HandleReader(duckdb::LocalFileSystem& fs, duckdb::FileHandle& h) : fs_(fs), h_(h) {}
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

 private:
  duckdb::LocalFileSystem& fs_;
  duckdb::FileHandle& h_;
};

Capture::Capture(std::string path, std::string db_name, std::shared_ptr<Replicator> replicator,
                 CaptureOptions options)
    : path_(canonical(path)),
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
  HandleReader reader(*fs_, *handle_);
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
  started_ = true;
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
  HandleReader reader(*fs_, *handle_);
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
         std::shared_ptr<Capture> capture)
      : FileHandle(fs, path, inner->flags), inner_(std::move(inner)), capture_(std::move(capture)) {
    if (capture_) capture_->on_open(*inner_, fs);
  }
  ~Handle() override {
    if (capture_) capture_->on_close(*inner_);
  }
  void Close() override {
    if (capture_) capture_->on_close(*inner_);
    inner_->Close();
  }
  duckdb::idx_t GetProgress() override { return inner_->GetProgress(); }
  duckdb::FileCompressionType GetFileCompressionType() override { return inner_->GetFileCompressionType(); }

  duckdb::FileHandle& inner() { return *inner_; }
  Capture* capture() { return capture_.get(); }

 private:
  duckdb::unique_ptr<duckdb::FileHandle> inner_;
  std::shared_ptr<Capture> capture_;
};

CaptureFileSystem::CaptureFileSystem(std::shared_ptr<Capture> capture)
    : capture_(std::move(capture)), canonical_path_(capture_->path()) {}

duckdb::unique_ptr<duckdb::FileHandle> CaptureFileSystem::OpenFile(const duckdb::string& path,
                                                                   duckdb::FileOpenFlags flags,
                                                                   duckdb::optional_ptr<duckdb::FileOpener> opener) {
  auto h = LocalFileSystem::OpenFile(path, flags, opener);
  // Only the writable handle on the database file itself is watched: DuckDB
  // also opens it read-only to check its magic bytes, and opens the .wal and
  // .tmp files beside it, none of which are replicated.
  if (!h || !flags.OpenForWriting() || canonical(path) != canonical_path_) return h;
  std::string name = h->path;
  return wrap(name, std::move(h), capture_);
}

duckdb::unique_ptr<duckdb::FileHandle> CaptureFileSystem::wrap(const std::string& path,
                                                               duckdb::unique_ptr<duckdb::FileHandle> inner,
                                                               std::shared_ptr<Capture> capture) {
  return duckdb::make_uniq<Handle>(*this, path, std::move(inner), std::move(capture));
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
  if (!w || !w->capture()) return LocalFileSystem::Truncate(DUCKBLOCK_UNWRAP(handle), new_size);
  int64_t old_size = LocalFileSystem::GetFileSize(w->inner());
  LocalFileSystem::Truncate(w->inner(), new_size);
  w->capture()->on_truncate(static_cast<uint64_t>(old_size), static_cast<uint64_t>(new_size));
}

void CaptureFileSystem::FileSync(duckdb::FileHandle& handle) {
  auto* w = dynamic_cast<Handle*>(&handle);
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

}  // namespace duckblock::duckdb_integration
