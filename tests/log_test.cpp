// Log segments (every commit between checkpoints): the format, the replica
// side, and the Replicator's shipping, against every store backend.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <thread>

#include "duckblock/error.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/wal.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

LogSegment make_segment(uint64_t base, uint64_t base_checksum, uint64_t index, uint64_t prev, uint64_t offset,
                        const std::string& data) {
  LogSegmentHeader h{base, base_checksum, index, prev, offset, data.size(), 1700000000000};
  uint64_t c = 0;
  auto enc = encode_log_segment(h, reinterpret_cast<const uint8_t*>(data.data()), &c);
  auto s = decode_log_segment(enc);
  EXPECT_EQ(s.checksum, c);
  return s;
}

template <class F>
ErrorKind kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no error thrown";
  return ErrorKind::kRemote;
}

TEST(LogFormat, RoundTripsEveryField) {
  LogSegmentHeader h{7, 0x1122334455667788, 3, 0xaabbccddeeff0011, 4096, 5, 1700000000123};
  uint64_t c = 0;
  auto enc = encode_log_segment(h, reinterpret_cast<const uint8_t*>("hello"), &c);
  ASSERT_EQ(enc.size(), kLogHeaderSize + 5 + 8);
  auto s = decode_log_segment(enc);
  EXPECT_EQ(s.header.base_seq, 7u);
  EXPECT_EQ(s.header.base_checksum, 0x1122334455667788u);
  EXPECT_EQ(s.header.index, 3u);
  EXPECT_EQ(s.header.prev_checksum, 0xaabbccddeeff0011u);
  EXPECT_EQ(s.header.offset, 4096u);
  EXPECT_EQ(s.header.length, 5u);
  EXPECT_EQ(s.header.created_ms, 1700000000123);
  EXPECT_EQ(s.checksum, c);
  EXPECT_EQ(std::string(s.data.begin(), s.data.end()), "hello");
}

// Every single-byte change anywhere (header, data or trailer) is refused:
// the checksum covers every field, the time included.
TEST(LogFormat, EveryFlippedByteIsCorruption) {
  LogSegmentHeader h{1, 42, 2, 99, 0, 11, 1700000000000};
  auto enc = encode_log_segment(h, reinterpret_cast<const uint8_t*>("hello world"), nullptr);
  for (size_t i = 0; i < enc.size(); ++i) {
    auto bad = enc;
    bad[i] ^= 0x01;
    EXPECT_EQ(kind_of([&] { decode_log_segment(bad); }), ErrorKind::kCorruption) << "byte " << i;
  }
  auto cut = enc;
  cut.pop_back();
  EXPECT_EQ(kind_of([&] { decode_log_segment(cut); }), ErrorKind::kCorruption);
  auto longer = enc;
  longer.push_back(0);
  EXPECT_EQ(kind_of([&] { decode_log_segment(longer); }), ErrorKind::kCorruption);
}

// A header claiming a huge length is refused before anything is sized
// from it, and a hadbp segment is not taken for a log segment.
TEST(LogFormat, HostileLengthAndForeignMagicAreRefused) {
  LogSegmentHeader h{1, 42, 2, 99, 0, 4, 0};
  auto enc = encode_log_segment(h, reinterpret_cast<const uint8_t*>("abcd"), nullptr);
  for (int i = 48; i < 56; ++i) enc[i] = 0xff;  // length
  EXPECT_EQ(kind_of([&] { decode_log_segment(enc); }), ErrorKind::kCorruption);
  auto hadbp = enc;
  std::memcpy(hadbp.data(), "HADBP", 5);
  EXPECT_EQ(kind_of([&] { decode_log_segment(hadbp); }), ErrorKind::kCorruption);
}

