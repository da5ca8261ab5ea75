#include "paged_hashes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "duckblock/error.h"

namespace duckblock {

namespace {

constexpr char kMagic[8] = {'D', 'B', 'P', 'I', 'D', 'X', '0', '3'};
constexpr size_t kEntries = PagedHashes::kPerBlock * 32;  // 4064
constexpr size_t kHeaderBytes = 8 + 8 + 4 + 4 + 8 + 8 + 8;  // then its SHA-256
// The digest record after it in the same slot: magic, the header's
// generation, missing count, the 2048-byte lthash, then its SHA-256.
constexpr char kDigestMagic[8] = {'D', 'B', 'P', 'D', 'G', 'S', 'T', '1'};
constexpr size_t kDigestOffset = kHeaderBytes + 32;
constexpr size_t kDigestBytes = 8 + 8 + 8 + 2048;
constexpr size_t kSlotBytes = kDigestOffset + kDigestBytes + 32;
static_assert(kSlotBytes <= PagedHashes::kBlockSize);

void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}

void seal(uint64_t block, uint8_t* data) {
  put64(data + kEntries, block);
  auto d = sha256(std::span<const uint8_t>(data, kEntries + 8));
  std::memcpy(data + kEntries + 8, d.data(), 16);
  std::memset(data + kEntries + 24, 0, 8);
}

bool sealed(uint64_t block, const uint8_t* data) {
  if (get64(data + kEntries) != block) return false;
  auto d = sha256(std::span<const uint8_t>(data, kEntries + 8));
  return std::memcmp(d.data(), data + kEntries + 8, 16) == 0;
}

size_t pread_full(int fd, uint8_t* buf, size_t n, uint64_t off, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

void pwrite_full(Env& env, int fd, const uint8_t* buf, size_t n, uint64_t off, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = env.pwrite(fd, buf + done, n - done, static_cast<int64_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write " + path);
    }
    done += static_cast<size_t>(r);
  }
}

}  // namespace

PagedHashes::PagedHashes(const std::string& path, uint32_t mode, size_t cache_blocks, Env* env)
    : path_(path), cache_blocks_(std::max<size_t>(cache_blocks, 4)), env_(env ? env : &Env::posix()) {
  fd_ = env_->open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode);
  if (fd_ < 0) throw_errno("cannot open " + path);
}

PagedHashes::~PagedHashes() {
  if (fd_ >= 0) env_->close(fd_);
}

std::optional<PagedHashes::Header> PagedHashes::read_header() {
  std::lock_guard l(mu_);
  std::optional<Header> best;
  uint8_t buf[kSlotBytes];
  for (uint64_t slot = 0; slot < 2; ++slot) {
    size_t got = pread_full(fd_, buf, sizeof buf, slot * kBlockSize, path_);
    if (got < kDigestOffset) continue;
    if (got < sizeof buf) std::memset(buf + got, 0, sizeof buf - got);
    if (std::memcmp(buf, kMagic, 8) != 0) continue;
    auto d = sha256(std::span<const uint8_t>(buf, kHeaderBytes));
    if (std::memcmp(d.data(), buf + kHeaderBytes, 32) != 0) continue;
    Header h;
    h.generation = get64(buf + 8);
    std::memcpy(&h.page_size, buf + 16, 4);
    h.file_length = get64(buf + 24);
    h.seq = get64(buf + 32);
    h.chain_checksum = get64(buf + 40);
    const uint8_t* dg = buf + kDigestOffset;
    auto dd = sha256(std::span<const uint8_t>(dg, kDigestBytes));
    if (std::memcmp(dg, kDigestMagic, 8) == 0 && get64(dg + 8) == h.generation &&
        std::memcmp(dd.data(), dg + kDigestBytes, 32) == 0) {
      Header::Digest d;
      d.missing = get64(dg + 16);
      std::memcpy(d.lthash.data(), dg + 24, d.lthash.size());
      h.digest = d;
    }
    if (!best || h.generation > best->generation) best = h;
  }
  if (best) generation_ = best->generation;
  if (best && best->digest) digest_header_ = best;
  return best;
}

void PagedHashes::write_header(Header h, bool sync) {
  std::lock_guard l(mu_);
  write_header_locked(h, sync);
}

void PagedHashes::write_header_locked(const Header& in, bool sync) {
  Header h = in;
  h.generation = ++generation_;
  uint8_t buf[kSlotBytes] = {};
  std::memcpy(buf, kMagic, 8);
  put64(buf + 8, h.generation);
  std::memcpy(buf + 16, &h.page_size, 4);
  put64(buf + 24, h.file_length);
  put64(buf + 32, h.seq);
  put64(buf + 40, h.chain_checksum);
  auto d = sha256(std::span<const uint8_t>(buf, kHeaderBytes));
  std::memcpy(buf + kHeaderBytes, d.data(), 32);
  if (h.digest) {
    uint8_t* dg = buf + kDigestOffset;
    std::memcpy(dg, kDigestMagic, 8);
    put64(dg + 8, h.generation);
    put64(dg + 16, h.digest->missing);
    std::memcpy(dg + 24, h.digest->lthash.data(), h.digest->lthash.size());
    auto dd = sha256(std::span<const uint8_t>(dg, kDigestBytes));
    std::memcpy(dg + kDigestBytes, dd.data(), 32);
  }
  // Alternate slots: the previous header survives a torn write of this one.
  pwrite_full(*env_, fd_, buf, sizeof buf, (h.generation % 2) * kBlockSize, path_);
  if (sync && env_->fdatasync(fd_) != 0) throw_errno("cannot sync " + path_);
  digest_header_.reset();
  if (h.digest) digest_header_ = h;
}

