// In-process fault injection (env.h): the local store, the leader's spool and apply driven
// through thousands of seeded ENOSPC / EIO / short-write / failed-rename
// faults. Every failure must be reported as an Error (kIO), nothing that
// was acknowledged may be lost, and nothing partial or wrong may ever be
// visible: a store object is its old bytes or its new ones, a replica is
// exactly the state at its recorded position. DUCKBLOCK_FAULT_SEED picks
// the first seed (the run uses three).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "duckblock/apply.h"
#include "duckblock/env.h"
#include "duckblock/error.h"
#include "duckblock/follower.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "store_backends.h"
#include "test_util.h"

namespace duckblock {
namespace {

uint64_t first_seed() {
  const char* s = std::getenv("DUCKBLOCK_FAULT_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 20261202;
}

// `scale` < 1 for operations of many calls, so that some of them succeed.
FaultRates rates(double scale = 1) {
  FaultRates r;
  r.enospc_on_write = 0.08 * scale;
  r.eio_on_write = 0.08 * scale;
  r.short_write = 0.25 * scale;
  r.eio_on_sync = 0.1 * scale;
  r.eio_on_rename = 0.1 * scale;
  return r;
}

std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

TEST(Faults, LocalStoreObjectsAreOldOrNewNeverPartialAndEveryFailureIsReported) {
  uint64_t total_faults = 0, total_short = 0, failed_ops = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    test::TempDir dir;
    FaultyEnv env(seed, rates());
    auto store = make_local_store(dir / "store", &env);
    auto clean = make_local_store(dir / "store");  // reads without faults
    std::mt19937_64 rng(seed);
    std::map<std::string, std::vector<uint8_t>> committed;
    for (int op = 0; op < 2000; ++op) {
      std::string key = "db/" + std::to_string(rng() % 12);
      auto data = random_bytes(rng, rng() % 3 == 0 ? 70000 + rng() % 200000 : rng() % 5000);
      bool conditional = rng() % 2;
      MemorySource src(data);
      try {
        if (conditional) store->put_if_absent(key, src);
        else store->put(key, src);
        ASSERT_TRUE(!conditional || !committed.count(key)) << "put_if_absent replaced " << key;
        committed[key] = data;
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::kAlreadyExists) {
          ASSERT_TRUE(conditional && committed.count(key)) << e.what();
        } else {
          ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
          ++failed_ops;
          // A failure after the write took effect (the directory's fsync)
          // leaves the whole new object (store.h); never a part of it.
          if (clean->head(key) && get_bytes(*clean, key) == data) committed[key] = data;
        }
      }
      auto info = clean->head(key);
      if (committed.count(key)) {
        ASSERT_TRUE(info.has_value()) << key << " lost after op " << op;
        ASSERT_EQ(get_bytes(*clean, key), committed[key]) << key << " is not what was acknowledged, op " << op;
      } else {
        ASSERT_FALSE(info.has_value()) << key << " appeared though every write of it failed";
      }
    }
    // Failed writes leave no temp files behind.
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "store")) {
      EXPECT_EQ(e.path().filename().string().rfind(".duckblock-tmp-", 0), std::string::npos) << e.path();
    }
    total_faults += env.faults();
    total_short += env.short_writes();
  }
  std::printf("local store: %llu faults injected, %llu short writes, %llu operations failed\n",
              (unsigned long long)total_faults, (unsigned long long)total_short, (unsigned long long)failed_ops);
  // The seeds are fixed, so these counts are too; the bounds only make sure
  // the run really injected many faults of each kind.
  EXPECT_GT(total_faults, 500u);
  EXPECT_GT(total_short, 300u);
}

