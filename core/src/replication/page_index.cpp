#include "duckblock/page_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <span>
#include <thread>

#include "duckblock/clean_close.h"
#include "duckblock/error.h"
#include "duckblock/io.h"

namespace duckblock {

FilePageReader::FilePageReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_errno("cannot open " + path);
}

FilePageReader::~FilePageReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<uint32_t> FilePageReader::file_mode() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return std::nullopt;
  return static_cast<uint32_t>(st.st_mode & 0777);
}

std::optional<FileStamp> FilePageReader::stamp() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return std::nullopt;
  return stamp_of(st);
}

size_t FilePageReader::read_at(uint64_t offset, void* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, static_cast<uint8_t*>(buf) + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + path_);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

uint64_t FilePageReader::file_size() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_errno("cannot stat " + path_);
  return static_cast<uint64_t>(st.st_size);
}

namespace {

constexpr size_t kReadChunk = 1 << 20;

}  // namespace

void read_pages(PageReader& reader, uint32_t ps, uint64_t length, const std::vector<uint64_t>& ids,
                const std::function<void(uint64_t, const uint8_t*, size_t)>& fn) {
  std::vector<uint8_t> buf(std::max<size_t>(kReadChunk, ps));
  const size_t max_run = buf.size() / ps;
  size_t i = 0;
  while (i < ids.size()) {
    uint64_t first = ids[i];
    if (first * ps >= length) break;
    size_t run = 1;
    while (i + run < ids.size() && run < max_run && ids[i + run] == first + run) ++run;
    uint64_t off = first * ps;
    size_t want = static_cast<size_t>(std::min<uint64_t>(uint64_t{run} * ps, length - off));
    size_t got = reader.read_at(off, buf.data(), want);
    if (got < want) {
      throw Error(ErrorKind::kIO, "file shrank while being read (wanted " + std::to_string(want) +
                                      " bytes at " + std::to_string(off) + ")");
    }
    for (size_t k = 0; k < run; ++k) {
      uint64_t poff = uint64_t{k} * ps;
      if (poff >= got) break;
      fn(first + k, buf.data() + poff, static_cast<size_t>(std::min<uint64_t>(ps, got - poff)));
    }
    i += run;
  }
}

namespace {

std::vector<uint64_t> all_pages(uint64_t length, uint32_t ps) {
  std::vector<uint64_t> ids((length + ps - 1) / ps);
  for (uint64_t i = 0; i < ids.size(); ++i) ids[i] = i;
  return ids;
}

Sha256Digest hash_page(const uint8_t* data, size_t len) {
  Sha256 h;
  h.update(data, len);
  return h.finish();
}

// Layout: magic, page size (4), file length (8), seq (8), chain checksum
// (8), one SHA-256 per page, SHA-256 of everything before it. Host byte
// order: the file never leaves the machine.
constexpr char kIndexMagic[8] = {'D', 'B', 'P', 'I', 'D', 'X', '0', '2'};
constexpr size_t kIndexFixed = 8 + 4 + 8 + 8 + 8;

}  // namespace

PageIndex::Diff PageIndex::diff(PageReader& reader, const std::vector<uint64_t>* candidates, bool keep_data) const {
  Diff d;
  d.file_length = reader.file_size();
  d.length_changed = d.file_length != file_length_;
  std::vector<uint64_t> ids = candidates ? *candidates : all_pages(d.file_length, page_size_);
  // The page holding the end of the file changes when the length does.
  if (d.length_changed && d.file_length % page_size_) ids.push_back(d.file_length / page_size_);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  // Hashing is most of a push's time inside DuckDB's checkpoint, so a large
  // diff splits it over two threads (a checkpoint leaves the CPU idle).
  auto run = [&](std::span<const uint64_t> part, Diff& out) {
    read_pages(reader, page_size_, d.file_length, std::vector<uint64_t>(part.begin(), part.end()),
               [&](uint64_t id, const uint8_t* p, size_t n) {
                 Sha256Digest h = hash_page(p, n);
                 if (id >= hashes_.size() || h != hashes_[id]) {
                   out.changed.push_back(id);
                   out.digests.push_back(h);
                   if (keep_data) out.data.insert(out.data.end(), p, p + n);
                 }
               });
  };
  constexpr size_t kParallelPages = 64;
  if (ids.size() < kParallelPages) {
    run(ids, d);
    return d;
  }
  size_t mid = ids.size() / 2;
  Diff second;
  std::exception_ptr second_error;
  std::thread t([&] {
    try {
      run(std::span<const uint64_t>(ids).subspan(mid), second);
    } catch (...) {
      second_error = std::current_exception();
    }
  });
  try {
    run(std::span<const uint64_t>(ids).first(mid), d);
  } catch (...) {
    t.join();
    throw;
  }
  t.join();
  if (second_error) std::rethrow_exception(second_error);
  d.changed.insert(d.changed.end(), second.changed.begin(), second.changed.end());
  d.digests.insert(d.digests.end(), second.digests.begin(), second.digests.end());
  d.data.insert(d.data.end(), second.data.begin(), second.data.end());
  return d;
}

