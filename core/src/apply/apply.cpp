#include "duckblock/apply.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "duckblock/env.h"
#include "duckblock/error.h"
#include "duckblock/sha256.h"
#include "page_writer.h"

namespace duckblock {

namespace {

class Fd {
 public:
  Fd(const std::string& path, int flags, Env* env, unsigned mode = 0644)
      : path_(path), env_(env ? *env : Env::posix()) {
    fd_ = env_.open(path, flags | O_CLOEXEC, mode);
    if (fd_ < 0) throw_errno((flags & O_EXCL ? "cannot create " : "cannot open ") + path);
  }
  ~Fd() {
    if (fd_ >= 0) env_.close(fd_);
  }
  int get() const { return fd_; }
  Env& env() const { return env_; }
  void pwrite_all(const uint8_t* p, size_t n, uint64_t off) { detail::pwrite_all(env_, fd_, p, n, off, path_); }
  void sync() {
    if (env_.fdatasync(fd_) != 0) throw_errno("cannot sync " + path_);
  }
  void truncate(uint64_t len) {
    if (env_.ftruncate(fd_, static_cast<int64_t>(len)) != 0) throw_errno("cannot set length of " + path_);
  }

 private:
  std::string path_;
  Env& env_;
  int fd_ = -1;
};

// Which file a path names and whether it was written since: device, inode,
// size and modification time. A rename keeps all four.
std::string file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_errno("cannot stat " + path);
  int64_t mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " + std::to_string(st.st_size) + " " +
         std::to_string(mtime_ns);
}

// The verification pass: walk_segment checks every page (offset, length
// record) and the checksum before a byte of the target is written.
SegmentSummary verify_for_apply(const std::string& path) {
  FileSource src(path);
  SegmentReader reader(src);
  return walk_segment(reader, SegmentUse::kApply);
}

// The write pass over a segment file verified before (`verified`, taken
// from the file with `identity`). It does not hash the pages again: the
// file must be the one verified, unwritten since, checked before the pass
// and again before the header pages (the commit region) are written, so a
// segment changed meanwhile never moves the file's commit point.
void write_pages(const std::string& target, const std::string& segment_path, const std::string& identity,
                 const SegmentSummary& verified, const ApplyOptions& opt, ApplyResult& result) {
  auto check_identity = [&] {
    if (file_identity(segment_path) != identity) {
      throw Error(ErrorKind::kCorruption, "segment " + segment_path + " changed after it was verified");
    }
  };
  check_identity();
  FileSource src(segment_path);
  SegmentReader reader(src, SegmentReaderOptions{.verified_checksum = verified.checksum});
  if (!(reader.header() == verified.header)) {
    throw Error(ErrorKind::kCorruption, "segment " + segment_path + " changed while being applied");
  }
  Fd fd(target, O_WRONLY | O_CREAT, opt.env);
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> deferred;  // the commit region's pages
  {
    // Decoding stays on this thread; runs of adjacent pages are written in
    // large pwrites on the writer's thread meanwhile.
    detail::PageWriter writer(fd.env(), fd.get(), target);
    walk_segment(reader, SegmentUse::kApply, [&](uint64_t off, std::span<const uint8_t> data) {
      if (off < opt.commit_region) {
        deferred.emplace_back(off, std::vector<uint8_t>(data.begin(), data.end()));
        return;
      }
      writer.write(off, data.data(), data.size());
      result.pages_written++;
      result.bytes_written += data.size();
    });
    writer.flush();
  }
  check_identity();
  if (!deferred.empty()) {
    fd.sync();
    for (const auto& [off, data] : deferred) {
      fd.pwrite_all(data.data(), data.size(), off);
      result.pages_written++;
      result.bytes_written += data.size();
    }
  }
  if (verified.file_length) fd.truncate(*verified.file_length);
  fd.sync();
}

}  // namespace

