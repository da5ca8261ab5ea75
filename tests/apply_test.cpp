// Verified, crash-safe apply.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include "duckblock/apply.h"
#include "duckblock/error.h"
#include "test_util.h"

namespace duckblock {
namespace {

constexpr uint32_t kPage = 4096;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed * 7 + i * 13 + (i >> 12));
  return v;
}

// Writes a segment of whole pages taken from `file` (the desired result).
std::string write_segment(const std::string& path, const std::vector<uint8_t>& file,
                          const std::vector<uint64_t>& ids, uint64_t seq, uint64_t prev,
                          std::optional<uint64_t> length, uint64_t* checksum) {
  std::vector<Page> pages;
  for (uint64_t id : ids) {
    size_t off = id * kPage, len = std::min<size_t>(kPage, file.size() - off);
    pages.push_back({id, {file.begin() + off, file.begin() + off + len}});
  }
  if (length) pages.push_back({kFileLengthPageId, encode_file_length(*length)});
  SegmentHeader h;
  h.page_size = kPage;
  h.seq = seq;
  h.prev_checksum = prev;
  auto bytes = encode_segment(h, pages, checksum);
  write_file_atomic(path, bytes);
  return path;
}

std::vector<uint64_t> all_ids(size_t size) {
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i * kPage < size; ++i) ids.push_back(i);
  return ids;
}

// The whole-file check after applying is amortised for large files: due at
// the first apply of a Replica object, then once the segment bytes applied
// since the last check reach the file's size; small files are always checked.
TEST(Apply, TheWholeFileCheckOfALargeReplicaIsDueOncePerFileSizeOfAppliedBytes) {
  test::TempDir dir;
  std::string path = dir / "replica.db";
  write_file_atomic(path, std::vector<uint8_t>(4096, 1));
  Replica r(path);
  const uint64_t gib = 1ull << 30;
  EXPECT_TRUE(r.whole_file_check_due(1000, gib)) << "the first apply of a Replica object is always checked";
  r.whole_file_checked();
  EXPECT_FALSE(r.whole_file_check_due(gib / 2, gib));
  EXPECT_FALSE(r.whole_file_check_due(gib / 2 - 1, gib));
  EXPECT_TRUE(r.whole_file_check_due(1, gib)) << "a file-size of applied bytes makes it due";
  r.whole_file_checked();
  EXPECT_FALSE(r.whole_file_check_due(1, gib));
  EXPECT_TRUE(r.whole_file_check_due(1, Replica::kAlwaysCheckBytes)) << "a small file is checked after every apply";
}

TEST(Apply, AppliesAChainAndCarriesTheFileLength) {
  test::TempDir dir;
  auto v1 = pattern(10 * kPage, 1);
  uint64_t c1 = 0, c2 = 0;
  write_segment(dir / "1.hadbp", v1, all_ids(v1.size()), 1, 0, v1.size(), &c1);
  // v2 changes page 3 and shrinks the file to 6.5 pages.
  auto v2 = v1;
  v2.resize(6 * kPage + 2048);
  for (size_t i = 3 * kPage; i < 4 * kPage; ++i) v2[i] ^= 0xff;
  write_segment(dir / "2.hadbp", v2, {3}, 2, c1, v2.size(), &c2);

  Replica r(dir / "db");
  r.apply(dir / "1.hadbp");
  EXPECT_EQ(read_file(dir / "db"), v1);
  auto res = r.apply(dir / "2.hadbp");
  EXPECT_EQ(read_file(dir / "db"), v2);
  EXPECT_EQ(res.position, (ChainPosition{2, c2}));
  // The position survives a reopen.
  EXPECT_EQ(Replica(dir / "db").position(), (ChainPosition{2, c2}));
}

TEST(Apply, RefusesASegmentThatDoesNotChainWithoutWriting) {
  test::TempDir dir;
  auto v1 = pattern(4 * kPage, 1);
  uint64_t c1 = 0, c = 0;
  write_segment(dir / "1.hadbp", v1, all_ids(v1.size()), 1, 0, v1.size(), &c1);
  write_segment(dir / "wrong_prev.hadbp", pattern(4 * kPage, 2), {0}, 2, c1 ^ 1, std::nullopt, &c);
  write_segment(dir / "wrong_seq.hadbp", pattern(4 * kPage, 2), {0}, 3, c1, std::nullopt, &c);
  Replica r(dir / "db");
  r.apply(dir / "1.hadbp");
  for (const char* bad : {"wrong_prev.hadbp", "wrong_seq.hadbp"}) {
    try {
      r.apply(dir / bad);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kChainBroken) << e.what();
    }
    EXPECT_EQ(read_file(dir / "db"), v1);
    EXPECT_EQ(r.position(), (ChainPosition{1, c1}));
  }
}

