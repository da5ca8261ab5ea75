#include "spool.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/replicator.h"
#include "digest_spool.h"

namespace duckblock {

namespace {

std::string seq_name(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx.hadbp", static_cast<unsigned long long>(seq));
  return buf;
}

void write_json(const std::string& path, const nlohmann::json& j, uint32_t mode, Env* env) {
  std::string text = j.dump(1) + "\n";
  write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), true,
                    mode, env);
}

}  // namespace

Spool::Spool(std::string dir, std::string name, uint32_t page_size, Env* env)
    : dir_(std::move(dir)), name_(std::move(name)), page_size_(page_size), env_(env ? env : &Env::posix()) {
  make_directories(incr_dir());
  make_directories(snap_dir());
}

void Spool::open(std::optional<uint32_t> source_mode) {
  lock_ = std::make_unique<SpoolLock>(dir_, "the spool of '" + name_ + "'");
  file_mode_ = source_mode.value_or(0600) & 0666;
  uint32_t dir_mode = 0700 | ((file_mode_ & 0040) ? 0050 : 0) | ((file_mode_ & 0004) ? 0005 : 0);
  ::chmod(dir_.c_str(), dir_mode);
}

void Spool::save_state(const SpoolState& st) const {
  nlohmann::json j = {{"seq", st.seq},
                      {"checksum", checksum_hex(st.checksum)},
                      {"uploaded_seq", st.uploaded_seq},
                      {"uploaded_any", st.uploaded_any},
                      {"last_snapshot_seq", st.snapshot_base_seq},
                      {"segments_since_snapshot", st.segments_since_snapshot},
                      {"bytes_since_snapshot", st.bytes_since_snapshot},
                      {"page_size", page_size_}};
  if (!st.lineage.empty()) {
    j["lineage"] = st.lineage;
    j["convention"] = st.convention;
    j["base_checksum"] = checksum_hex(st.base_checksum);
  }
  write_json(dir_ + "/state.json", j, file_mode_, env_);
}

std::optional<SpoolState> Spool::load_state() const {
  std::string path = dir_ + "/state.json";
  if (::access(path.c_str(), F_OK) != 0) return std::nullopt;
  auto bytes = read_file(path);
  try {
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    SpoolState st;
    st.seq = j.at("seq");
    st.checksum = parse_checksum_hex(j.at("checksum"));
    st.uploaded_seq = j.at("uploaded_seq");
    st.uploaded_any = j.value("uploaded_any", true);
    st.snapshot_base_seq = j.at("last_snapshot_seq");
    st.segments_since_snapshot = j.at("segments_since_snapshot");
    st.bytes_since_snapshot = j.at("bytes_since_snapshot");
    st.lineage = j.value("lineage", std::string());
    st.convention = j.value("convention", 1);
    if (j.contains("base_checksum")) st.base_checksum = parse_checksum_hex(j.at("base_checksum"));
    if (j.at("page_size").get<uint32_t>() != page_size_) {
      throw Error(ErrorKind::kInvalidArgument, "spool " + dir_ + " was written with page size " +
                                                   std::to_string(j.at("page_size").get<uint32_t>()));
    }
    return st;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kCorruption, "spool state " + path + " is unreadable: " + e.what() +
                                            " (move the spool directory away to start over from the store)");
  }
}

std::map<uint64_t, std::string> Spool::files(const std::string& dir, bool remove_temp_files) {
  std::map<uint64_t, std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() == 22 && name.substr(16) == ".hadbp" && name.find_first_not_of("0123456789abcdef") == 16) {
      out[std::stoull(name.substr(0, 16), nullptr, 16)] = dir + "/" + name;
    } else if (remove_temp_files && name.rfind(".tmp-", 0) == 0) {
      ::unlink((dir + "/" + name).c_str());  // a push or compaction that died before its rename
    }
  }
  ::closedir(d);
  return out;
}

std::string Spool::incremental_path(uint64_t seq) const { return incr_dir() + "/" + seq_name(seq); }
std::string Spool::snapshot_path(uint64_t seq) const { return snap_dir() + "/" + seq_name(seq); }