// The states of a changing file and the segments between them (seq n turns
// state n-1 into n), written as files in `dir`; index 0 is the start.
struct TestChain {
  std::vector<std::vector<uint8_t>> states;
  std::vector<std::string> segments = {""};
  std::vector<uint64_t> checksums = {0};
};
TestChain make_chain(const std::string& dir, std::mt19937_64& rng, uint64_t length) {
  constexpr uint32_t kPage = 4096;
  TestChain c;
  c.states = {random_bytes(rng, 24 * kPage)};
  for (uint64_t seq = 1; seq <= length; ++seq) {
    auto next = c.states.back();
    std::vector<Page> pages;
    int changes = 1 + int(rng() % 6);
    for (int i = 0; i < changes; ++i) {
      uint64_t id = rng() % (next.size() / kPage);
      auto bytes = random_bytes(rng, kPage);
      std::copy(bytes.begin(), bytes.end(), next.begin() + id * kPage);
    }
    bool resize = rng() % 5 == 0;
    if (resize) {
      int64_t delta = rng() % 2 ? int64_t{kPage} : -int64_t{kPage};
      next.resize(size_t(std::max<int64_t>(4 * kPage, int64_t(next.size()) + delta)));
    }
    for (uint64_t id = 0; id < next.size() / kPage; ++id) {
      bool changed = id >= c.states.back().size() / kPage ||
                     !std::equal(next.begin() + id * kPage, next.begin() + (id + 1) * kPage,
                                 c.states.back().begin() + id * kPage);
      if (changed) pages.push_back({id, {next.begin() + id * kPage, next.begin() + (id + 1) * kPage}});
    }
    if (resize) pages.push_back({kFileLengthPageId, encode_file_length(next.size())});
    SegmentHeader h;
    h.page_size = kPage;
    h.seq = seq;
    h.prev_checksum = c.checksums.back();
    uint64_t sum = 0;
    auto seg = encode_segment(h, pages, &sum);
    std::string path = dir + "/seg-" + std::to_string(seq);
    write_file_atomic(path, seg);
    c.segments.push_back(path);
    c.checksums.push_back(sum);
    c.states.push_back(std::move(next));
  }
  return c;
}

// A chain of `length` segments for a seed, and a replica file at its
// start (position {0, 0}).
struct ChainRun {
  ChainRun(uint64_t seed, uint64_t length) : rng(seed), c(make_chain(dir.path(), rng, length)) {
    write_file_atomic(target, c.states[0]);
    Replica(target).set_position({0, 0}, 4096);
  }
  test::TempDir dir;
  std::mt19937_64 rng;
  TestChain c;
  std::string target = dir / "replica.db";
};

// After a failed (or interrupted) apply of seq at + 1: the replica reopened
// without faults (recovery runs) is exactly the state at its position,
// which is `at` or `at + 1`. Returns that position.
uint64_t reopened_position(const std::string& target, const TestChain& c, uint64_t at) {
  Replica reopened(target);
  uint64_t pos = reopened.position().seq;
  EXPECT_TRUE(pos == at || pos == at + 1) << "position " << pos << " after a failure at " << at;
  if (pos != at && pos != at + 1) return at;
  EXPECT_EQ(reopened.position().checksum, c.checksums[pos]);
  EXPECT_EQ(read_file(target), c.states[pos]) << "replica is not the state at its position " << pos;
  return pos;
}

// A chain of segments over a changing file, applied to a replica through a
// faulty file system. After a failure the process "restarts": the replica is
// reopened without faults (which finishes an apply the journal shows as
// pending), and its file must be exactly the state at its position.
TEST(Faults, ApplyReportsEveryFailureAndAReopenedReplicaIsExactlyAtItsPosition) {
  uint64_t total_faults = 0, failures = 0, applied_total = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ChainRun run(seed, 150);
    FaultyEnv env(seed, rates());
    ApplyOptions faulty;
    faulty.env = &env;
    auto replica = std::make_unique<Replica>(run.target, faulty);
    while (replica->position().seq < 150) {
      uint64_t at = replica->position().seq;
      try {
        replica->apply(run.c.segments[at + 1]);
        ++applied_total;
        ASSERT_EQ(replica->position(), (ChainPosition{at + 1, run.c.checksums[at + 1]}));
        ASSERT_EQ(read_file(run.target), run.c.states[at + 1]) << "wrong bytes after applying seq " << at + 1;
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        ++failures;
        replica.reset();
        reopened_position(run.target, run.c, at);
        if (HasFailure()) return;
        replica = std::make_unique<Replica>(run.target, faulty);
      }
    }
    total_faults += env.faults();
  }
  std::printf("apply: %llu faults injected, %llu applies failed, %llu succeeded\n", (unsigned long long)total_faults,
              (unsigned long long)failures, (unsigned long long)applied_total);
  EXPECT_GT(failures, 100u);
}

