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
#include <random>

#include "duckblock/apply.h"
#include "duckblock/env.h"
#include "duckblock/error.h"
#include "duckblock/format.h"
#include "duckblock/io.h"
#include "duckblock/replicator.h"
#include "duckblock/restore.h"
#include "duckblock/store.h"
#include "test_util.h"

namespace duckblock {
namespace {

uint64_t first_seed() {
  const char* s = std::getenv("DUCKBLOCK_FAULT_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 20261202;
}

FaultRates rates() {
  FaultRates r;
  r.enospc_on_write = 0.08;
  r.eio_on_write = 0.08;
  r.short_write = 0.25;
  r.eio_on_sync = 0.1;
  r.eio_on_rename = 0.1;
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

// A chain of segments over a changing file, applied to a replica through a
// faulty file system. After a failure the process "restarts": the replica is
// reopened without faults (which finishes an apply the journal shows as
// pending), and its file must be exactly the state at its position.
TEST(Faults, ApplyReportsEveryFailureAndAReopenedReplicaIsExactlyAtItsPosition) {
  constexpr uint32_t kPage = 4096;
  uint64_t total_faults = 0, failures = 0, applied_total = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    test::TempDir dir;
    std::mt19937_64 rng(seed);
    // The states and the segments between them (seq n turns state n-1 into n).
    std::vector<std::vector<uint8_t>> states = {random_bytes(rng, 24 * kPage)};
    std::vector<std::string> segments = {""};
    std::vector<uint64_t> checksums = {0};
    for (uint64_t seq = 1; seq <= 150; ++seq) {
      auto next = states.back();
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
        bool changed = id >= states.back().size() / kPage ||
                       !std::equal(next.begin() + id * kPage, next.begin() + (id + 1) * kPage,
                                   states.back().begin() + id * kPage);
        if (changed) pages.push_back({id, {next.begin() + id * kPage, next.begin() + (id + 1) * kPage}});
      }
      if (resize) pages.push_back({kFileLengthPageId, encode_file_length(next.size())});
      SegmentHeader h;
      h.page_size = kPage;
      h.seq = seq;
      h.prev_checksum = checksums.back();
      uint64_t sum = 0;
      auto seg = encode_segment(h, pages, &sum);
      std::string path = dir / ("seg-" + std::to_string(seq));
      write_file_atomic(path, seg);
      segments.push_back(path);
      checksums.push_back(sum);
      states.push_back(std::move(next));
    }
    std::string target = dir / "replica.db";
    write_file_atomic(target, states[0]);
    FaultyEnv env(seed, rates());
    ApplyOptions faulty;
    faulty.env = &env;
    auto replica = std::make_unique<Replica>(target, faulty);
    replica->set_position({0, 0}, kPage);
    while (replica->position().seq < 150) {
      uint64_t at = replica->position().seq;
      try {
        replica->apply(segments[at + 1]);
        ++applied_total;
        ASSERT_EQ(replica->position(), (ChainPosition{at + 1, checksums[at + 1]}));
        ASSERT_EQ(read_file(target), states[at + 1]) << "wrong bytes after applying seq " << at + 1;
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
        ++failures;
        replica.reset();
        Replica reopened(target);  // recovery runs without faults
        uint64_t pos = reopened.position().seq;
        ASSERT_TRUE(pos == at || pos == at + 1) << "position " << pos << " after a failure at " << at;
        ASSERT_EQ(reopened.position().checksum, checksums[pos]);
        ASSERT_EQ(read_file(target), states[pos]) << "replica is not the state at its position " << pos;
        replica = std::make_unique<Replica>(target, faulty);
      }
    }
    total_faults += env.faults();
  }
  std::printf("apply: %llu faults injected, %llu applies failed, %llu succeeded\n", (unsigned long long)total_faults,
              (unsigned long long)failures, (unsigned long long)applied_total);
  EXPECT_GT(failures, 100u);
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

// A leader whose spool writes go through a faulty file system, spooling in
// the background (a failure surfaces at a later push or sync) and in the
// foreground (the push itself fails). A checkpoint counts as acknowledged
// once push_checkpoint returned its seq and sync() returned: every such seq
// must restore, at the end, to exactly the file as it was at that push; a
// failure is reported with its kind (kIO), and the push after it ships
// whatever the file differs by.
TEST(Faults, ALeaderThroughAFaultySpoolLosesNoAcknowledgedCheckpoint) {
  constexpr uint32_t kPage = 4096;
  uint64_t total_faults = 0, failures = 0, acknowledged_total = 0;
  for (uint64_t seed = first_seed(); seed < first_seed() + 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const bool background = seed % 2 == 0;
    test::TempDir dir;
    std::mt19937_64 rng(seed);
    std::string file = dir / "leader.db";
    std::vector<uint8_t> bytes = random_bytes(rng, 24 * kPage);
    write_file_atomic(file, bytes);
    std::shared_ptr<ObjectStore> store = make_memory_store();
    FaultyEnv env(seed, rates());
    env.set_enabled(false);  // the seq-0 snapshot is written without faults
    ReplicatorOptions o;
    o.spool_dir = dir / "spool";
    o.spool_env = &env;
    o.background_spool_bytes = background ? (64u << 20) : 0;
    o.snapshots.every_segments = 40;  // compactions run among the faults
    o.retry_initial = std::chrono::milliseconds(1);
    std::map<uint64_t, std::vector<uint8_t>> acknowledged;  // seq -> the file at that push
    {
      Replicator rep(store, o);
      {
        FilePageReader reader(file);
        rep.add("db", reader);
      }
      rep.sync("db", std::chrono::seconds(30));
      acknowledged[0] = bytes;
      env.set_enabled(true);
      for (int round = 0; round < 120; ++round) {
        for (int i = 0, n = 1 + int(rng() % 5); i < n; ++i) {
          uint64_t id = rng() % (bytes.size() / kPage);
          auto page = random_bytes(rng, kPage);
          std::copy(page.begin(), page.end(), bytes.begin() + id * kPage);
        }
        if (rng() % 6 == 0) bytes.resize(rng() % 2 ? bytes.size() + kPage : std::max<size_t>(4 * kPage, bytes.size() - kPage));
        write_file_atomic(file, bytes);
        try {
          FilePageReader reader(file);
          PushResult r = rep.push_checkpoint("db", reader);
          rep.sync("db", std::chrono::seconds(30));
          if (r.seq != 0) acknowledged[r.seq] = bytes;
        } catch (const Error& e) {
          ASSERT_EQ(e.kind(), ErrorKind::kIO) << e.what();
          ++failures;
        }
      }
      env.set_enabled(false);
      FilePageReader reader(file);
      PushResult last = rep.push_checkpoint("db", reader);
      rep.sync("db", std::chrono::seconds(30));
      if (last.seq != 0) acknowledged[last.seq] = bytes;
    }
    total_faults += env.faults();
    acknowledged_total += acknowledged.size();
    ChainListing chain = list_chain(*store, "", "db");
    EXPECT_EQ(chain.head_seq(), acknowledged.rbegin()->first);
    for (auto& [seq, want] : acknowledged) {
      std::string out = dir / ("restored-" + std::to_string(seq));
      RestoreTarget t;
      t.seq = seq;
      restore(*store, "db", out, t);
      ASSERT_EQ(read_file(out), want) << "seq " << seq << " does not restore to the file acknowledged there";
    }
  }
  std::printf("spool: %llu faults injected, %llu pushes failed, %llu checkpoints acknowledged and restored\n",
              (unsigned long long)total_faults, (unsigned long long)failures, (unsigned long long)acknowledged_total);
  EXPECT_GT(failures, 40u);
}

}  // namespace
}  // namespace duckblock
