#include "duckblock/page_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <span>
#include <thread>

#include "duckblock/clean_close.h"
#include "duckblock/error.h"
#include "duckblock/io.h"
#include "paged_hashes.h"

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

Sha256Digest hash_page(const uint8_t* data, size_t len) {
  Sha256 h;
  h.update(data, len);
  return h.finish();
}

// Whole-file passes go in runs of this many page ids, so no pass holds a
// list of the file's pages.
constexpr uint64_t kIdChunk = 1 << 16;

// Calls fn on the ids [from, to) in chunks.
void for_id_chunks(uint64_t from, uint64_t to, const std::function<void(const std::vector<uint64_t>&)>& fn) {
  std::vector<uint64_t> ids;
  for (uint64_t a = from; a < to; a += kIdChunk) {
    uint64_t b = std::min(to, a + kIdChunk);
    ids.resize(b - a);
    for (uint64_t i = a; i < b; ++i) ids[i - a] = i;
    fn(ids);
  }
}

// The earlier format (DBPIDX02): magic, page size (4), file length (8),
// seq (8), chain checksum (8), one SHA-256 per page, SHA-256 of everything
// before it, all read into memory. Converted once, streaming.
constexpr char kV2Magic[8] = {'D', 'B', 'P', 'I', 'D', 'X', '0', '2'};
constexpr size_t kV2Fixed = 8 + 4 + 8 + 8 + 8;

// Pages per cache block (PagedHashes::kPerBlock).
constexpr uint64_t kPerBlock = PagedHashes::kPerBlock;

}  // namespace

void read_all_pages(PageReader& reader, uint32_t page_size, uint64_t length,
                    const std::function<void(uint64_t, const uint8_t*, size_t)>& fn) {
  read_page_range(reader, page_size, length, 0, (length + page_size - 1) / page_size, fn);
}

void read_page_range(PageReader& reader, uint32_t page_size, uint64_t length, uint64_t first, uint64_t end,
                     const std::function<void(uint64_t, const uint8_t*, size_t)>& fn) {
  end = std::min(end, (length + page_size - 1) / page_size);
  if (first >= end) return;
  for_id_chunks(first, end,
                [&](const std::vector<uint64_t>& ids) { read_pages(reader, page_size, length, ids, fn); });
}

PageIndex::PageIndex(uint32_t page_size) : page_size_(page_size) {}
PageIndex::~PageIndex() = default;
PageIndex::PageIndex(PageIndex&&) noexcept = default;
PageIndex& PageIndex::operator=(PageIndex&&) noexcept = default;

namespace {

// Reads a DBPIDX02 file into `into` (bound, empty); false if it is torn or
// damaged. Two passes: the digest first, so no entry of a damaged file counts.
bool convert_v2(const std::string& path, PageIndex& into, uint32_t page_size) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) < kV2Fixed + 32) return false;
  const uint64_t body = static_cast<uint64_t>(st.st_size) - 32;
  if ((body - kV2Fixed) % 32) return false;
  std::vector<uint8_t> buf(1 << 20);
  Sha256 h;
  {
    FileSource src(path);
    for (uint64_t left = body; left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      src.read_exact(buf.data(), n, "page index");
      h.update(buf.data(), n);
      left -= n;
    }
    Sha256Digest want;
    src.read_exact(want.data(), 32, "page index digest");
    if (h.finish() != want) return false;
  }
  FileSource src(path);
  uint8_t fixed[kV2Fixed];
  src.read_exact(fixed, kV2Fixed, "page index header");
  uint32_t ps;
  uint64_t length, seq, checksum;
  std::memcpy(&ps, fixed + 8, 4);
  std::memcpy(&length, fixed + 12, 8);
  std::memcpy(&seq, fixed + 20, 8);
  std::memcpy(&checksum, fixed + 28, 8);
  const uint64_t n = (body - kV2Fixed) / 32;
  if (ps != page_size || n != (length + ps - 1) / ps) return false;
  Sha256Digest d;
  for (uint64_t i = 0; i < n; ++i) {
    src.read_exact(d.data(), 32, "page index entry");
    into.set_hash(i, d);
  }
  into.set_length(length);
  into.set_position(seq, checksum);
  return true;
}

}  // namespace