// The process dies at a random call into the file system while applying,
// and the machine loses power: every byte not fdatasynced is dropped
// (FaultyEnv::crash). The replica reopened afterwards (recovery redoes a
// pending apply) must be exactly the state at its position, the one before
// the apply or the one after. A power loss right after an apply returned
// must lose nothing of it: every byte it wrote was synced before it
// returned.
TEST(Faults, APowerLossAtAnyPointOfAnApplyLeavesTheReplicaExactlyAtItsPosition) {
  uint64_t crashes = 0, files_lost_bytes = 0, applied_total = 0, names_undone = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ChainRun run(seed, 120);
    FaultyEnv env(seed, FaultRates{});
    ApplyOptions crashing;
    crashing.env = &env;
    for (uint64_t at = 0; at < 120;) {
      env.die_after(run.rng() % 40);
      bool returned = false;
      try {
        Replica replica(run.target, crashing);
        replica.apply(run.c.segments[at + 1], /*consume=*/false);
        returned = true;
        ++applied_total;
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        ASSERT_TRUE(env.dead()) << "failed without an injected death: " << e.what();
      }
      ++crashes;
      files_lost_bytes += env.crash();  // the power loss; then recovery
      uint64_t pos = reopened_position(run.target, run.c, at);
      if (HasFailure()) return;
      ASSERT_TRUE(!returned || pos == at + 1) << "an apply that returned was lost at the power loss";
      at = pos;
    }
    names_undone += env.names_undone();
  }
  std::printf("apply: %llu power losses (%llu files lost unsynced bytes, %llu renames undone), %llu applies completed\n",
              (unsigned long long)crashes, (unsigned long long)files_lost_bytes, (unsigned long long)names_undone,
              (unsigned long long)applied_total);
  EXPECT_GT(files_lost_bytes, 50u);
}

// A replica reset from streamed snapshots (restore and a follower starting
// over): the page writer's pwrites, the temp file's fsync and creation go
// through a faulty file system. A failure is reported (kIO) and leaves the
// replica exactly as it was, with no temp file; a success is exact.
TEST(Faults, AStreamedSnapshotThatFailsLeavesTheReplicaAsItWasAndNoTempFile) {
  constexpr uint32_t kPage = 4096;
  uint64_t total_faults = 0, failures = 0, successes = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    test::TempDir dir;
    std::mt19937_64 rng(seed);
    std::string target = dir / "replica.db";
    FaultyEnv env(seed, rates());
    ApplyOptions faulty;
    faulty.env = &env;
    std::vector<uint8_t> state;  // the replica's bytes (none yet)
    ChainPosition at;
    for (uint64_t seq = 1; seq <= 25; ++seq) {
      // About 3 MiB in several runs of adjacent pages (holes break them).
      size_t pages = 700 + rng() % 100;
      auto next = random_bytes(rng, pages * kPage - rng() % kPage);
      std::vector<Page> records;
      for (uint64_t id = 0; id * kPage < next.size(); ++id) {
        size_t off = id * kPage, len = std::min<size_t>(kPage, next.size() - off);
        if (id % 211 == 17) {
          std::fill(next.begin() + off, next.begin() + off + len, 0);  // a hole reads back as zeros
          continue;
        }
        records.push_back({id, {next.begin() + off, next.begin() + off + len}});
      }
      records.push_back({kFileLengthPageId, encode_file_length(next.size())});
      SegmentHeader h;
      h.page_size = kPage;
      h.seq = seq;
      h.prev_checksum = seq * 1000;
      auto seg = encode_segment(h, records);
      Replica replica(target, faulty);
      MemorySource src(seg);
      try {
        replica.reset_from_snapshot(src, 0600);
        ++successes;
        state = next;
        at = {seq, seq * 1000};
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        ++failures;
        // Failed after the file was replaced (recording its stamp in the
        // journal): the replica is at the new snapshot.
        if (replica.position() == ChainPosition{seq, seq * 1000}) {
          state = next;
          at = replica.position();
        }
      }
      ASSERT_EQ(replica.position(), at);
      ASSERT_EQ(Replica(target).position(), at);  // reopened without faults
      if (at.seq == 0) {
        ASSERT_NE(::access(target.c_str(), F_OK), 0);
      } else {
        ASSERT_EQ(read_file(target), state) << "replica is not the snapshot at its position " << at.seq;
      }
      ASSERT_NE(::access((target + ".duckblock-restore").c_str(), F_OK), 0);
    }
    total_faults += env.faults();
  }
  std::printf("streamed snapshots: %llu faults injected, %llu resets failed, %llu succeeded\n",
              (unsigned long long)total_faults, (unsigned long long)failures, (unsigned long long)successes);
  EXPECT_GT(failures, 10u);
  EXPECT_GT(successes, 5u);
}

