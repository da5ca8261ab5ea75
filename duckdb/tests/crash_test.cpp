// kill -9 of a DuckDB leader during its pushes and of a follower during its
// applies, at many seeded points, then restart: nothing is lost or
// duplicated and the follower converges byte-identical.
//
// The kill points are drawn from a seeded generator (DUCKBLOCK_CRASH_SEED
// overrides the seed; every failure names the seed and draw). A leader kills
// itself a drawn number of microseconds after a drawn push begins; a
// follower is killed by this process a drawn delay after it starts. Timing
// decides exactly which instruction a kill lands on, so a seed replays the
// same plan, not necessarily the same instruction.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "duckblock/duckdb_capture.h"
#include "duckblock/error.h"
#include "duckblock/restore.h"
#include "duckdb_test_util.h"
#include "test_util.h"

namespace duckblock {
namespace {

using duckdb_test::sha256_file;

constexpr const char* kPrefix = "crash/";  // as the worker
constexpr int kMinKills = 50;

// The crash tests' directories live on tmpfs when there is one. kill -9 ends
// the process, not the machine: what must survive is what reached the
// kernel, which tmpfs keeps exactly as a disk's page cache does, while its
// fsync costs nothing, so many more kill points fit in the suite's time.
class CrashDir {
 public:
  CrashDir() {
    std::string base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/duckblock-crash-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed in " + base);
    path_ = tmpl;
  }
  ~CrashDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

uint64_t base_seed() {
  const char* s = std::getenv("DUCKBLOCK_CRASH_SEED");
  return s && *s ? std::strtoull(s, nullptr, 10) : 20261125;
}

struct RunResult {
  bool killed = false;  // ended by SIGKILL
  int exit_code = -1;
  std::string out;      // stdout
};

// Runs the worker with `args`; if kill_after is set, sends SIGKILL that long
// after the start (a worker that already exited is a zombie until reaped, so
// the pid cannot have been reused).
RunResult run_worker(const std::vector<std::string>& args,
                     std::optional<std::chrono::microseconds> kill_after = std::nullopt) {
  std::string out_path = std::filesystem::temp_directory_path() / ("duckblock-worker-" + std::to_string(::getpid()));
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // stdout (the result line) and stderr (why it failed) to one file.
    if (!std::freopen(out_path.c_str(), "w", stdout)) ::_exit(126);
    ::dup2(::fileno(stdout), 2);
    std::vector<char*> argv;
    std::string exe = DUCKBLOCK_DUCKDB_WORKER;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  if (kill_after) {
    std::this_thread::sleep_for(*kill_after);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  RunResult r;
  r.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.out = ss.str();
  std::filesystem::remove(out_path);
  return r;
}

// "seq sha" lines the leader appended after each durable push.
std::multimap<uint64_t, std::string> read_push_log(const std::string& path) {
  std::multimap<uint64_t, std::string> out;
  std::ifstream in(path);
  uint64_t seq;
  std::string sha;
  while (in >> seq >> sha) out.emplace(seq, sha);
  return out;
}

void expect_gapless(ObjectStore& store, uint64_t head) {
  ChainListing chain = list_chain(store, kPrefix, "db");
  EXPECT_EQ(chain.head_seq(), head);
  for (uint64_t i = 0; i < chain.incrementals.size(); ++i) {
    ASSERT_EQ(chain.incrementals[i].seq, i + 1) << "gap or duplicate in the chain";
  }
}

TEST(CrashTest, LeaderKilledDuringPushesLosesAndDuplicatesNothing) {
  const uint64_t seed = base_seed();
  std::mt19937_64 rng(seed);
  int kills = 0, checks = 0;
  for (int campaign = 0; kills < kMinKills && campaign < 30; ++campaign) {
    CrashDir dir;
    const std::string store_dir = dir / "store";
    std::filesystem::create_directories(store_dir);
    std::shared_ptr<ObjectStore> store = make_local_store(store_dir);
    FollowerOptions fo;
    fo.prefix = kPrefix;
    FollowerBehavior follower(store, "db", dir / "follower.duckdb", fo);

    std::string done;
    for (int attempt = 0; attempt < 60; ++attempt) {
      // Half the kills land within a few milliseconds of the push's start
      // (inside it: a push is that quick), half anywhere in the next 60 ms
      // (its spooling and upload, while the worker holds DuckDB in the push:
      // see worker.cpp for why not inside DuckDB's own writes).
      long k = std::uniform_int_distribution<long>(1, 2)(rng);
      long d = std::uniform_int_distribution<long>(0, rng() % 2 ? 3000 : 60000)(rng);
      std::string plan = "seed " + std::to_string(seed) + " campaign " + std::to_string(campaign) + " attempt " +
                         std::to_string(attempt) + ": die " + std::to_string(d) + " us into push " + std::to_string(k);
      SCOPED_TRACE(plan);
      // Campaigns alternate between spooling in the push and in the
      // background (where a push's seq is durable once spooled_seq reaches it).
      RunResult r = run_worker({"leader", dir.path(), store_dir, "--die-in-push", std::to_string(k),
                                "--die-after-us", std::to_string(d), "--background-spool",
                                std::to_string(campaign % 2)});
      if (!r.killed) {
        ASSERT_EQ(r.exit_code, 0) << "the leader failed after a restart: " << r.out;
        done = r.out;
        break;
      }
      ++kills;
      // Whatever reached the store chains: a follower applies it, and its
      // file is the leader's file as it was at that seq.
      ASSERT_NO_THROW(follower.poll_once()) << follower.last_error().value_or("");
      auto log = read_push_log(dir / "pushes.log");
      auto it = log.find(follower.position().seq);
      if (it != log.end() && std::filesystem::exists(dir / "follower.duckdb")) {
        EXPECT_EQ(sha256_file(dir / "follower.duckdb"), it->second);
        ++checks;
      }
    }
    ASSERT_FALSE(done.empty()) << "the workload never finished (seed " << seed << ")";
    std::istringstream in(done);
    std::string word, final_sha;
    uint64_t head = 0;
    in >> word >> head >> final_sha;
    ASSERT_EQ(word, "done");
    const std::string leader_path = dir / "leader.duckdb";
    EXPECT_EQ(sha256_file(leader_path), final_sha);

    // Nothing lost, nothing duplicated: the chain runs 1..head without a
    // gap, no seq was ever pushed with two contents, every logged push
    // restores to exactly what was logged, and the follower converges.
    expect_gapless(*store, head);
    auto log = read_push_log(dir / "pushes.log");
    for (auto it = log.begin(); it != log.end();) {
      auto range = log.equal_range(it->first);
      for (auto j = range.first; j != range.second; ++j) {
        EXPECT_EQ(j->second, range.first->second) << "seq " << it->first << " was pushed twice with different bytes";
      }
      it = range.second;
    }
    follower.poll_once();
    EXPECT_EQ(follower.position().seq, head);
    EXPECT_EQ(sha256_file(dir / "follower.duckdb"), final_sha);
    duckdb_test::copy_file(dir / "follower.duckdb", dir / "reader.duckdb");
    duckdb_test::copy_file(leader_path, dir / "leader-copy.duckdb");
    EXPECT_EQ(duckdb_test::fingerprint_file(dir / "reader.duckdb"),
              duckdb_test::fingerprint_file(dir / "leader-copy.duckdb"));
    // Restores to logged points (first, middle, last) give what was logged.
    std::vector<std::pair<uint64_t, std::string>> logged(log.begin(), log.end());
    if (!logged.empty()) {
      for (size_t i : {size_t{0}, logged.size() / 2, logged.size() - 1}) {
        RestoreTarget t;
        t.seq = logged[i].first;
        RestoreOptions ro;
        ro.prefix = kPrefix;
        restore(*store, "db", dir / "restored.duckdb", t, ro);
        EXPECT_EQ(sha256_file(dir / "restored.duckdb"), logged[i].second) << "restore to seq " << logged[i].first;
      }
    }
  }
  EXPECT_GE(kills, kMinKills);
  RecordProperty("leader_kills", kills);
  RecordProperty("follower_checks", checks);
}

TEST(CrashTest, FollowerKilledDuringAppliesConvergesByteIdentical) {
  const uint64_t seed = base_seed() + 1;
  std::mt19937_64 rng(seed);
  CrashDir dir;
  const std::string store_dir = dir / "store";
  std::filesystem::create_directories(store_dir);
  std::shared_ptr<ObjectStore> store = make_local_store(store_dir);

  // A chain to follow, with the leader's file hashed at every seq. No
  // snapshots after the first, so a fresh follower applies every segment.
  std::map<uint64_t, std::string> sha_at;
  std::string leader_fp;
  {
    ReplicatorOptions ro;
    ro.prefix = kPrefix;
    ro.spool_dir = dir / "spool";
    ro.snapshots.every_segments = 0;
    ro.snapshots.every_bytes = 0;
    auto rep = std::make_shared<Replicator>(store, ro);
    duckdb_integration::CaptureOptions co;
    co.on_push = [&](const duckdb_integration::PushEvent& ev) {
      if (!ev.result.seq) return;
      std::vector<uint8_t> buf(ev.file_length);
      ev.reader->read_at(0, buf.data(), buf.size());
      sha_at[ev.result.seq] = to_hex(sha256(buf));
    };
    auto db = duckdb_integration::open_replicated(dir / "leader.duckdb", rep, "db", nullptr, co);
    sha_at[0] = sha256_file(dir / "leader.duckdb");
    {
      duckdb::Connection con(db->db());
      for (const auto& step : duckdb_test::workload(0.2)) {
        for (const auto& sql : step.sql) duckdb_test::run(con, sql);
        duckdb_test::run(con, "CHECKPOINT");
      }
      leader_fp = duckdb_test::fingerprint(con);
    }
    rep->sync();
  }
  const uint64_t head = sha_at.rbegin()->first;

  // How long a whole catch-up takes here, so kills spread over all of it.
  auto t0 = std::chrono::steady_clock::now();
  RunResult full = run_worker({"follow", store_dir, dir / "timing.duckdb"});
  auto span = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  ASSERT_EQ(full.exit_code, 0) << full.out;
  ASSERT_EQ(sha256_file(dir / "timing.duckdb"), sha_at[head]);

  int kills = 0, checks = 0;
  for (int campaign = 0; kills < kMinKills && campaign < 40; ++campaign) {
    const std::string file = dir / ("follower" + std::to_string(campaign) + ".duckdb");
    bool finished = false;
    for (int attempt = 0; attempt < 100 && !finished; ++attempt) {
      auto d = std::chrono::microseconds(std::uniform_int_distribution<long>(0, span.count())(rng));
      SCOPED_TRACE("seed " + std::to_string(seed) + " campaign " + std::to_string(campaign) + " attempt " +
                   std::to_string(attempt) + ": kill after " + std::to_string(d.count()) + " us");
      RunResult r = run_worker({"follow", store_dir, file}, d);
      if (!r.killed) {
        ASSERT_EQ(r.exit_code, 0) << r.out;
        finished = true;
      } else {
        ++kills;
      }
      // Reopening the replica finishes any apply the kill interrupted; the
      // file is then exactly the leader's file at the replica's position.
      if (!std::filesystem::exists(file)) continue;  // killed before the snapshot landed
      Replica replica(file);
      auto pos = replica.position();
      ASSERT_TRUE(sha_at.count(pos.seq)) << "position " << pos.seq;
      EXPECT_EQ(sha256_file(file), sha_at[pos.seq]) << "at seq " << pos.seq;
      ++checks;
    }
    ASSERT_TRUE(finished);
    Replica replica(file);
    EXPECT_EQ(replica.position().seq, head);
    EXPECT_EQ(sha256_file(file), sha_at[head]);
  }
  EXPECT_GE(kills, kMinKills);
  // And DuckDB reads the converged file as the leader's.
  duckdb_test::copy_file(dir / "follower0.duckdb", dir / "reader.duckdb");
  EXPECT_EQ(duckdb_test::fingerprint_file(dir / "reader.duckdb"), leader_fp);
  RecordProperty("follower_kills", kills);
  RecordProperty("consistency_checks", checks);
}

}  // namespace
}  // namespace duckblock
