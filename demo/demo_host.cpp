// The demo that scripts/demo.sh runs (and ctest, as duckblock_demo): a real
// DuckDB 1.4.4 leader replicating through the duckblock extension to a
// local-directory store, a follower kept current by the `duckblock follow`
// command line in its own process, and restores to earlier points with
// `duckblock restore`. It prints what it sees at each step and exits 1 at the
// first thing that does not match.
//
//   duckblock_demo_host CLI EXTENSION [DIR]
//
// CLI is the built `duckblock` program, EXTENSION the built
// duckblock.duckdb_extension; DIR (emptied first) receives the store, the
// leader's, the follower's and the restored files. Without DIR a temporary
// directory is used and removed when the demo succeeds.
//
// Like any DuckDB host it links only libduckdb.so and knows duckblock only
// through SQL (the extension) and the command line.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "duckdb.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct DemoFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& message) { throw DemoFailure(message); }

std::string with_commas(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", n / (1024.0 * 1024.0));
  return buf;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// RFC 3339 in UTC with milliseconds, as `duckblock restore --time` takes it.
std::string rfc3339(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[32], out[48];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string indent(const std::string& text, const std::string& pad = "      ") {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out += pad + line + "\n";
  return out;
}

// ---- child processes ---------------------------------------------------------

// Starts argv[0] with its stdout (and, if merge_stderr, its stderr) on a pipe
// whose read end is returned; otherwise stderr goes to stderr_path. Only this
// process's standard streams are inherited: DuckDB's descriptors stay here.
pid_t spawn(const std::vector<std::string>& argv, int* out_fd, bool merge_stderr, const std::string& stderr_path) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) fail("pipe: " + std::string(strerror(errno)));
  int err_fd = -1;
  if (!stderr_path.empty()) {
    err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) fail("cannot open " + stderr_path + ": " + strerror(errno));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(stdout);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec (DuckDB has threads)
    // Should the demo die without stopping it, the child ends too.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    dup2(p[1], 1);
    if (merge_stderr) dup2(p[1], 2);
    else if (err_fd >= 0) dup2(err_fd, 2);
    close_range(3, ~0U, 0);
    execv(args[0], args.data());
    static const char kExecFailed[] = "demo: exec failed\n";
    ssize_t ignored = write(2, kExecFailed, sizeof kExecFailed - 1);
    (void)ignored;
    _exit(127);
  }
  close(p[1]);
  if (err_fd >= 0) close(err_fd);
  if (pid < 0) {
    close(p[0]);
    fail("fork: " + std::string(strerror(errno)));
  }
  *out_fd = p[0];
  return pid;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

struct Run {
  int exit_code;
  std::string output;  // stdout and stderr
};