// A restore (snapshot streamed, incrementals downloaded to temp files and
// applied, the journal, the publish) through a faulty file system, over an
// existing file. A failure is reported (kIO) and leaves the old file and
// nothing else in the directory; a success is exactly the leader's file.
TEST(Faults, ARestoreThatFailsLeavesTheOldFileAndNoTempFile) {
  constexpr uint32_t kPage = 4096;
  uint64_t total_faults = 0, failures = 0, successes = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    test::TempDir dir;
    std::mt19937_64 rng(seed);
    std::shared_ptr<ObjectStore> store = make_memory_store();
    std::string file = dir / "leader.db";
    std::vector<uint8_t> bytes = random_bytes(rng, 32 * kPage);
    write_file_atomic(file, bytes);
    {
      ReplicatorOptions o;
      o.spool_dir = dir / "spool";
      o.snapshots.every_segments = 1000;  // one snapshot, then incrementals only
      Replicator rep(store, o);
      rep.add("db", *std::make_unique<FilePageReader>(file));
      for (int i = 0; i < 12; ++i) {
        auto page = random_bytes(rng, kPage);
        std::copy(page.begin(), page.end(), bytes.begin() + (rng() % 32) * kPage);
        write_file_atomic(file, bytes);  // a new inode: a new reader
        FilePageReader reader(file);
        rep.push_checkpoint("db", reader);
      }
      rep.sync("db", std::chrono::seconds(30));
    }
    std::string out_dir = dir / "out";
    make_directories(out_dir);
    std::string out = out_dir + "/restored.db";
    const std::vector<uint8_t> old = random_bytes(rng, 5 * kPage);
    FaultyEnv env(seed, rates(0.08));
    RestoreOptions ro;
    ro.env = &env;
    for (int attempt = 0; attempt < 40; ++attempt) {
      write_file_atomic(out, old);
      ::unlink((out + ".duckblock").c_str());
      try {
        restore(*store, "db", out, {}, ro);
        ++successes;
        ASSERT_EQ(read_file(out), bytes) << "a restore that succeeded is not the leader's file";
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        ++failures;
        ASSERT_EQ(read_file(out), old) << "a failed restore changed the file";
        std::vector<std::string> left;
        for (const auto& entry : std::filesystem::directory_iterator(out_dir)) left.push_back(entry.path().filename());
        ASSERT_EQ(left, std::vector<std::string>{"restored.db"}) << "a failed restore left files behind";
      }
    }
    total_faults += env.faults();
  }
  std::printf("restore: %llu faults injected, %llu restores failed, %llu succeeded\n",
              (unsigned long long)total_faults, (unsigned long long)failures, (unsigned long long)successes);
  EXPECT_GT(failures, 40u);
  EXPECT_GT(successes, 10u);
}