TEST(Apply, SnapshotResetsTheFileAtomicallyAndContinuesTheChain) {
  test::TempDir dir;
  auto v = pattern(5 * kPage + 100, 4);
  uint64_t snap_sum = 0, next = 0;
  // A snapshot at seq 41 carries the chain checksum at 41 as its prev_checksum.
  write_segment(dir / "snap.hadbp", v, all_ids(v.size()), 41, 0xfeedface, v.size(), &snap_sum);
  auto v2 = v;
  v2[0] ^= 1;
  write_segment(dir / "42.hadbp", v2, {0}, 42, 0xfeedface, v2.size(), &next);
  write_file_atomic(dir / "db", pattern(50 * kPage, 9));  // stale, longer content
  Replica r(dir / "db");
  r.reset_from_snapshot(dir / "snap.hadbp");
  EXPECT_EQ(read_file(dir / "db"), v);
  EXPECT_EQ(r.position(), (ChainPosition{41, 0xfeedface}));
  r.apply(dir / "42.hadbp");
  EXPECT_EQ(read_file(dir / "db"), v2);
}

// A snapshot large enough to fill the page writer's runs many times over,
// with gaps (runs break) and a short last page, streamed in one pass into a
// file of the given mode; then damaged copies and a refused binding, each of
// which must leave the replica as it was and no temp file.
TEST(Apply, StreamedSnapshotWritesEveryRunAndADamagedOrRefusedOneChangesNothing) {
  test::TempDir dir;
  auto file = pattern(3000 * kPage + 100, 9);
  std::vector<uint64_t> ids;
  for (uint64_t id = 0; id * kPage < file.size(); ++id) {
    if (id % 97 == 5) {
      std::fill(file.begin() + id * kPage, file.begin() + std::min(file.size(), (id + 1) * kPage), 0);
    } else {
      ids.push_back(id);  // a page left out reads back as zeros (a hole)
    }
  }
  uint64_t sum = 0;
  write_segment(dir / "snap.hadbp", file, ids, 7, 0x42, file.size(), &sum);
  auto bytes = read_file(dir / "snap.hadbp");
  Replica r(dir / "db");
  MemorySource src(bytes);
  mode_t mask = ::umask(0);
  ::umask(mask);
  auto res = r.reset_from_snapshot(src, 0640);
  EXPECT_EQ(test::digest_of(read_file(dir / "db")), test::digest_of(file));
  EXPECT_EQ(res.summary.checksum, sum);
  EXPECT_EQ(res.summary.encoded_size, bytes.size());
  EXPECT_EQ(res.summary.file_length, file.size());
  EXPECT_EQ(r.position(), (ChainPosition{7, 0x42}));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~mask);
  auto unchanged = [&] {
    EXPECT_EQ(test::digest_of(read_file(dir / "db")), test::digest_of(file));
    EXPECT_EQ(r.position(), (ChainPosition{7, 0x42}));
    EXPECT_EQ(Replica(dir / "db").position(), (ChainPosition{7, 0x42}));
    EXPECT_NE(::access((dir / "db.duckblock-restore").c_str(), F_OK), 0);
  };
  for (size_t at : {size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE(at);
    auto bad = bytes;
    bad[at] ^= 1;
    MemorySource bad_src(bad);
    try {
      r.reset_from_snapshot(bad_src, 0600);
      ADD_FAILURE() << "applied a damaged snapshot (byte " << at << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    }
    unchanged();
  }
  // The binding sees the verified summary and can refuse it.
  MemorySource again(bytes);
  try {
    r.reset_from_snapshot(again, 0600, [&](const SegmentSummary& s) -> ChainPosition {
      EXPECT_EQ(s.checksum, sum);
      throw Error(ErrorKind::kChainBroken, "refused");
    });
    ADD_FAILURE() << "the binding's refusal was ignored";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kChainBroken) << e.what();
  }
  unchanged();
  // Or give the position (bind_snapshot's rule, chain.h).
  MemorySource bound(bytes);
  auto b = r.reset_from_snapshot(bound, 0600, [](const SegmentSummary& s) { return ChainPosition{s.header.seq, 99}; });
  EXPECT_EQ(b.position, (ChainPosition{7, 99}));
  EXPECT_EQ(test::digest_of(read_file(dir / "db")), test::digest_of(file));
}