PageIndex PageIndex::open(const std::string& path, uint32_t page_size, uint32_t mode, bool* found,
                          size_t cache_bytes, Env* env) {
  PageIndex idx(page_size);
  bool ok = false;
  char magic[8] = {};
  {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::pread(fd, magic, 8, 0) != 8) std::memset(magic, 0, 8);
      ::close(fd);
    }
  }
  if (std::memcmp(magic, kV2Magic, 8) == 0) {
    // Converted beside it, then renamed over it.
    std::string tmp = path + ".v3";
    ::unlink(tmp.c_str());
    idx.store_ = std::make_unique<PagedHashes>(tmp, mode, cache_bytes / PagedHashes::kBlockSize, env);
    ok = convert_v2(path, idx, page_size);
    if (ok) {
      idx.save(true);
      if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot rename " + tmp);
    } else {
      ::unlink(tmp.c_str());
    }
    idx.store_.reset();
    if (ok) return open(path, page_size, mode, found, cache_bytes, env);
  }
  idx.store_ = std::make_unique<PagedHashes>(path, mode, cache_bytes / PagedHashes::kBlockSize, env);
  auto h = idx.store_->read_header();
  if (h && h->page_size == page_size) {
    idx.file_length_ = h->file_length;
    idx.seq_ = h->seq;
    idx.chain_checksum_ = h->chain_checksum;
    idx.count_ = (h->file_length + page_size - 1) / page_size;
    idx.digest_known_ = h->digest.has_value();
    if (h->digest) {
      idx.digest_ = FileDigest::from_bytes(h->digest->lthash);
      idx.missing_ = h->digest->missing;
      // Pages past the stored entries have none, so they are all missing;
      // a header that says fewer is not describing this file.
      const uint64_t end = idx.store_->entries_end();
      if (idx.count_ > end && idx.count_ - end > idx.missing_) idx.digest_known_ = false;
    }
    ok = true;
  } else {
    idx.clear();
  }
  if (found) *found = ok;
  return idx;
}

void PageIndex::clear() {
  if (store_) store_->clear();
  pending_.clear();
  file_length_ = seq_ = chain_checksum_ = count_ = 0;
  digest_ = FileDigest{};
  missing_ = 0;
  digest_known_ = true;
  damaged_seen_ = store_ ? store_->damaged_blocks() : 0;
}

Sha256Digest PageIndex::expected(uint64_t id) const {
  if (id >= count_) return Sha256Digest{};
  if (auto it = pending_.find(id); it != pending_.end()) return it->second.first;
  return store_ ? store_->get(id) : Sha256Digest{};
}