// A leader's file that changes between pushes, its spool on `env`, a
// memory store, and what was acknowledged: seq -> the file at that push.
struct LeaderRun {
  static constexpr uint32_t kPage = 4096;
  LeaderRun(uint64_t seed, Env& env) : rng(seed) {
    bytes = random_bytes(rng, 24 * kPage);
    write_file_atomic(file, bytes);
    o.spool_dir = dir / "spool";
    o.spool_env = &env;
    o.background_spool_bytes = seed % 2 == 0 ? (64u << 20) : 0;  // spooled in the background, or by the push
    o.retry_initial = std::chrono::milliseconds(1);
  }
  // A few pages rewritten, sometimes a page more or less.
  void change() {
    for (int i = 0, n = 1 + int(rng() % 5); i < n; ++i) {
      uint64_t id = rng() % (bytes.size() / kPage);
      auto page = random_bytes(rng, kPage);
      std::copy(page.begin(), page.end(), bytes.begin() + id * kPage);
    }
    if (rng() % 6 == 0) bytes.resize(rng() % 2 ? bytes.size() + kPage : std::max<size_t>(4 * kPage, bytes.size() - kPage));
    write_file_atomic(file, bytes);
  }
  void add(Replicator& rep) {
    FilePageReader reader(file);
    rep.add("db", reader);
    rep.sync("db", std::chrono::seconds(30));
  }
  // A last push without faults, acknowledged; then every acknowledged seq
  // must restore to exactly the file as it was at that push.
  void finish_and_check_restores() {
    {
      Replicator rep(store, o);
      add(rep);
      FilePageReader reader(file);
      PushResult last = rep.push_checkpoint("db", reader);
      rep.sync("db", std::chrono::seconds(30));
      acknowledged[last.seq != 0 ? last.seq : list_chain(*store, "", "db").head_seq()] = bytes;
    }
    EXPECT_EQ(list_chain(*store, "", "db").head_seq(), acknowledged.rbegin()->first);
    for (auto& [seq, want] : acknowledged) {
      std::string out = dir / ("restored-" + std::to_string(seq));
      RestoreTarget t;
      t.seq = seq;
      restore(*store, "db", out, t);
      ASSERT_EQ(read_file(out), want) << "seq " << seq << " does not restore to the file acknowledged there";
    }
  }
  test::TempDir dir;
  std::mt19937_64 rng;
  std::string file = dir / "leader.db";
  std::vector<uint8_t> bytes;
  std::shared_ptr<ObjectStore> store = make_memory_store();
  ReplicatorOptions o;
  std::map<uint64_t, std::vector<uint8_t>> acknowledged;
};

// A leader whose spool writes go through a faulty file system, spooling in
// the background (a failure surfaces at a later push or sync) and in the
// foreground (the push itself fails). A checkpoint counts as acknowledged
// once push_checkpoint returned its seq and sync() returned: every such seq
// must restore, at the end, to exactly the file as it was at that push; a
// failure is reported with its kind (kIO), and the push after it ships
// whatever the file differs by.
TEST(Faults, ALeaderThroughAFaultySpoolLosesNoAcknowledgedCheckpoint) {
  uint64_t total_faults = 0, failures = 0, acknowledged_total = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    FaultyEnv env(seed, rates());
    LeaderRun run(seed, env);
    run.o.snapshots.every_segments = 40;  // compactions run among the faults
    {
      env.set_enabled(false);  // the seq-0 snapshot is written without faults
      Replicator rep(run.store, run.o);
      run.add(rep);
      run.acknowledged[0] = run.bytes;
      env.set_enabled(true);
      for (int round = 0; round < 120; ++round) {
        run.change();
        try {
          FilePageReader reader(run.file);
          PushResult r = rep.push_checkpoint("db", reader);
          rep.sync("db", std::chrono::seconds(30));
          if (r.seq != 0) run.acknowledged[r.seq] = run.bytes;
        } catch (const Error& e) {
          ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
          ++failures;
        }
      }
      env.set_enabled(false);
    }
    total_faults += env.faults();
    run.finish_and_check_restores();
    acknowledged_total += run.acknowledged.size();
  }
  std::printf("spool: %llu faults injected, %llu pushes failed, %llu checkpoints acknowledged and restored\n",
              (unsigned long long)total_faults, (unsigned long long)failures, (unsigned long long)acknowledged_total);
  EXPECT_GT(failures, 40u);
}