WrittenSegment Spool::write(const SegmentPlan& plan, int compression) const {
  const std::string dir = plan.snapshot ? snap_dir() : incr_dir();
  std::string final_path = plan.snapshot ? snapshot_path(plan.seq) : incremental_path(plan.seq);
  std::string tmp = dir + "/.tmp-" + seq_name(plan.seq);
  WrittenSegment out;
  try {
    FileSink sink(tmp, file_mode_, env_);
    SegmentHeader h;
    h.page_size = page_size_;
    h.seq = plan.seq;
    h.prev_checksum = plan.prev_checksum;
    h.created_ms = plan.created_ms;
    h.page_count = static_cast<uint32_t>(plan.page_count + (plan.with_length ? 1 : 0));
    if (compression > 0) h.flags = kFlagCompressed;
    SegmentWriter w(sink, h, compression);
    size_t pages_written = 0;
    plan.source([&](uint64_t id, const uint8_t* p, size_t n) {
      w.add_page(id, std::span<const uint8_t>(p, n));
      ++pages_written;
    });
    if (pages_written != plan.page_count) {
      throw Error(ErrorKind::kIO, "file shrank while a checkpoint was being read");
    }
    if (plan.with_length) w.add_page(kFileLengthPageId, encode_file_length(plan.file_length));
    out.checksum = w.finish();
    out.size = w.bytes_written();
    sink.sync();
    sink.close();
    if (env_->rename(tmp, final_path) != 0) throw_errno("cannot rename " + tmp);
    fsync_dir(dir, env_);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return out;
}

void Spool::remove_segment(const std::string& path) const { ::unlink(path.c_str()); }

void Spool::remove_all_segments() const {
  for (auto& [seq, path] : incrementals()) ::unlink(path.c_str());
  for (auto& [seq, path] : snapshots()) ::unlink(path.c_str());
}

void Spool::adopt(SpoolState& st) const {
  files(snap_dir(), true);  // deletes temp files a crash left
  for (auto& [seq, path] : files(incr_dir(), true)) {
    if (seq <= st.seq) {
      if (st.uploaded_any && seq <= st.uploaded_seq) ::unlink(path.c_str());  // the crash came before its removal
      continue;
    }
    if (seq != st.seq + 1) {
      throw Error(ErrorKind::kCorruption, "the spool of '" + name_ + "' has a gap: segment " + path +
                                              " follows seq " + std::to_string(st.seq));
    }
    FileSource src(path);
    auto s = verify_segment(src);
    if (s.header.seq != seq || s.header.prev_checksum != st.checksum) {
      throw Error(ErrorKind::kCorruption, "spooled segment " + path + " does not chain onto the spool state");
    }
    st.seq = seq;
    st.checksum = s.checksum;
    st.segments_since_snapshot++;
    st.bytes_since_snapshot += s.encoded_size;
  }
  drop_stale_digests(incr_dir(), st.uploaded_any ? std::optional<uint64_t>(st.uploaded_seq) : std::nullopt, st.seq);
  // A snapshot is spooled after the incremental of its seq, so it is
  // covered by the head now; only the counters need it.
  for (auto& [seq, path] : snapshots()) {
    if (seq > st.snapshot_base_seq && seq <= st.seq) {
      st.snapshot_base_seq = seq;
      st.segments_since_snapshot = st.seq - seq;
      st.bytes_since_snapshot = 0;
    }
  }
}

void Spool::check_state(const SpoolState& st) const {
  auto all = incrementals();
  // Every seq the store may not have yet must be here to be uploaded: a
  // state ahead of its segments (damaged, or a spool restored in part)
  // would wait for an upload that cannot happen, then blame the store.
  const uint64_t first_pending = st.uploaded_any ? st.uploaded_seq + 1 : 1;
  if (st.seq >= first_pending) {
    const uint64_t needed = st.seq - first_pending + 1;
    uint64_t have = 0;
    for (auto i = all.lower_bound(first_pending); i != all.end() && i->first <= st.seq; ++i) ++have;
    if (have != needed) {
      throw Error(ErrorKind::kCorruption,
                  "the spool state " + dir_ + "/state.json is at seq " + std::to_string(st.seq) + " with the store at " +
                      (st.uploaded_any ? "seq " + std::to_string(st.uploaded_seq) : "nothing uploaded") + ", but " +
                      std::to_string(needed - have) + " of the segments between are not in the spool: state.json " +
                      "is damaged or the spool is incomplete. Move the spool directory away to rebuild the shipped "
                      "state from the store");
    }
  }
  auto it = all.find(st.seq);
  if (it == all.end()) return;
  FileSource src(it->second);
  SegmentSummary s = verify_segment(src);
  if (s.checksum != st.checksum) {
    throw Error(ErrorKind::kCorruption, "the spool state " + dir_ + "/state.json records checksum " +
                                            checksum_hex(st.checksum) + " at seq " + std::to_string(st.seq) +
                                            " but the spooled segment there has " + checksum_hex(s.checksum) +
                                            ": state.json is damaged. Move the spool directory away to rebuild "
                                            "the shipped state from the store");
  }
}

std::optional<uint64_t> Spool::checksum_at(const SpoolState& st, uint64_t seq) const {
  if (seq == st.seq) return st.checksum;
  if (seq == 0) return st.convention == 2 ? st.base_checksum : 0;
  auto all = incrementals();
  auto it = all.find(seq + 1);
  if (it == all.end()) return std::nullopt;
  FileSource src(it->second);
  SegmentReader reader(src);
  return reader.header().prev_checksum;
}

Spool::Pending Spool::pending_in(const std::string& dir) {
  Pending p;
  for (const auto& all : {files(dir + "/0000"), files(dir + "/0001")}) {
    for (auto& [seq, path] : all) {
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0) {
        p.segments++;
        p.bytes += uint64_t(st.st_size);
      }
    }
  }
  return p;
}

// ---- what the command line asks of a spool (replicator.h) ----

uint64_t spooled_bytes(const std::string& spool_dir, const std::string& db) {
  return Spool::pending_in(spool_dir + "/" + db).bytes;
}

void check_spool_origin(const std::string& spool_dir, const std::string& db, const std::string& store_url) {
  const std::string dir = spool_dir + "/" + db;
  const std::string path = dir + "/origin.json";
  if (::access(path.c_str(), F_OK) != 0) return;
  auto bytes = read_file(path);
  std::string theirs;
  try {
    theirs = nlohmann::json::parse(bytes.begin(), bytes.end()).at("store").get<std::string>();
  } catch (const std::exception&) {
    return;  // unreadable marker: the spool's own checks still apply
  }
  if (theirs == store_url) return;
  throw Error(ErrorKind::kInvalidArgument,
              "the spool " + spool_dir + " ships this database to " + theirs + ", not " + store_url +
                  ": pass --spool DIR with a directory for this store (or remove " + dir +
                  " to start its state over from the store)");
}

void record_spool_origin(const std::string& spool_dir, const std::string& db, const std::string& store_url,
                         const std::string& file, uint32_t mode) {
  const std::string dir = spool_dir + "/" + db;
  make_directories(dir);
  write_json(dir + "/origin.json", {{"store", store_url}, {"file", file}}, mode, nullptr);
}

}  // namespace duckblock