void check_continues(const SegmentSummary& s, const ChainPosition& at, const ApplyOptions& opt) {
  const auto& h = s.header;
  if (h.prev_checksum != at.checksum) {
    throw Error(ErrorKind::kChainBroken,
                "segment seq " + std::to_string(h.seq) + " does not continue the chain: it follows checksum " +
                    checksum_hex(h.prev_checksum) + ", the file is at seq " + std::to_string(at.seq) +
                    " checksum " + checksum_hex(at.checksum));
  }
  if (opt.check_seq && h.seq != at.seq + 1) {
    throw Error(ErrorKind::kChainBroken, "segment seq " + std::to_string(h.seq) +
                                             " does not follow seq " + std::to_string(at.seq));
  }
  if (opt.page_size && h.page_size != *opt.page_size) {
    throw Error(ErrorKind::kChainBroken, "segment page size " + std::to_string(h.page_size) +
                                             " differs from the file's " + std::to_string(*opt.page_size));
  }
}

ApplyResult apply_segment(const std::string& target, const std::string& segment_path,
                          const ChainPosition& at, const ApplyOptions& opt) {
  ApplyResult result;
  VerifiedSegment v = verify_segment_file(segment_path);
  result.summary = v.summary;
  check_continues(result.summary, at, opt);
  write_pages(target, segment_path, v.identity, result.summary, opt, result);
  result.position = {result.summary.header.seq, result.summary.checksum};
  return result;
}

ChainPosition snapshot_position(const SegmentHeader& h) { return {h.seq, h.prev_checksum}; }

namespace {

// What says a replica is as we left it: its size, modification time and a
// hash of its commit region (a database rewrites a header there at every
// checkpoint). "" if the file does not exist.
std::string file_proof(const std::string& path, uint64_t commit_region) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  Sha256 h;
  {
    std::vector<uint8_t> head(commit_region);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open " + path);
    size_t got = 0;
    while (got < head.size()) {
      ssize_t n = ::pread(fd, head.data() + got, head.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    h.update(head.data(), got);
  }
  int64_t mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return std::to_string(st.st_size) + " " + std::to_string(mtime_ns) + " " + to_hex(h.finish());
}

// The file's inode and change time: a rename, chmod or any write moves
// ctime, and no user call sets it back.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  int64_t ctime_ns = int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return std::to_string(st.st_ino) + " " + std::to_string(ctime_ns);
}

}  // namespace

bool Replica::stamp_changed() const { return !file_stamp_.empty() && file_stamp(path_) != file_stamp_; }

void Replica::accept_stamp() { save_journal(false, 0); }

void Replica::mark_diverged(const std::string& why) {
  diverged_ = why;
  save_journal(false, 0);
}

void Replica::set_lineage(const std::string& lineage) {
  lineage_ = lineage;
  save_journal(false, 0);
}

void Replica::check_unchanged() const {
  auto changed = [&](const std::string& how) {
    throw Error(ErrorKind::kChainBroken,
                "the replica " + path_ + " was changed since duckblock last applied to it (" + how +
                    "), for example by a DuckDB that opened it read-write: it is no longer the chain's seq " +
                    std::to_string(position_.seq) +
                    " and applying more would corrupt it. `duckblock follow --force` (or restore --force) "
                    "replaces it with a fresh copy from the store");
  };
  if (!diverged_.empty()) changed(diverged_);
  if (file_proof_.empty()) return;
  std::string now = file_proof(path_, options_.commit_region);
  if (now == file_proof_) return;
  if (now.empty()) changed("it is gone");
  auto field = [](const std::string& p, int i) {
    size_t a = 0;
    for (int k = 0; k < i; ++k) a = p.find(' ', a) + 1;
    return p.substr(a, p.find(' ', a) - a);
  };
  if (field(now, 0) != field(file_proof_, 0)) {
    changed("its size is " + field(now, 0) + " bytes, not " + field(file_proof_, 0));
  }
  if (field(now, 2) != field(file_proof_, 2)) changed("its header pages differ");
  changed("its modification time differs");
}

// ---- Replica ----

Replica::Replica(std::string path, ApplyOptions options)
    : path_(std::move(path)), options_(options) {
  recover();
}

bool Replica::whole_file_check_due(uint64_t applied_segment_bytes, uint64_t file_size) {
  applied_since_check_ += applied_segment_bytes;
  return !checked_once_ || file_size <= kAlwaysCheckBytes || applied_since_check_ >= file_size;
}

void Replica::set_position(const ChainPosition& position, std::optional<uint32_t> page_size) {
  position_ = position;
  page_size_ = page_size;
  save_journal(false, 0);
}