void PageIndex::set(uint64_t page_id, const uint8_t* data, size_t len) {
  if (page_id >= hashes_.size()) hashes_.resize(page_id + 1);
  hashes_[page_id] = hash_page(data, len);
}

void PageIndex::set_hash(uint64_t page_id, const Sha256Digest& digest) {
  if (page_id >= hashes_.size()) hashes_.resize(page_id + 1);
  hashes_[page_id] = digest;
}

void PageIndex::set_length(uint64_t file_length) {
  file_length_ = file_length;
  hashes_.resize((file_length + page_size_ - 1) / page_size_);
}

void PageIndex::update(PageReader& reader, const std::vector<uint64_t>& pages, uint64_t file_length) {
  std::vector<uint64_t> ids = pages;
  std::sort(ids.begin(), ids.end());
  read_pages(reader, page_size_, file_length, ids,
                [&](uint64_t id, const uint8_t* p, size_t n) { set(id, p, n); });
  set_length(file_length);
}

void PageIndex::save(const std::string& path, bool durable, uint32_t mode) const {
  std::vector<uint8_t> out(kIndexFixed + hashes_.size() * 32);
  std::memcpy(out.data(), kIndexMagic, 8);
  std::memcpy(out.data() + 8, &page_size_, 4);
  std::memcpy(out.data() + 12, &file_length_, 8);
  std::memcpy(out.data() + 20, &seq_, 8);
  std::memcpy(out.data() + 28, &chain_checksum_, 8);
  for (size_t i = 0; i < hashes_.size(); ++i) std::memcpy(out.data() + kIndexFixed + i * 32, hashes_[i].data(), 32);
  // A trailing digest of the whole index detects a torn or damaged file.
  auto digest = sha256(out);
  out.insert(out.end(), digest.begin(), digest.end());
  write_file_atomic(path, out, durable, mode);
}

std::optional<PageIndex> PageIndex::load(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return std::nullopt;
  auto in = read_file(path);
  if (in.size() < kIndexFixed + 32 || std::memcmp(in.data(), kIndexMagic, 8) != 0) return std::nullopt;
  std::span<const uint8_t> body(in.data(), in.size() - 32);
  auto digest = sha256(body);
  if (std::memcmp(digest.data(), in.data() + in.size() - 32, 32) != 0) return std::nullopt;
  PageIndex idx;
  std::memcpy(&idx.page_size_, in.data() + 8, 4);
  std::memcpy(&idx.file_length_, in.data() + 12, 8);
  std::memcpy(&idx.seq_, in.data() + 20, 8);
  std::memcpy(&idx.chain_checksum_, in.data() + 28, 8);
  size_t n = (body.size() - kIndexFixed) / 32;
  if (idx.page_size_ == 0 || (body.size() - kIndexFixed) % 32 ||
      n != (idx.file_length_ + idx.page_size_ - 1) / idx.page_size_) {
    return std::nullopt;
  }
  idx.hashes_.resize(n);
  for (size_t i = 0; i < n; ++i) std::memcpy(idx.hashes_[i].data(), in.data() + kIndexFixed + i * 32, 32);
  return idx;
}

}  // namespace duckblock