// The store as the dying process sees it: each write counts as one of its
// calls toward the death (so a death can fall between a segment's spooling
// and its upload), and once it is dead nothing more reaches the store: the
// uploader and the compactor died with it.
class DiesWithTheEnv final : public test::WrappedStore {
 public:
  DiesWithTheEnv(std::shared_ptr<ObjectStore> inner, FaultyEnv& env) : WrappedStore(std::move(inner)), env_(env) {}
  void put(const std::string& k, ByteSource& d) override { alive(); inner_->put(k, d); }
  void put_if_absent(const std::string& k, ByteSource& d) override { alive(); inner_->put_if_absent(k, d); }
  void remove(const std::vector<std::string>& k) override { alive(); inner_->remove(k); }

 private:
  void alive() {
    if (env_.step()) throw Error(ErrorKind::kRetryable, "the process is dead (test)");
  }
  FaultyEnv& env_;
};

// The leader's process dies at a random call into the spool's file system
// or the store, and the machine loses power (FaultyEnv::crash drops every
// byte not fdatasynced); a new Replicator on the same spool (no faults)
// takes over. A checkpoint is acknowledged once push_checkpoint returned
// its seq and sync() returned before the death. At the end every
// acknowledged seq must restore to exactly the file as it was at that push.
// (Without the fsync of a segment before its rename in Spool::write, the
// restart meets a segment put back empty, "empty segment: 0 bytes", and
// this test fails.)
TEST(Faults, ALeaderThatLosesPowerLosesNoAcknowledgedCheckpoint) {
  uint64_t crashes = 0, files_lost_bytes = 0, acknowledged_total = 0, unsynced_deaths = 0, names_undone = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    FaultyEnv env(seed, FaultRates{});
    LeaderRun run(seed, env);
    run.o.snapshots.every_segments = 15;  // compactions run among the crashes
    auto dying_store = std::make_shared<DiesWithTheEnv>(run.store, env);
    run.acknowledged[0] = run.bytes;
    for (int life = 0; life < 12; ++life) {
      auto rep = std::make_unique<Replicator>(dying_store, run.o);
      run.add(*rep);  // the first life spools the seq-0 snapshot
      env.die_after(run.rng() % 80);
      for (int round = 0; round < 10 && !env.dead(); ++round) {
        run.change();
        try {
          FilePageReader reader(run.file);
          PushResult r = rep->push_checkpoint("db", reader);
          // Acknowledged once sync() returns: everything is in the store.
          // A death meanwhile stops the uploads, and sync() never returns.
          for (;;) {
            try {
              rep->sync("db", std::chrono::milliseconds(100));
              if (r.seq != 0) run.acknowledged[r.seq] = run.bytes;
              break;
            } catch (const Error& e) {
              if (e.kind() != ErrorKind::kRetryable || env.dead()) throw;
            }
          }
        } catch (const Error& e) {
          ASSERT_TRUE(env.dead()) << "failed without an injected death: " << e.what();
          ASSERT_TRUE(e.kind() == ErrorKind::kIO || e.kind() == ErrorKind::kRetryable) << e.what();
        }
      }
      rep.reset();  // the process is gone
      ++crashes;
      files_lost_bytes += env.crash();
    }
    unsynced_deaths += env.unsynced_at_death();
    names_undone += env.names_undone();
    run.finish_and_check_restores();
    acknowledged_total += run.acknowledged.size();
  }
  std::printf("spool: %llu power losses (%llu inside a write-to-sync window, %llu files put back, %llu renames "
              "undone), %llu checkpoints acknowledged and restored\n",
              (unsigned long long)crashes, (unsigned long long)unsynced_deaths, (unsigned long long)files_lost_bytes,
              (unsigned long long)names_undone, (unsigned long long)acknowledged_total);
  // The deaths must fall where unsynced bytes existed, or the test proves
  // nothing about them.
  EXPECT_GT(unsynced_deaths, 5u);
}