// Runs a command to completion.
Run run(const std::vector<std::string>& argv) {
  int fd;
  pid_t pid = spawn(argv, &fd, true, "");
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

// Runs a `duckblock` command that must succeed.
std::string run_cli(const std::vector<std::string>& argv) {
  Run r = run(argv);
  if (r.exit_code != 0) {
    std::string cmd;
    for (size_t i = 1; i < argv.size(); ++i) cmd += (i > 1 ? " " : "") + argv[i];
    fail("`duckblock " + cmd + "` exited " + std::to_string(r.exit_code) + ":\n" + indent(r.output));
  }
  return r.output;
}

// sha256 of a file, from sha256sum in a child process: reading the leader's
// file here, where DuckDB has it open, would open and close a second
// descriptor on it, and closing any descriptor drops this process's POSIX
// lock on the file.
std::string sha256_of(const std::string& path) {
  Run r = run({"/usr/bin/sha256sum", path});
  if (r.exit_code != 0 || r.output.size() < 64) fail("sha256sum " + path + " failed: " + r.output);
  return r.output.substr(0, 64);
}

// `duckblock follow` running in the background, as an operator would run it
// on another machine. It prints "seq N checksum HEX" for each position it
// reaches; its notes go to a log file.
class Follower {
 public:
  Follower(const std::vector<std::string>& argv, std::string log) : log_(std::move(log)) {
    pid_ = spawn(argv, &fd_, false, log_);
  }
  ~Follower() {
    if (pid_ > 0) {  // a demo that failed half-way: end it, do not leave it polling
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  pid_t pid() const { return pid_; }
  uint64_t seq() const { return seq_; }
  uint64_t log_bytes() const { return log_bytes_; }

  // Waits until the follower reports a log of at least `bytes` on seq `seq`.
  void wait_for_log(uint64_t seq, uint64_t bytes, std::chrono::seconds limit) {
    auto give_up = Clock::now() + limit;
    while (seq_ != seq || log_bytes_ < bytes) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()).count();
      if (left <= 0) {
        fail("the follower did not reach " + std::to_string(bytes) + " log bytes on seq " + std::to_string(seq) +
             " within " + std::to_string(limit.count()) + " s" + log_tail());
      }
      if (!read_some(static_cast<int>(left))) fail("the follower exited (" + describe_status(reap()) + ")" + log_tail());
    }
  }

  // Waits until the follower has reported seq >= want, at most `limit`.
  void wait_for(uint64_t want, std::chrono::seconds limit) {
    auto give_up = Clock::now() + limit;
    while (!have_seq_ || seq_ < want) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()).count();
      if (left <= 0) {
        fail("the follower did not reach seq " + std::to_string(want) + " within " +
             std::to_string(limit.count()) + " s (it is at " + (have_seq_ ? std::to_string(seq_) : "none") +
             ")" + log_tail());
      }
      if (!read_some(static_cast<int>(left))) {
        fail("the follower exited (" + describe_status(reap()) + ") before reaching seq " + std::to_string(want) +
             log_tail());
      }
    }
  }

  // SIGTERM, then its last output line and its exit status.
  std::pair<int, std::string> stop() {
    kill(pid_, SIGTERM);
    while (read_some(30000)) {
    }
    return {reap(), last_line_};
  }

 private:
  // Reads what is available within timeout_ms; false at end of output.
  bool read_some(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    int n = poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return true;
    char buf[4096];
    ssize_t got = read(fd_, buf, sizeof buf);
    if (got < 0 && errno == EINTR) return true;
    if (got <= 0) return false;
    pending_.append(buf, static_cast<size_t>(got));
    for (size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      last_line_ = line;
      unsigned long long s, idx, bytes;
      if (std::sscanf(line.c_str(), "seq %llu", &s) == 1 || std::sscanf(line.c_str(), "stopped seq %llu", &s) == 1) {
        seq_ = s;
        have_seq_ = true;
        // "seq N checksum HEX log K (B bytes)": the commits since checkpoint N
        auto at = line.find(" log ");
        log_bytes_ = at != std::string::npos && std::sscanf(line.c_str() + at, " log %llu (%llu bytes)", &idx, &bytes) == 2
                         ? bytes
                         : 0;
      }
    }
    return true;
  }
  int reap() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }
  std::string log_tail() const {
    std::ifstream f(log_);
    std::string text((std::istreambuf_iterator<char>(f)), {});
    return "\n    follower's log (" + log_ + "):\n" + indent(text);
  }

  std::string log_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string pending_, last_line_;
  uint64_t seq_ = 0;
  uint64_t log_bytes_ = 0;
  bool have_seq_ = false;
};

// ---- DuckDB -----------------------------------------------------------------

duckdb::unique_ptr<duckdb::MaterializedQueryResult> q(duckdb::Connection& con, const std::string& sql) {
  auto r = con.Query(sql);
  if (r->HasError()) fail("SQL failed: " + sql + "\n    " + r->GetError());
  return r;
}

// What queries see in database `db`: each table's row count and an
// order-independent hash of all its rows.
struct Contents {
  std::map<std::string, uint64_t> rows;  // by table
  std::string fingerprint;
  uint64_t total() const {
    uint64_t n = 0;
    for (const auto& [t, c] : rows) n += c;
    return n;
  }
};

Contents contents(duckdb::Connection& con, const std::string& db) {
  Contents c;
  auto tables = q(con, "SELECT table_name FROM duckdb_tables() WHERE database_name = '" + db +
                           "' ORDER BY table_name");
  for (size_t i = 0; i < tables->RowCount(); ++i) {
    std::string t = tables->GetValue(0, i).ToString();
    auto r = q(con, "SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0) FROM \"" + db + "\".\"" + t + "\" AS x");
    c.rows[t] = r->GetValue(0, 0).GetValue<uint64_t>();
    c.fingerprint += t + ":" + r->GetValue(0, 0).ToString() + ":" + r->GetValue(1, 0).ToString() + ";";
  }
  return c;
}