// Before the first block write after a header that carries a digest: the
// same header without it, synced, so a crash can never pair the saved digest
// with entries of a later seq.
void PagedHashes::invalidate_header_digest_locked() {
  if (!digest_header_) return;
  Header h = *digest_header_;
  h.digest.reset();
  write_header_locked(h, true);
}

uint64_t PagedHashes::damaged_blocks() const {
  std::lock_guard l(mu_);
  return damaged_blocks_;
}

void PagedHashes::clear() {
  std::lock_guard l(mu_);
  digest_header_.reset();
  slots_.clear();
  lru_.clear();
  if (env_->ftruncate(fd_, 0) != 0) throw_errno("cannot truncate " + path_);
}

PagedHashes::Slot& PagedHashes::slot_locked(uint64_t block) {
  auto it = slots_.find(block);
  if (it != slots_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second;
  }
  evict_locked();
  Slot s;
  s.data = std::make_unique<uint8_t[]>(kBlockSize);
  size_t got = pread_full(fd_, s.data.get(), kBlockSize, kBlocksOffset + block * kBlockSize, path_);
  if (got < kBlockSize) std::memset(s.data.get() + got, 0, kBlockSize - got);
  // Never written (a hole, or past the end) or damaged: no entries.
  if (!all_zero(s.data.get(), kBlockSize) && !sealed(block, s.data.get())) {
    std::memset(s.data.get(), 0, kBlockSize);
    damaged_blocks_++;
  }
  lru_.push_front(block);
  s.lru = lru_.begin();
  return slots_.emplace(block, std::move(s)).first->second;
}

void PagedHashes::write_block_locked(uint64_t block, Slot& s) {
  invalidate_header_digest_locked();
  seal(block, s.data.get());
  pwrite_full(*env_, fd_, s.data.get(), kBlockSize, kBlocksOffset + block * kBlockSize, path_);
  s.dirty = false;
}

void PagedHashes::evict_locked() {
  while (slots_.size() >= cache_blocks_) {
    uint64_t victim = lru_.back();
    auto it = slots_.find(victim);
    if (it->second.dirty) write_block_locked(victim, it->second);
    lru_.pop_back();
    slots_.erase(it);
  }
}

Sha256Digest PagedHashes::get(uint64_t id) {
  std::lock_guard l(mu_);
  Slot& s = slot_locked(id / kPerBlock);
  Sha256Digest d;
  std::memcpy(d.data(), s.data.get() + (id % kPerBlock) * 32, 32);
  return d;
}

void PagedHashes::get_block(uint64_t block, std::array<Sha256Digest, kPerBlock>& out) {
  std::lock_guard l(mu_);
  Slot& s = slot_locked(block);
  for (uint64_t i = 0; i < kPerBlock; ++i) std::memcpy(out[i].data(), s.data.get() + i * 32, 32);
}

void PagedHashes::put(uint64_t id, const Sha256Digest& digest) {
  std::lock_guard l(mu_);
  Slot& s = slot_locked(id / kPerBlock);
  std::memcpy(s.data.get() + (id % kPerBlock) * 32, digest.data(), 32);
  s.dirty = true;
}

void PagedHashes::erase_range(uint64_t from, uint64_t to) {
  std::lock_guard l(mu_);
  while (from < to) {
    uint64_t block = from / kPerBlock;
    uint64_t end = std::min(to, (block + 1) * kPerBlock);
    Slot& s = slot_locked(block);
    std::memset(s.data.get() + (from % kPerBlock) * 32, 0, (end - from) * 32);
    s.dirty = true;
    from = end;
  }
}

uint64_t PagedHashes::entries_end() {
  std::lock_guard l(mu_);
  struct stat st {};
  uint64_t blocks = 0;
  if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) > kBlocksOffset) {
    blocks = (static_cast<uint64_t>(st.st_size) - kBlocksOffset + kBlockSize - 1) / kBlockSize;
  }
  for (const auto& [block, s] : slots_) blocks = std::max(blocks, block + 1);
  return blocks * kPerBlock;
}

void PagedHashes::flush(bool sync) {
  std::lock_guard l(mu_);
  // In block order: one sequential pass over the file.
  std::vector<uint64_t> dirty;
  for (auto& [block, s] : slots_) {
    if (s.dirty) dirty.push_back(block);
  }
  std::sort(dirty.begin(), dirty.end());
  for (uint64_t b : dirty) write_block_locked(b, slots_.at(b));
  if (sync && env_->fdatasync(fd_) != 0) throw_errno("cannot sync " + path_);
}

size_t PagedHashes::cached_bytes() const {
  std::lock_guard l(mu_);
  return slots_.size() * kBlockSize;
}

}  // namespace duckblock