// The log of base B serves the points between checkpoints B and B+1: prune
// keeps it while a snapshot at or before B is kept, removes it (before any
// incremental or snapshot) once B is older than the oldest restorable one.
TEST(LogRetention, PruneRemovesTheLogOfBasesOlderThanTheOldestKeptSnapshotOnly) {
  auto store = make_memory_store();
  ChainListing chain;
  auto put = [&](const std::string& key) {
    MemorySource b(std::string_view("abc"));
    store->put(key, b);
  };
  for (uint64_t seq = 0; seq <= 14; ++seq) {
    if (seq % 4 == 0) chain.snapshots.push_back({seq, true, "s" + std::to_string(seq), 3, int64_t(1000 * seq)});
    if (seq > 0) chain.incrementals.push_back({seq, false, "i" + std::to_string(seq), 3, int64_t(1000 * seq)});
  }
  std::vector<LogEntry> log;
  for (uint64_t base : {3, 7, 8, 11, 14}) {
    for (uint64_t index = 1; index <= 2; ++index) {
      LogEntry e{base, index, log_key("", "db", base, index), 3, int64_t(1000 * base + 100 * index)};
      put(e.key);
      log.push_back(e);
    }
  }
  for (const auto& e : chain.snapshots) put(e.key);
  for (const auto& e : chain.incrementals) put(e.key);
  RetentionPolicy pol;
  pol.window = std::chrono::milliseconds(5500);  // now = 14000: points from 8.5 s on (checkpoint 8 + its log)
  pol.min_snapshots = 1;
  PrunePlan plan = plan_prune(chain, pol, 14000, log);
  ASSERT_EQ(plan.oldest_restorable_seq, 8u);
  std::vector<uint64_t> removed_bases;
  for (const auto& e : plan.remove_log) removed_bases.push_back(e.base_seq);
  EXPECT_EQ(removed_bases, (std::vector<uint64_t>{3, 3, 7, 7}));
  execute_prune(*store, plan);
  std::vector<uint64_t> kept;
  for (const auto& e : list_log(*store, "", "db")) kept.push_back(e.base_seq);
  EXPECT_EQ(kept, (std::vector<uint64_t>{8, 8, 11, 11, 14, 14}));

  // min_snapshots keeps snapshot 4 restorable, and so the log of base 7
  // (points between checkpoints 7 and 8), though it is outside the window.
  pol.min_snapshots = 3;
  plan = plan_prune(chain, pol, 14000, log);
  ASSERT_EQ(plan.oldest_restorable_seq, 4u);
  removed_bases.clear();
  for (const auto& e : plan.remove_log) removed_bases.push_back(e.base_seq);
  EXPECT_EQ(removed_bases, (std::vector<uint64_t>{3, 3}));

  // A window that reaches back past every point removes nothing.
  pol.window = std::chrono::milliseconds(100000);
  EXPECT_TRUE(plan_prune(chain, pol, 14000, log).remove_log.empty());
}

TEST(LogReplica, AppliesInOrderAndRefusesWhatDoesNotChain) {
  test::TempDir dir;
  ChainPosition at{5, 0x55};
  LogReplica log(dir / "db.wal", dir / "db.wal-record");
  auto s1 = make_segment(5, 0x55, 1, 0x55, 0, "abc");
  auto s2 = make_segment(5, 0x55, 2, s1.checksum, 3, "def");
  // Another base, another checksum at the same seq, out of order, wrong link.
  EXPECT_EQ(kind_of([&] { log.apply(s1, ChainPosition{6, 0x55}); }), ErrorKind::kChainBroken);
  EXPECT_EQ(kind_of([&] { log.apply(s1, ChainPosition{5, 0x56}); }), ErrorKind::kChainBroken);
  EXPECT_EQ(kind_of([&] { log.apply(s2, at); }), ErrorKind::kChainBroken);
  EXPECT_FALSE(std::filesystem::exists(dir / "db.wal")) << "nothing may be written before a segment chains";
  log.apply(s1, at);
  auto forged = make_segment(5, 0x55, 2, 0x1234, 3, "def");
  EXPECT_EQ(kind_of([&] { log.apply(forged, at); }), ErrorKind::kChainBroken);
  log.apply(s2, at);
  EXPECT_EQ(read_file(dir / "db.wal"), bytes_of("abcdef"));
  // A cut back (DuckDB truncating a rolled-back commit) then an append.
  auto s3 = make_segment(5, 0x55, 3, s2.checksum, 4, "XY");
  log.apply(s3, at);
  EXPECT_EQ(read_file(dir / "db.wal"), bytes_of("abcdXY"));
  EXPECT_TRUE(log.intact());
  // Reopened, it remembers where it is.
  LogReplica again(dir / "db.wal", dir / "db.wal-record");
  ASSERT_TRUE(again.position());
  EXPECT_EQ(again.position()->index, 3u);
  EXPECT_EQ(again.position()->length, 6u);
}