void Replica::save_journal(bool pending, uint64_t pending_seq, bool replacing) {
  nlohmann::json j;
  j["seq"] = position_.seq;
  j["checksum"] = checksum_hex(position_.checksum);
  if (page_size_) j["page_size"] = *page_size_;
  if (pending) j["pending_seq"] = pending_seq;
  if (replacing) j["replacing"] = true;
  if (!lineage_.empty()) j["lineage"] = lineage_;
  // The proof is taken when the file is at rest at the journal's position.
  if (!pending && !replacing) file_proof_ = file_proof(path_, options_.commit_region);
  if (!pending && !replacing && !file_proof_.empty()) j["file"] = file_proof_;
  if (!pending && !replacing) file_stamp_ = file_stamp(path_);
  if (!pending && !replacing && !file_stamp_.empty()) j["stamp"] = file_stamp_;
  if (!diverged_.empty()) j["diverged"] = diverged_;
  std::string text = j.dump(1) + "\n";
  write_file_atomic(journal_path(),
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), true, 0644,
                    options_.env);
}

void Replica::recover() {
  if (::access(journal_path().c_str(), F_OK) != 0) {
    ::unlink(pending_path().c_str());
    return;
  }
  auto bytes = read_file(journal_path());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin(), bytes.end());
    position_.seq = j.at("seq").get<uint64_t>();
    position_.checksum = parse_checksum_hex(j.at("checksum").get<std::string>());
    if (j.contains("page_size")) page_size_ = j["page_size"].get<uint32_t>();
    lineage_ = j.value("lineage", std::string());
    file_proof_ = j.value("file", std::string());
    file_stamp_ = j.value("stamp", std::string());
    diverged_ = j.value("diverged", std::string());
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kCorruption, "replica journal " + journal_path() + " is unreadable: " + e.what());
  }
  if (j.value("replacing", false)) {
    finish_replace();  // a crash during reset_from_snapshot, after the new file was complete
    return;
  }
  if (!j.contains("pending_seq")) {
    ::unlink(pending_path().c_str());  // a crash before the journal named it
    return;
  }
  // A crash interrupted an apply: the pending segment is durable, so redo it.
  ApplyOptions opt = options_;
  opt.page_size = page_size_;
  ApplyResult r = apply_segment(path_, pending_path(), position_, opt);
  position_ = r.position;
  save_journal(false, 0);
  ::unlink(pending_path().c_str());
}

VerifiedSegment verify_segment_file(const std::string& path) {
  VerifiedSegment v;
  v.path = path;
  // Taken before the read: a write during or after it changes the mtime.
  v.identity = file_identity(path);
  v.summary = verify_for_apply(path);
  return v;
}

ApplyResult Replica::apply(const std::string& segment_path, bool consume) {
  check_unchanged();
  if (consume) return apply(verify_segment_file(segment_path));
  // The copy becomes the pending file that is written from, so it is the
  // copy that is verified (once); no journal names it until it has.
  ::unlink(pending_path().c_str());
  {
    FileSource src(segment_path);
    FileSink sink(pending_path(), 0600, options_.env);
    copy_stream(src, sink);
    sink.sync();
    sink.close();
  }
  fsync_dir(dirname_of(pending_path()));
  VerifiedSegment copy;
  try {
    copy = verify_segment_file(pending_path());
    ApplyOptions opt = options_;
    opt.page_size = page_size_;
    check_continues(copy.summary, position_, opt);
  } catch (...) {
    ::unlink(pending_path().c_str());  // refused: nothing names it, nothing was written
    throw;
  }
  return apply(copy);
}

ApplyResult Replica::apply(const VerifiedSegment& segment) {
  check_unchanged();
  ApplyOptions opt = options_;
  opt.page_size = page_size_;
  ApplyResult result;
  result.summary = segment.summary;
  check_continues(result.summary, position_, opt);
  // The file is moved, not copied, so the pending file is the very file
  // (the same inode, unwritten since: same size and mtime) that was
  // verified, and it is not hashed again before the write pass (which
  // hashes what it writes and refuses a mismatch).
  if (file_identity(segment.path) != segment.identity) {
    throw Error(ErrorKind::kCorruption, "segment " + segment.path + " changed after it was verified");
  }
  if (segment.path != pending_path() && ::rename(segment.path.c_str(), pending_path().c_str()) != 0) {
    throw_errno("cannot move " + segment.path + " to " + pending_path());
  }
  fsync_dir(dirname_of(pending_path()));
  save_journal(true, result.summary.header.seq);
  return write_pending(result, segment.identity);
}