// Opens a file READ_ONLY in the host's DuckDB and reads what it holds.
Contents contents_of_file(duckdb::Connection& con, const std::string& path, const std::string& alias) {
  q(con, "ATTACH '" + path + "' AS " + alias + " (READ_ONLY)");
  Contents c = contents(con, alias);
  q(con, "DETACH " + alias);
  return c;
}

struct Shipped {
  uint64_t seq, bytes_total;
};

// Waits until the store has every segment the leader spooled.
Shipped sync_leader(duckdb::Connection& con) {
  auto r = q(con, "SELECT shipped_seq, spooled_seq, bytes_shipped, pending_segments, last_error "
                  "FROM duckblock_sync('leader')");
  if (r->RowCount() != 1) fail("duckblock_sync returned " + std::to_string(r->RowCount()) + " rows");
  if (!r->GetValue(4, 0).IsNull()) fail("the leader reports an error: " + r->GetValue(4, 0).ToString());
  if (r->GetValue(0, 0) != r->GetValue(1, 0) || r->GetValue(3, 0).GetValue<uint64_t>() != 0) {
    fail("after duckblock_sync the store is not at the spooled seq");
  }
  return {r->GetValue(0, 0).GetValue<uint64_t>(), r->GetValue(2, 0).GetValue<uint64_t>()};
}

struct Point {  // the leader at one checkpoint
  uint64_t seq;
  std::string sha256;
  Contents contents;
};

// The restored file must be the leader's file at that point, byte for byte,
// and read as it did.
void check_restored(duckdb::Connection& con, const std::string& path, const Point& at, const Contents& now) {
  std::string sha = sha256_of(path);
  if (sha != at.sha256) fail(path + " has sha256 " + sha + ", the leader's file at seq " + std::to_string(at.seq) +
                             " had " + at.sha256);
  Contents c = contents_of_file(con, path, "restored");
  if (c.fingerprint != at.contents.fingerprint) fail("DuckDB reads different data from " + path);
  std::string tables;
  for (const auto& [t, n] : c.rows) {
    auto it = now.rows.find(t);
    tables += (tables.empty() ? "" : ", ") + t + " " + with_commas(n) + " rows (now " +
              (it == now.rows.end() ? std::string("dropped") : with_commas(it->second)) + ")";
  }
  std::printf("    = the leader's file at seq %llu (sha256 %.16s...); READ_ONLY in DuckDB: %s\n",
              static_cast<unsigned long long>(at.seq), sha.c_str(), tables.c_str());
}