// A store that fails like a remote one, seeded: a request refused before it
// reaches the store; a put whose response is lost after the object was
// stored; a put cut short by a server killed mid-upload, which leaves a
// prefix of the object (only where no object was: what a local S3 server
// that writes in place leaves); a download cut off part-way after some
// bytes reached the sink; a listing or HEAD that fails. Every failure is
// kRetryable, as the S3 store reports a reset connection or a 5xx.
class FaultyStore final : public test::WrappedStore {
 public:
  struct Rates {
    double refused = 0.08, response_lost = 0.05, cut_upload = 0, cut_download = 0.08;
  };
  FaultyStore(std::shared_ptr<ObjectStore> inner, uint64_t seed, Rates rates)
      : WrappedStore(std::move(inner)), rng_(seed), rates_(rates) {}
  void set_enabled(bool on) { enabled_ = on; }
  uint64_t faults() const { return faults_; }
  uint64_t cut_uploads() const { return cut_uploads_; }

  void put(const std::string& k, ByteSource& d) override {
    refuse("PUT " + k);
    inner_->put(k, d);
    lose_response("PUT " + k);
  }
  void put_if_absent(const std::string& k, ByteSource& d) override {
    refuse("PUT " + k);
    if (roll(rates_.cut_upload) && !inner_->head(k)) {
      VectorSink whole;
      copy_stream(d, whole);
      std::span<const uint8_t> part(whole.data().data(), cut(whole.data().size()));
      MemorySource prefix(part);
      inner_->put_if_absent(k, prefix);
      cut_uploads_++;
      fail("PUT " + k + ": the server died mid-upload");
    }
    inner_->put_if_absent(k, d);
    lose_response("PUT " + k);
  }
  void get(const std::string& k, ByteSink& o, std::optional<ByteRange> r) override {
    refuse("GET " + k);
    if (roll(rates_.cut_download)) {
      VectorSink whole;
      inner_->get(k, whole, r);
      if (size_t n = cut(whole.data().size())) o.write(whole.data().data(), n);
      fail("GET " + k + ": connection reset mid-download");
    }
    inner_->get(k, o, r);
  }
  std::optional<ObjectInfo> head(const std::string& k) override {
    refuse("HEAD " + k);
    return inner_->head(k);
  }
  std::vector<ObjectInfo> list(const std::string& p, const std::string& s) override {
    refuse("LIST " + p);
    return inner_->list(p, s);
  }
  void remove(const std::vector<std::string>& k) override {
    refuse("DELETE");
    inner_->remove(k);
  }