// One rule for a log beside a file about to be written, for the command
// line and the extension alike: before a restore any log is stale; before a
// follow, the replica's own log (its record vouches for it) stays and any
// other is stale. (The extension refused a follow over a replica with its
// own log while the command line accepted it.)
TEST(LogBeside, ARestoreFindsAnyLogStaleAFollowOnlyOneItsRecordDoesNotVouchFor) {
  test::TempDir dir;
  const std::string path = dir / "db";
  EXPECT_FALSE(stale_log_beside(path, LogBesideUse::kRestore));
  EXPECT_FALSE(stale_log_beside(path, LogBesideUse::kFollow));
  {
    LogReplica own(path + ".wal", path + ".duckblock-log");
    own.apply(make_segment(5, 0x55, 1, 0x55, 0, "abc"), ChainPosition{5, 0x55});
  }
  EXPECT_FALSE(stale_log_beside(path, LogBesideUse::kFollow)) << "the replica's own log";
  EXPECT_TRUE(stale_log_beside(path, LogBesideUse::kRestore));
  EXPECT_NE(stale_log_refusal(path, LogBesideUse::kFollow, "--force").find("--force"), std::string::npos);
  remove_log_beside(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".wal"));
  EXPECT_FALSE(std::filesystem::exists(path + ".duckblock-log"));
  write_file_atomic(path + ".wal", bytes_of("foreign"));  // no record at all
  EXPECT_TRUE(stale_log_beside(path, LogBesideUse::kFollow));
}

// A crash after the log was written but before its record: the log is
// longer than the record says, and opening it cuts it back.
TEST(LogReplica, ALogLongerThanItsRecordIsCutBackOnOpen) {
  test::TempDir dir;
  ChainPosition at{1, 0x11};
  {
    LogReplica log(dir / "db.wal", dir / "rec");
    log.apply(make_segment(1, 0x11, 1, 0x11, 0, "committed"), at);
  }
  {
    int fd = ::open((dir / "db.wal").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "torn", 4), 4);
    ::close(fd);
  }
  LogReplica log(dir / "db.wal", dir / "rec");
  EXPECT_EQ(read_file(dir / "db.wal"), bytes_of("committed"));
  EXPECT_TRUE(log.intact());
  log.clear();
  EXPECT_FALSE(std::filesystem::exists(dir / "db.wal"));
  EXPECT_FALSE(log.position());
}