int run_demo(const std::string& cli, const std::string& extension, const std::string& dir) {
  const std::string store = "file://" + dir + "/store";
  const std::string leader_file = dir + "/leader.duckdb";
  const std::string follower_file = dir + "/follower.duckdb";
  const auto started = Clock::now();
  std::printf("duckblock demo in %s\n", dir.c_str());

  // 1. The leader: a DuckDB that loads the extension and attaches its
  // database through duckblock://, so every checkpoint ships to the store.
  duckdb::DBConfig config;
  config.SetOptionByName("allow_unsigned_extensions", duckdb::Value::BOOLEAN(true));
  duckdb::DuckDB db(nullptr, &config);
  duckdb::Connection con(db);
  q(con, "LOAD '" + extension + "'");
  q(con, "SET duckblock_store = '" + store + "'");
  q(con, "ATTACH 'duckblock://" + leader_file + "' AS shop");
  Shipped shipped = sync_leader(con);
  std::printf(" 1. leader: DuckDB %s LOADs %s, SET duckblock_store = '%s',\n"
              "    ATTACH 'duckblock://%s' AS shop: the new file shipped as seq %llu (%s)\n",
              duckdb::DuckDB::LibraryVersion(), fs::path(extension).filename().c_str(), store.c_str(),
              leader_file.c_str(), static_cast<unsigned long long>(shipped.seq),
              human_bytes(shipped.bytes_total).c_str());

  // 2. The follower: the command line in its own process.
  std::vector<std::string> follow_argv = {cli,    "follow", "--store",      store,  "--db",
                                          "leader", "--to",   follower_file, "--interval", "1s"};
  Follower follower(follow_argv, dir + "/follower.log");
  std::vector<Point> points;
  auto check_follower = [&](uint64_t seq) {
    auto t0 = Clock::now();
    follower.wait_for(seq, std::chrono::seconds(30));
    double waited = seconds_since(t0);
    if (follower.seq() != seq) fail("the follower is at seq " + std::to_string(follower.seq()) + ", not " +
                                    std::to_string(seq));
    // Nothing writes either file now: the leader is idle after its checkpoint
    // and the follower has applied all there is.
    Point p{seq, sha256_of(leader_file), contents(con, "shop")};
    std::string follower_sha = sha256_of(follower_file);
    if (follower_sha != p.sha256) {
      fail("at seq " + std::to_string(seq) + " the follower's file has sha256 " + follower_sha +
           ", the leader's " + p.sha256);
    }
    // The follower's own file, attached READ_ONLY and detached again before
    // the leader writes, so it cannot change while DuckDB has it open.
    Contents replica = contents_of_file(con, follower_file, "replica");
    if (replica.fingerprint != p.contents.fingerprint) {
      fail("DuckDB reads different data from the follower's file at seq " + std::to_string(seq));
    }
    std::string reads = replica.rows.empty() ? "no tables yet, as on the leader"
                                             : "the same " + with_commas(replica.total()) + " rows";
    std::printf("    follower at seq %llu after %.1f s: sha256 %.16s... = the leader's; opened READ_ONLY: %s\n",
                static_cast<unsigned long long>(seq), waited, follower_sha.c_str(), reads.c_str());
    points.push_back(p);
  };
  std::printf(" 2. follower: started in the background (pid %d), as on another machine:\n"
              "    duckblock follow --store %s --db leader --to %s --interval 1s\n",
              static_cast<int>(follower.pid()), store.c_str(), follower_file.c_str());
  check_follower(shipped.seq);

  // 3-7. The workload, one CHECKPOINT per step; after each, the follower
  // must reach the leader's seq with the leader's exact file.
  struct Step {
    const char* what;
    std::vector<std::string> sql;
  };
  const std::vector<Step> steps = {
      {"bulk load 100,000 orders, 5,000 customers",
       {"CREATE TABLE shop.customers AS SELECT range AS id, 'customer ' || range AS name FROM range(5000)",
        "CREATE TABLE shop.orders AS SELECT range AS id, range % 5000 AS customer_id, "
        "(range * 7919 % 10000) / 100.0 AS amount, 'new' AS status FROM range(100000)"}},
      {"update 10,000 orders", {"UPDATE shop.orders SET status = 'shipped' WHERE id % 10 = 0"}},
      {"append 150,000 orders",
       {"INSERT INTO shop.orders SELECT range, range % 5000, (range * 7919 % 10000) / 100.0, 'new' "
        "FROM range(100000, 250000)"}},
      {"delete 200,000 orders", {"DELETE FROM shop.orders WHERE id % 5 <> 0"}},
      {"drop table customers", {"DROP TABLE shop.customers"}},
  };
  const size_t kBeforeDelete = 3, kBeforeAppend = 2;  // indices into points (0: the new file)
  int64_t time_before_append = 0;
  int n = 3;
  for (const auto& step : steps) {
    for (const auto& sql : step.sql) q(con, sql);
    q(con, "CHECKPOINT shop");
    Shipped now = sync_leader(con);
    uint64_t rows = contents(con, "shop").total();
    std::printf("%2d. %s; CHECKPOINT: seq %llu, %s shipped, file %s, %s rows\n", n++, step.what,
                static_cast<unsigned long long>(now.seq), human_bytes(now.bytes_total - shipped.bytes_total).c_str(),
                human_bytes(fs::file_size(leader_file)).c_str(), with_commas(rows).c_str());
    shipped = now;
    check_follower(shipped.seq);
    if (points.size() == kBeforeAppend + 1) {
      // A moment after this checkpoint and before the next one's segments.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      time_before_append = now_ms();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // Commits without CHECKPOINT: DuckDB keeps them in its .wal, and duckblock
  // ships them within duckblock_sync_interval_ms (1 s by default); the
  // follower keeps its replica's .wal current, so it sees them too.
  {
    auto t0 = Clock::now();
    for (int i = 0; i < 20; ++i) {
      q(con, "INSERT INTO shop.orders VALUES (" + std::to_string(1000000 + i) + ", 7, 9.99, 'express')");
    }
    Shipped now = sync_leader(con);
    auto st = q(con, "SELECT log_seq, log_index, log_bytes FROM duckblock_status() WHERE role = 'leader'");
    uint64_t log_seq = st->GetValue(0, 0).GetValue<uint64_t>(), log_bytes = st->GetValue(2, 0).GetValue<uint64_t>();
    if (log_seq != now.seq || log_bytes == 0) fail("the commits' log is not in the store after duckblock_sync");
    follower.wait_for_log(now.seq, log_bytes, std::chrono::seconds(30));
    double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    Contents leader_now = contents(con, "shop");
    Contents replica = contents_of_file(con, follower_file, "replica");
    if (replica.fingerprint != leader_now.fingerprint) {
      fail("the follower's file with its .wal reads different data from the leader after 20 commits");
    }
    std::printf("%2d. 20 single-row commits, no CHECKPOINT: still seq %llu, the commits' log (%s, %llu log "
                "segment%s) in the store; the follower has them in its .wal after %.1f s and reads %s rows\n",
                n++, static_cast<unsigned long long>(now.seq), human_bytes(log_bytes).c_str(),
                static_cast<unsigned long long>(st->GetValue(1, 0).GetValue<uint64_t>()),
                st->GetValue(1, 0).GetValue<uint64_t>() == 1 ? "" : "s", waited,
                with_commas(replica.total()).c_str());
  }
  const Contents final_contents = contents(con, "shop");

  // The follower stops cleanly on SIGTERM.
  auto [status, last] = follower.stop();
  std::printf("%2d. follower stopped with SIGTERM: %s, its last line \"%s\"\n", n++, describe_status(status).c_str(),
              last.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the follower did not exit 0 on SIGTERM");

  // What the store holds, verified.
  std::printf("%2d. duckblock ls --store %s --db leader\n", n++, store.c_str());
  std::printf("%s", indent(run_cli({cli, "ls", "--store", store, "--db", "leader"})).c_str());
  std::printf("%2d. duckblock verify --store %s --db leader\n", n++, store.c_str());
  std::printf("%s", indent(run_cli({cli, "verify", "--store", store, "--db", "leader"})).c_str());

  // Restores to earlier points: by seq (before the delete) and by time
  // (before the append).
  const Point& before_delete = points.at(kBeforeDelete);
  std::string seq_arg = std::to_string(before_delete.seq);
  std::string restored_seq = dir + "/restored-seq" + seq_arg + ".duckdb";
  std::printf("%2d. duckblock restore --seq %s (the checkpoint before the delete) --to %s\n", n++, seq_arg.c_str(),
              restored_seq.c_str());
  std::printf("%s", indent(run_cli({cli, "restore", "-q", "--store", store, "--db", "leader", "--seq", seq_arg,
                                    "--to", restored_seq}))
                        .c_str());
  check_restored(con, restored_seq, before_delete, final_contents);

  const Point& before_append = points.at(kBeforeAppend);
  std::string time_arg = rfc3339(time_before_append);
  std::string restored_time = dir + "/restored-time.duckdb";
  std::printf("%2d. duckblock restore --time %s (between the update and the append) --to %s\n", n++,
              time_arg.c_str(), restored_time.c_str());
  std::printf("%s", indent(run_cli({cli, "restore", "-q", "--store", store, "--db", "leader", "--time", time_arg,
                                    "--to", restored_time}))
                        .c_str());
  check_restored(con, restored_time, before_append, final_contents);

  std::printf("demo complete in %.1f s: every check passed; the files are in %s\n", seconds_since(started),
              dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s CLI EXTENSION [DIR]\n", argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  std::string cli = fs::absolute(argv[1]).string(), extension = fs::absolute(argv[2]).string();
  if (access(cli.c_str(), X_OK) != 0 || access(extension.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "%s: %s is not a program or %s is not readable\n", argv[0], cli.c_str(), extension.c_str());
    return 2;
  }
  bool temporary = argc == 3;
  std::string dir;
  if (temporary) {
    char tmpl[] = "/tmp/duckblock-demo-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  } else {
    dir = fs::absolute(argv[3]).lexically_normal().string();
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  try {
    int rc = run_demo(cli, extension, dir);
    if (temporary) fs::remove_all(dir);
    return rc;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\ndemo FAILED: %s\n(files kept in %s)\n", e.what(), dir.c_str());
    return 1;
  }
}