 private:
  bool roll(double rate) {
    if (!enabled_ || rate <= 0) return false;
    std::lock_guard l(mu_);
    return std::uniform_real_distribution<double>(0, 1)(rng_) < rate;
  }
  size_t cut(size_t n) {
    std::lock_guard l(mu_);
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  [[noreturn]] void fail(const std::string& what) {
    faults_++;
    throw Error(ErrorKind::kRetryable, what + " (injected)");
  }
  void refuse(const std::string& what) {
    if (roll(rates_.refused)) fail(what + ": 503 Slow Down");
  }
  void lose_response(const std::string& what) {
    if (roll(rates_.response_lost)) fail(what + ": stored, but the response was lost");
  }
  std::mutex mu_;
  std::mt19937_64 rng_;
  Rates rates_;
  std::atomic<bool> enabled_{true};
  std::atomic<uint64_t> faults_{0}, cut_uploads_{0};
};

// A leader whose store fails as above, the server sometimes dying
// mid-upload: every failure is retried, a truncated object of ours is
// repaired, and every checkpoint acknowledged (push, then sync) restores
// to the file as it was at that push.
TEST(Faults, ALeaderThroughAFaultyStoreLosesNoAcknowledgedCheckpoint) {
  uint64_t total_faults = 0, failed_syncs = 0, acknowledged_total = 0, cut_uploads_total = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LeaderRun run(seed, Env::posix());
    run.o.snapshots.every_segments = 25;  // compactions (store reads) among the faults
    run.o.retry_max = std::chrono::milliseconds(4);
    FaultyStore::Rates r;
    r.cut_upload = 0.05;
    auto faulty = std::make_shared<FaultyStore>(run.store, seed, r);
    {
      Replicator rep(faulty, run.o);
      for (int tries = 0;; ++tries) {
        try {
          run.add(rep);
          break;
        } catch (const Error& e) {
          ASSERT_EQ(e.kind(), ErrorKind::kRetryable) << e.what();
          ASSERT_LT(tries, 50) << e.what();
        }
      }
      run.acknowledged[0] = run.bytes;
      for (int round = 0; round < 80; ++round) {
        run.change();
        FilePageReader reader(run.file);
        PushResult p = rep.push_checkpoint("db", reader);
        try {
          rep.sync("db", std::chrono::seconds(20));
          if (p.seq != 0) run.acknowledged[p.seq] = run.bytes;
        } catch (const Error& e) {
          ASSERT_EQ(e.kind(), ErrorKind::kRetryable) << e.what();
          if (failed_syncs < 3) {
            auto st = rep.status("db");
            std::fprintf(stderr, "sync gave up: %s; spooled %llu uploaded %llu pending %llu compaction error: %s\n",
                         e.what(), (unsigned long long)st.spooled_seq, (unsigned long long)st.uploaded_seq,
                         (unsigned long long)st.pending_segments, st.compaction_error.value_or("none").c_str());
          }
          ++failed_syncs;
        }
        ASSERT_FALSE(rep.status("db").fenced) << rep.status("db").last_error.value_or("");
      }
    }
    total_faults += faulty->faults();
    cut_uploads_total += faulty->cut_uploads();
    run.finish_and_check_restores();
    acknowledged_total += run.acknowledged.size();
  }
  std::printf("store under a leader: %llu faults injected (%llu uploads cut short), %llu syncs gave up, %llu "
              "checkpoints acknowledged and restored\n",
              (unsigned long long)total_faults, (unsigned long long)cut_uploads_total,
              (unsigned long long)failed_syncs, (unsigned long long)acknowledged_total);
  EXPECT_GT(total_faults, 100u);
  EXPECT_GT(cut_uploads_total, 5u);
}

// A follower polling through a faulty store while a leader writes: a poll
// fails only with a retryable error and never breaks the follower; after
// every poll its file is exactly the leader's file at its position; with
// the faults off it reaches the head.
TEST(Faults, AFollowerThroughAFaultyStoreIsAlwaysExactlyAtItsPosition) {
  uint64_t total_faults = 0, failed_polls = 0, polls = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LeaderRun run(seed, Env::posix());
    run.o.snapshots.every_segments = 20;  // the follower may restart from a newer snapshot
    auto faulty = std::make_shared<FaultyStore>(run.store, seed, FaultyStore::Rates{});
    Replicator rep(run.store, run.o);
    run.add(rep);
    run.acknowledged[0] = run.bytes;
    FollowerOptions fo;
    Follower follower(faulty, "db", run.dir / "replica.db", fo);
    for (int round = 0; round < 100; ++round) {
      if (round % 3 != 2) {
        run.change();
        FilePageReader reader(run.file);
        PushResult p = rep.push_checkpoint("db", reader);
        rep.sync("db", std::chrono::seconds(30));
        run.acknowledged[p.seq] = run.bytes;
      }
      ++polls;
      try {
        follower.poll_once();
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kRetryable) << e.what();
        ++failed_polls;
      }
      ASSERT_FALSE(follower.broken()) << follower.last_error().value_or("");
      if (follower.status().published_path.empty()) continue;
      uint64_t at = follower.position().seq;
      ASSERT_EQ(read_file(follower.status().published_path), run.acknowledged.at(at)) << "at seq " << at;
    }
    faulty->set_enabled(false);
    follower.poll_once();
    EXPECT_EQ(follower.position().seq, run.acknowledged.rbegin()->first);
    EXPECT_EQ(read_file(run.dir / "replica.db"), run.bytes);
    total_faults += faulty->faults();
  }
  std::printf("store under a follower: %llu faults injected, %llu of %llu polls failed\n",
              (unsigned long long)total_faults, (unsigned long long)failed_polls, (unsigned long long)polls);
  EXPECT_GT(total_faults, 100u);
}

}  // namespace
}  // namespace duckblock