ApplyResult Replica::write_pending(ApplyResult& result, const std::string& identity) {
  ApplyOptions opt = options_;
  opt.page_size = page_size_;
  write_pages(path_, pending_path(), identity, result.summary, opt, result);
  position_ = {result.summary.header.seq, result.summary.checksum};
  page_size_ = result.summary.header.page_size;
  save_journal(false, 0);
  ::unlink(pending_path().c_str());
  result.position = position_;
  return result;
}

ApplyResult Replica::reset_from_snapshot(const std::string& snapshot_path, std::optional<ChainPosition> position) {
  // The new file takes the snapshot file's mode (see download_segment).
  struct stat st {};
  unsigned mode = ::stat(snapshot_path.c_str(), &st) == 0 ? (st.st_mode & 0666) : 0600;
  FileSource src(snapshot_path);
  return reset_from_snapshot(src, mode, [&](const SegmentSummary& s) {
    ChainPosition p = position ? *position : snapshot_position(s.header);
    if (p.seq != s.header.seq) {
      throw Error(ErrorKind::kChainBroken, "snapshot " + snapshot_path + " holds seq " +
                                               std::to_string(s.header.seq) + ", expected " + std::to_string(p.seq));
    }
    return p;
  });
}

// One pass: the snapshot is decoded and hashed on this thread while its
// pages are written to the temp file on the page writer's, and the temp
// file becomes the replica only by the rename below, after the trailer has
// verified and `bind` accepted it. Nothing reads the temp file, so writing
// it before verification breaks no rule: the replica itself never holds
// unverified bytes. A snapshot that fails leaves no temp file. (An
// incremental, written into the live file, is verified in full before its
// first write: apply().)
ApplyResult Replica::reset_from_snapshot(ByteSource& in, unsigned mode,
                                         const std::function<ChainPosition(const SegmentSummary&)>& bind) {
  ApplyResult result;
  std::string tmp = restore_path();
  ::unlink(tmp.c_str());
  ChainPosition pos;
  try {
    Fd fd(tmp, O_WRONLY | O_CREAT | O_EXCL, options_.env, mode);
    SegmentReader reader(in);
    SegmentSummary& s = result.summary;
    {
      detail::PageWriter writer(fd.env(), fd.get(), tmp);
      s = walk_segment(reader, SegmentUse::kApply, [&](uint64_t off, std::span<const uint8_t> data) {
        writer.write(off, data.data(), data.size());
        result.pages_written++;
        result.bytes_written += data.size();
      });
      pos = bind ? bind(s) : snapshot_position(s.header);
      writer.flush();
    }
    if (s.file_length) fd.truncate(*s.file_length);
    fd.sync();
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(dirname_of(tmp));
  // The journal names the new position and the file that carries it before
  // the rename, so a crash on either side of the rename is finished by
  // recover() and the journal never describes the wrong file.
  const ChainPosition old_position = position_;
  const std::optional<uint32_t> old_page_size = page_size_;
  position_ = pos;
  page_size_ = result.summary.header.page_size;
  try {
    save_journal(false, 0, /*replacing=*/true);
  } catch (...) {
    // Unless the journal already names the replacement (then it is finished
    // here or at the next open), the replica stays as it was.
    if (!journal_replacing()) {
      position_ = old_position;
      page_size_ = old_page_size;
      ::unlink(tmp.c_str());
    }
    throw;
  }
  finish_replace();
  result.position = position_;
  return result;
}

bool Replica::journal_replacing() const {
  try {
    auto bytes = read_file(journal_path());
    return nlohmann::json::parse(bytes.begin(), bytes.end()).value("replacing", false);
  } catch (const std::exception&) {
    return false;  // none, or torn: not a journal that names it
  }
}

void Replica::finish_replace() {
  std::string tmp = restore_path();
  if (::access(tmp.c_str(), F_OK) == 0) {
    if (::rename(tmp.c_str(), path_.c_str()) != 0) throw_errno("cannot rename into " + path_);
    fsync_dir(dirname_of(path_));
  }
  diverged_.clear();  // a whole new file
  save_journal(false, 0);
}

}  // namespace duckblock