// A crash while a segment cut the log shorter (it rewrites a torn tail),
// after the log was written and before its record (the crash is a throw at
// LogReplica::crash_point: what is on disk is what a kill leaves): the log
// is shorter than its record, which vouches for bytes no longer there. On
// open the log starts afresh, intact, so a Replica does not take it for a
// foreign .wal; applying the base's segments again rebuilds it.
TEST(LogReplica, ACrashWhileASegmentCutsTheLogShorterStartsItAfresh) {
  test::TempDir dir;
  ChainPosition at{5, 0x55};
  auto s1 = make_segment(5, 0x55, 1, 0x55, 0, "abc");
  auto s2 = make_segment(5, 0x55, 2, s1.checksum, 3, "def");
  auto s3 = make_segment(5, 0x55, 3, s2.checksum, 2, "Z");
  {
    LogReplica log(dir / "db.wal", dir / "rec");
    log.apply(s1, at);
    log.apply(s2, at);
    LogReplica::crash_point = [](const char* where) {
      if (std::string(where) == "apply:log-written") throw std::runtime_error("crash");
    };
    EXPECT_THROW(log.apply(s3, at), std::runtime_error);
    LogReplica::crash_point = nullptr;
  }
  ASSERT_EQ(read_file(dir / "db.wal"), bytes_of("abZ"));
  LogReplica log(dir / "db.wal", dir / "rec");
  EXPECT_TRUE(log.intact());
  EXPECT_FALSE(log.position());
  for (const auto* s : {&s1, &s2, &s3}) log.apply(*s, at);
  EXPECT_EQ(read_file(dir / "db.wal"), bytes_of("abZ"));
  EXPECT_EQ(log.position()->index, 3u);
}

class LogShipping : public ::testing::TestWithParam<test::StoreBackend> {
 protected:
  void SetUp() override {
    store = std::shared_ptr<ObjectStore>(GetParam().make());
    file = dir / "leader.db";
    std::vector<uint8_t> data(8 * 4096);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 7);
    write_file_atomic(file, data);
  }
  ReplicatorOptions options(LogSyncMode mode = LogSyncMode::kInterval) {
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.retry_initial = std::chrono::milliseconds(5);
    o.log_sync_mode = mode;
    o.log_interval = std::chrono::milliseconds(50);
    return o;
  }
  void change_page(uint64_t page, uint8_t value) {
    auto data = read_file(file);
    data[page * 4096] = value;
    write_file_atomic(file, data);
  }
  std::shared_ptr<ObjectStore> store;
  test::TempDir dir;
  std::string file;
};

// Bytes pushed within one interval go up as one object after the
// checkpoint they are based on; a follower's log then holds exactly the
// leader's log.
TEST_P(LogShipping, CommitsOfOneIntervalShareOneObjectAndAFollowerGetsTheLog) {
  auto o = options();
  o.log_interval = std::chrono::seconds(30);  // after the first object, the next waits (or a sync)
  Replicator rep(store, o);
  FilePageReader reader(file);
  rep.add("db", reader);
  rep.push_log("db", 0, bytes_of("HEADER"));
  rep.sync();  // nothing went up within the interval: this one goes at once
  rep.push_log("db", 6, bytes_of("commit1"));
  rep.push_log("db", 13, bytes_of("commit2"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(list_log(*store, "", "db").size(), 1u) << "a second object within the interval";
  rep.sync();
  auto entries = list_log(*store, "", "db");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].base_seq, 0u);
  EXPECT_EQ(entries[1].index, 2u);
  auto second = fetch_log_segment(*store, entries[1]);
  EXPECT_EQ(second.header.offset, 6u);
  EXPECT_EQ(std::string(second.data.begin(), second.data.end()), "commit1commit2");
  auto st = rep.status("db");
  EXPECT_EQ(st.log_length, 20u);
  EXPECT_EQ(st.log_pending_bytes, 0u);
  EXPECT_EQ(st.log_segments_shipped, 2u);

  auto res = restore(*store, "db", dir / "replica.db");
  LogReplica log(dir / "replica.db.wal", dir / "replica.db.wal-record");
  auto up = catch_up_log(*store, "", "db", res.position, log);
  EXPECT_EQ(up.applied, 2u);
  EXPECT_EQ(read_file(dir / "replica.db.wal"), bytes_of("HEADERcommit1commit2"));
}

