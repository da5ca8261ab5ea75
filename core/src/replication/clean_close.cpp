#include "duckblock/clean_close.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"

namespace duckblock {

namespace {

constexpr const char* kRecordName = "/clean.json";

int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// File timestamps come from the kernel's coarse clock, which advances once
// per tick: two writes within one tick may leave the same st_ctime. A
// st_ctime older than the clock by two ticks is safe: any later write
// stamps a later tick.
int64_t timestamp_margin_ns() {
  timespec res{};
  int64_t tick = 4000000;  // 4 ms (HZ=250) if the coarse clock is not known
  if (::clock_getres(CLOCK_REALTIME_COARSE, &res) == 0) tick = int64_t{res.tv_sec} * 1000000000 + res.tv_nsec;
  return std::max<int64_t>(2 * tick, 2000000);
}

std::optional<Sha256Digest> head_digest(PageReader& reader, uint32_t page_size, uint64_t size) {
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(size, kProofPages * page_size)));
  if (reader.read_at(0, buf.data(), buf.size()) != buf.size()) return std::nullopt;
  return sha256(buf);
}

}  // namespace

FileStamp stamp_of(const struct stat& st) {
  FileStamp s;
  s.dev = static_cast<uint64_t>(st.st_dev);
  s.ino = static_cast<uint64_t>(st.st_ino);
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return s;
}

std::optional<CleanClose> take_proof(PageReader& reader, uint32_t page_size, bool settle) {
  CleanClose rec;
  int64_t before = realtime_ns();
  auto stamp = reader.stamp();
  if (!stamp) return std::nullopt;
  if (settle) {
    int64_t margin = timestamp_margin_ns();
    // Whole-second timestamps (ext4 with small inodes, FAT, some network
    // file systems) leave a second in which a write would not show: wait
    // for none, and record only a file last changed seconds ago.
    const bool coarse_fs = stamp->ctime_ns % 1000000000 == 0 && stamp->mtime_ns % 1000000000 == 0;
    if (coarse_fs) margin = 2000000000;
    // A st_ctime within the margin of the clock (the close follows the last
    // write by microseconds) could be shared by a write right after this
    // stat: wait it out, then check nothing wrote meanwhile. A st_ctime
    // far ahead of the clock (the clock was set back) is not waited for.
    if (stamp->ctime_ns > before - margin) {
      int64_t wait = stamp->ctime_ns + margin - before;
      if (coarse_fs || wait > 10 * margin) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::nanoseconds(wait + 1000000));
      before = realtime_ns();
      auto again = reader.stamp();
      if (!again || *again != *stamp || stamp->ctime_ns > before - margin) return std::nullopt;
    }
  }
  rec.stamp = *stamp;
  rec.taken_ns = before;
  if (reader.file_size() != stamp->size) return std::nullopt;
  auto digest = head_digest(reader, page_size, stamp->size);
  if (!digest) return std::nullopt;
  rec.head_digest = *digest;
  auto evidence = reader.evidence();
  if (!evidence) return std::nullopt;
  rec.evidence = std::move(*evidence);
  return rec;
}

bool proof_holds(const CleanClose& rec, PageReader& reader, uint32_t page_size) {
  auto now = take_proof(reader, page_size, false);
  return now && now->stamp == rec.stamp && now->head_digest == rec.head_digest && now->evidence == rec.evidence;
}

void write_clean_close(const std::string& dir, const CleanClose& rec, uint32_t mode) {
  nlohmann::json j = {{"seq", rec.seq},
                      {"checksum", checksum_hex(rec.chain_checksum)},
                      {"dev", rec.stamp.dev},
                      {"ino", rec.stamp.ino},
                      {"size", rec.stamp.size},
                      {"mtime_ns", rec.stamp.mtime_ns},
                      {"ctime_ns", rec.stamp.ctime_ns},
                      {"head_sha256", to_hex(rec.head_digest)},
                      {"evidence", rec.evidence},
                      {"taken_ns", rec.taken_ns}};
  std::string text = j.dump(1) + "\n";
  write_file_atomic(dir + kRecordName,
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), true, mode);
}

std::optional<CleanClose> take_clean_close(const std::string& dir) {
  const std::string path = dir + kRecordName;
  if (::access(path.c_str(), F_OK) != 0) return std::nullopt;
  std::optional<CleanClose> rec;
  try {
    auto bytes = read_file(path);
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    CleanClose r;
    r.seq = j.at("seq");
    r.chain_checksum = parse_checksum_hex(j.at("checksum"));
    r.stamp.dev = j.at("dev");
    r.stamp.ino = j.at("ino");
    r.stamp.size = j.at("size");
    r.stamp.mtime_ns = j.at("mtime_ns");
    r.stamp.ctime_ns = j.at("ctime_ns");
    std::string hex = j.at("head_sha256");
    if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
      throw std::runtime_error("bad head_sha256");
    }
    for (size_t i = 0; i < 32; ++i) r.head_digest[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
    r.evidence = j.at("evidence");
    r.taken_ns = j.at("taken_ns");
    rec = r;
  } catch (const std::exception&) {
    // Unreadable: no proof, so the whole file is compared (never an error:
    // the record only ever saves work).
  }
  drop_clean_close(dir);
  return rec;
}

void drop_clean_close(const std::string& dir) {
  const std::string path = dir + kRecordName;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return;
    throw_errno("cannot remove " + path);
  }
  // Durably gone before the file can change: a crash after this open must
  // not find the record again.
  fsync_dir(dir);
}

}  // namespace duckblock