PageIndex::Diff PageIndex::diff(PageReader& reader, const std::vector<uint64_t>* candidates, bool keep_data) const {
  Diff d;
  d.file_length = reader.file_size();
  d.length_changed = d.file_length != file_length_;
  const uint64_t pages = (d.file_length + page_size_ - 1) / page_size_;
  std::vector<uint64_t> ids;
  if (candidates) {
    ids = *candidates;
    // The page holding the end of the file changes when the length does.
    if (d.length_changed && d.file_length % page_size_) ids.push_back(d.file_length / page_size_);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  // Compares a run of ids, fetching the index's entries a block at a time
  // (one lock per 127 pages, not one per page).
  auto compare = [&](const std::vector<uint64_t>& part, Diff& out) {
    uint64_t cur = UINT64_MAX;
    std::array<Sha256Digest, kPerBlock> block{};
    read_pages(reader, page_size_, d.file_length, part, [&](uint64_t id, const uint8_t* p, size_t n) {
      Sha256Digest want{};
      if (id < count_) {
        if (auto it = pending_.find(id); it != pending_.end()) {
          want = it->second.first;
        } else if (store_) {
          if (id / kPerBlock != cur) {
            cur = id / kPerBlock;
            store_->get_block(cur, block);
          }
          want = block[id % kPerBlock];
        }
      }
      Sha256Digest h = hash_page(p, n);
      if (h != want) {
        out.changed.push_back(id);
        out.digests.push_back(h);
        if (keep_data) out.data.insert(out.data.end(), p, p + n);
      }
    });
  };
  // [from, to) of the ids (candidates) or of the pages (whole file).
  auto run = [&](uint64_t from, uint64_t to, Diff& out) {
    if (candidates) {
      compare(std::vector<uint64_t>(ids.begin() + static_cast<ptrdiff_t>(from), ids.begin() + static_cast<ptrdiff_t>(to)),
              out);
    } else {
      for_id_chunks(from, to, [&](const std::vector<uint64_t>& chunk) { compare(chunk, out); });
    }
  };
  const uint64_t total = candidates ? ids.size() : pages;
  // Hashing is most of a push's time inside DuckDB's checkpoint, so a large
  // diff splits it over two threads (a checkpoint leaves the CPU idle).
  constexpr uint64_t kParallelPages = 64;
  if (total < kParallelPages) {
    run(0, total, d);
    return d;
  }
  uint64_t mid = total / 2;
  Diff second;
  std::exception_ptr second_error;
  std::thread t([&] {
    try {
      run(mid, total, second);
    } catch (...) {
      second_error = std::current_exception();
    }
  });
  try {
    run(0, mid, d);
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

// Entries [count_, count) may hold hashes from before a shrink: they become
// "no entry" before the index grows over them.
void PageIndex::grow_to(uint64_t count) {
  if (count <= count_) return;
  if (store_) store_->erase_range(count_, count);
  missing_ += count - count_;
  count_ = count;
}

void PageIndex::account_entry(uint64_t id, const Sha256Digest& old_entry, const Sha256Digest& new_entry) {
  if (!digest_known_ || old_entry == new_entry) return;
  const Sha256Digest none{};
  if (old_entry == none) {
    missing_--;
  } else {
    digest_.remove_page(id, old_entry);
  }
  if (new_entry == none) {
    missing_++;
  } else {
    digest_.add_page(id, new_entry);
  }
}

// One pass over the entries, a block at a time.
void PageIndex::recompute_digest() {
  digest_ = FileDigest{};
  missing_ = 0;
  damaged_seen_ = store_ ? store_->damaged_blocks() : 0;
  std::array<Sha256Digest, kPerBlock> block{};
  const Sha256Digest none{};
  // Past the stored entries only pending ones can be there; the rest of
  // the count is missing without a look (a header may claim billions).
  const uint64_t stored_end = store_ ? std::min(count_, store_->entries_end()) : 0;
  uint64_t missing_past = count_ - stored_end;
  for (const auto& [id, entry] : pending_) {
    if (id >= stored_end && id < count_ && entry.first != none) {
      digest_.add_page(id, entry.first);
      --missing_past;
    }
  }
  missing_ = missing_past;
  for (uint64_t id = 0; id < stored_end; ++id) {
    if (id % kPerBlock == 0 || id == 0) {
      if (store_) {
        store_->get_block(id / kPerBlock, block);
      } else {
        block.fill(none);
      }
    }
    Sha256Digest e = block[id % kPerBlock];
    if (auto it = pending_.find(id); it != pending_.end()) e = it->second.first;
    if (e == none) {
      missing_++;
    } else {
      digest_.add_page(id, e);
    }
  }
  digest_pages_scanned_ += count_;
  // A block found damaged during the scan holds no entries: counted missing.
  damaged_seen_ = store_ ? store_->damaged_blocks() : 0;
  digest_known_ = true;
}

std::optional<FileDigest> PageIndex::file_digest() {
  if (store_ && store_->damaged_blocks() != damaged_seen_) digest_known_ = false;
  if (!digest_known_) recompute_digest();
  if (missing_ != 0) return std::nullopt;
  return digest_;
}

void PageIndex::set(uint64_t page_id, const uint8_t* data, size_t len) { set_hash(page_id, hash_page(data, len)); }

void PageIndex::set_hash(uint64_t page_id, const Sha256Digest& digest) {
  if (!store_) throw Error(ErrorKind::kInvalidArgument, "page index bound to no file");
  grow_to(page_id + 1);
  account_entry(page_id, expected(page_id), digest);
  pending_.erase(page_id);
  store_->put(page_id, digest);
}

void PageIndex::set_pending(uint64_t page_id, const Sha256Digest& digest, uint64_t seq) {
  grow_to(page_id + 1);
  account_entry(page_id, expected(page_id), digest);
  pending_[page_id] = {digest, seq};
}

void PageIndex::settle(uint64_t durable_seq) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.second <= durable_seq) {
      if (store_) store_->put(it->first, it->second.first);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void PageIndex::set_length(uint64_t file_length) {
  uint64_t count = (file_length + page_size_ - 1) / page_size_;
  if (count > count_) {
    grow_to(count);
  } else if (count < count_) {
    // The pages past the new end leave the digest. Past the stored entries'
    // end only pending ones can have an entry: a count of billions (a
    // header's claim) costs nothing there.
    const uint64_t stored_end = store_ ? std::min(count_, std::max(count, store_->entries_end())) : count;
    for (uint64_t id = count; id < stored_end && digest_known_; ++id) account_entry(id, expected(id), Sha256Digest{});
    for (const auto& [id, entry] : pending_) {
      if (id >= stored_end && id < count_) account_entry(id, entry.first, Sha256Digest{});
    }
    if (digest_known_) missing_ -= count_ - count;
    for (auto it = pending_.begin(); it != pending_.end();) it = it->first >= count ? pending_.erase(it) : std::next(it);
    count_ = count;
  }
  file_length_ = file_length;
}

void PageIndex::update(PageReader& reader, const std::vector<uint64_t>& pages, uint64_t file_length) {
  std::vector<uint64_t> ids = pages;
  std::sort(ids.begin(), ids.end());
  read_pages(reader, page_size_, file_length, ids, [&](uint64_t id, const uint8_t* p, size_t n) { set(id, p, n); });
  set_length(file_length);
}

void PageIndex::update_all(PageReader& reader) {
  const uint64_t length = reader.file_size();
  read_all_pages(reader, page_size_, length, [&](uint64_t id, const uint8_t* p, size_t n) { set(id, p, n); });
  set_length(length);
}

void PageIndex::save(bool durable) {
  if (!store_) throw Error(ErrorKind::kInvalidArgument, "page index bound to no file");
  settle(UINT64_MAX);
  // Entries before the header that names them: a header on disk never
  // describes entries that are not.
  store_->flush(true);
  PagedHashes::Header h;
  h.page_size = page_size_;
  h.file_length = file_length_;
  h.seq = seq_;
  h.chain_checksum = chain_checksum_;
  if (digest_known_ && store_->damaged_blocks() == damaged_seen_) {
    h.digest = PagedHashes::Header::Digest{digest_.bytes(), missing_};
  }
  store_->write_header(h, durable);
}

size_t PageIndex::cached_bytes() const { return store_ ? store_->cached_bytes() : 0; }
size_t PageIndex::cache_limit_bytes() const { return store_ ? store_->cache_limit_bytes() : 0; }

}  // namespace duckblock