// A checkpoint folds the log into the file: log bytes of the old base not
// yet sent are dropped, the next log starts whole on the new base, and a
// follower that moves to the new checkpoint drops its old log.
TEST_P(LogShipping, ACheckpointSupersedesTheLogOfItsBase) {
  auto o = options();
  o.log_interval = std::chrono::hours(1);  // after the first object, nothing goes up on its own
  Replicator rep(store, o);
  {
    FilePageReader reader(file);
    rep.add("db", reader);
  }
  rep.push_log("db", 0, bytes_of("first"));
  rep.sync();  // the interval's one object
  rep.push_log("db", 5, bytes_of("-old-base-commit"));  // waits out the interval
  change_page(3, 0xee);
  FilePageReader reader(file);
  auto r = rep.push_checkpoint("db", reader);
  ASSERT_EQ(r.seq, 1u);
  rep.push_log("db", 0, bytes_of("new"));
  rep.sync();  // waits for the log pushed before it, however long the interval
  auto old_base = list_log(*store, "", "db", 0);
  ASSERT_EQ(old_base.size(), 1u) << "the superseded bytes of base 0 must not be uploaded";
  auto first = fetch_log_segment(*store, old_base[0]);
  EXPECT_EQ(std::string(first.data.begin(), first.data.end()), "first");
  auto entries = list_log(*store, "", "db", 1);
  ASSERT_EQ(entries.size(), 1u);
  auto seg = fetch_log_segment(*store, entries[0]);
  EXPECT_EQ(std::string(seg.data.begin(), seg.data.end()), "new");
}

// Synchronous mode: wait_log returns once the object is in the store.
TEST_P(LogShipping, CommitModeWaitsUntilTheStoreHoldsTheBytes) {
  Replicator rep(store, options(LogSyncMode::kCommit));
  FilePageReader reader(file);
  rep.add("db", reader);
  for (int i = 0; i < 20; ++i) {
    std::string c = "commit" + std::to_string(i) + ";";
    auto t = rep.push_log("db", i == 0 ? 0 : rep.status("db").log_length, bytes_of(c));
    rep.wait_log("db", t, std::chrono::seconds(30));
    auto entries = list_log(*store, "", "db", 0);
    ASSERT_FALSE(entries.empty());
    auto last = fetch_log_segment(*store, entries.back());
    EXPECT_EQ(std::string(last.data.end() - c.size(), last.data.end()), c) << "commit " << i;
  }
}

// A restarted leader continues the store's log of the same base after its
// last object instead of colliding with it.
TEST_P(LogShipping, ARestartedLeaderContinuesTheLogChain) {
  {
    Replicator rep(store, options());
    FilePageReader reader(file);
    rep.add("db", reader);
    rep.push_log("db", 0, bytes_of("first"));
    rep.sync();
  }
  Replicator rep(store, options());
  FilePageReader reader(file);
  rep.add("db", reader);
  rep.push_log("db", 0, bytes_of("first+second"));
  rep.sync();
  auto entries = list_log(*store, "", "db", 0);
  ASSERT_EQ(entries.size(), 2u);
  auto res = restore(*store, "db", dir / "r.db");
  LogReplica log(dir / "r.db.wal", dir / "r.db.wal-record");
  EXPECT_EQ(catch_up_log(*store, "", "db", res.position, log).applied, 2u);
  EXPECT_EQ(read_file(dir / "r.db.wal"), bytes_of("first+second"));
}

// Another writer's object at our next index fences the log shipper, and a
// commit in synchronous mode fails rather than being acknowledged.
TEST_P(LogShipping, AForeignObjectAtOurIndexFences) {
  Replicator rep(store, options(LogSyncMode::kCommit));
  FilePageReader reader(file);
  rep.add("db", reader);
  rep.sync();
  LogSegmentHeader h{0, 0xdead, 1, 0xdead, 0, 3, 0};  // another chain's log at our base
  auto foreign = encode_log_segment(h, reinterpret_cast<const uint8_t*>("xyz"), nullptr);
  put_bytes(*store, log_key("", "db", 0, 1), foreign);
  auto t = rep.push_log("db", 0, bytes_of("ours"));
  EXPECT_EQ(kind_of([&] { rep.wait_log("db", t, std::chrono::seconds(30)); }), ErrorKind::kFenced);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, LogShipping, ::testing::ValuesIn(test::all_store_backends()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace duckblock