// A segment verified on one thread and applied on another is not hashed
// again before its write pass, so the file must still be the one verified:
// replaced or grown since, it is refused and nothing is written.
TEST(Apply, AVerifiedSegmentChangedSinceItsVerificationIsRefused) {
  test::TempDir dir;
  auto v1 = pattern(8 * kPage, 1);
  uint64_t c1 = 0, c2 = 0;
  write_segment(dir / "1.hadbp", v1, all_ids(v1.size()), 1, 0, v1.size(), &c1);
  Replica r(dir / "db");
  r.apply(dir / "1.hadbp");
  auto v2 = v1;
  for (size_t i = 2 * kPage; i < 3 * kPage; ++i) v2[i] ^= 0x5a;
  auto other = pattern(8 * kPage, 3);
  for (int how = 0; how < 2; ++how) {
    SCOPED_TRACE(how);
    write_segment(dir / "2.hadbp", v2, {2}, 2, c1, std::nullopt, &c2);
    VerifiedSegment seg = verify_segment_file(dir / "2.hadbp");
    EXPECT_EQ(seg.summary.checksum, c2);
    if (how == 0) {
      // Replaced by another valid segment of the same seq (a new inode).
      uint64_t c = 0;
      write_segment(dir / "2.hadbp", other, {2}, 2, c1, std::nullopt, &c);
    } else {
      // Written in place (one byte appended).
      int fd = ::open((dir / "2.hadbp").c_str(), O_WRONLY | O_APPEND);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::write(fd, "x", 1), 1);
      ::close(fd);
    }
    try {
      r.apply(seg);
      ADD_FAILURE() << "applied a segment that changed after verification";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorruption) << e.what();
    }
    EXPECT_EQ(read_file(dir / "db"), v1);
    EXPECT_EQ(r.position(), (ChainPosition{1, c1}));
    EXPECT_NE(::access(r.pending_path().c_str(), F_OK), 0);
  }
  // Unchanged, it applies (and is moved, not copied).
  write_segment(dir / "2.hadbp", v2, {2}, 2, c1, std::nullopt, &c2);
  auto res = r.apply(verify_segment_file(dir / "2.hadbp"));
  EXPECT_EQ(res.position, (ChainPosition{2, c2}));
  EXPECT_EQ(read_file(dir / "db"), v2);
  EXPECT_NE(::access((dir / "2.hadbp").c_str(), F_OK), 0);
}

// Kill -9 a child process in the middle of applying a large segment, at
// seeded random moments; reopening the replica must finish the apply and
// leave the file byte-identical to the target state.
TEST(Apply, SurvivesKillDuringApply) {
  test::TempDir dir;
  const size_t size = 24 << 20;
  auto v1 = pattern(size, 1), v2 = pattern(size, 2);
  v2.resize(size - 3 * kPage);  // the second state is shorter
  uint64_t c1 = 0, c2 = 0;
  write_segment(dir / "1.hadbp", v1, all_ids(v1.size()), 1, 0, v1.size(), &c1);
  write_segment(dir / "2.hadbp", v2, all_ids(v2.size()), 2, c1, v2.size(), &c2);
  std::mt19937 rng(20261125);
  int killed_mid_apply = 0;
  const int trials = 12;
  for (int trial = 0; trial < trials; ++trial) {
    std::string db = dir / ("db" + std::to_string(trial));
    {
      Replica r(db);
      r.apply(dir / "1.hadbp");
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Replica r(db);
      r.apply(dir / "2.hadbp");
      ::_exit(0);
    }
    ::usleep(std::uniform_int_distribution<int>(0, 120000)(rng));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) killed_mid_apply++;
    Replica r(db);  // recovers
    if (r.position().seq == 1) r.apply(dir / "2.hadbp");
    EXPECT_EQ(r.position(), (ChainPosition{2, c2})) << "trial " << trial;
    EXPECT_TRUE(read_file(db) == v2) << "trial " << trial;
    std::filesystem::remove(db);
    std::filesystem::remove(db + ".duckblock");
  }
  EXPECT_GT(killed_mid_apply, 0);
  std::cout << "[ info ] " << killed_mid_apply << "/" << trials << " children killed before finishing\n";
}

}  // namespace
}  // namespace duckblock
