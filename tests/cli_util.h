// Runs the real `duckblock` binary as a child process, the way a user or a
// script does, and captures its exit status, stdout and stderr.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "duckblock/io.h"
#include "duckblock/sha256.h"

extern char** environ;

namespace duckblock::test {

struct CliRun {
  int rc = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child's environment: ours without DUCKBLOCK_* and AWS_* (so the test is
// not steered by the machine's settings), HOME and XDG_CONFIG_HOME pointed at
// `home` (no user config file, no ~/.aws), plus `extra`.
inline std::vector<std::string> cli_env(const std::string& home, const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("DUCKBLOCK_", 0) == 0 || kv.rfind("AWS_", 0) == 0 || kv.rfind("HOME=", 0) == 0 ||
        kv.rfind("XDG_CONFIG_HOME=", 0) == 0) {
      continue;
    }
    env.push_back(kv);
  }
  env.push_back("HOME=" + home);
  env.push_back("XDG_CONFIG_HOME=" + home + "/.config");
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

// The arguments `cmd args... common...`: a subcommand, its own arguments, then
// the flags every call in a test repeats (--store URL --db NAME).
inline std::vector<std::string> cli_args(const std::string& cmd, const std::vector<std::string>& args,
                                         const std::vector<std::string>& common) {
  std::vector<std::string> all = {cmd};
  all.insert(all.end(), args.begin(), args.end());
  all.insert(all.end(), common.begin(), common.end());
  return all;
}

// Starts `duckblock args...` with stdout and stderr going to the given files.
inline pid_t cli_spawn(const std::vector<std::string>& args, const std::string& home,
                       const std::map<std::string, std::string>& extra, const std::string& out_path,
                       const std::string& err_path) {
  std::vector<std::string> argv_s = {DUCKBLOCK_CLI};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto env_s = cli_env(home, extra);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("cannot start ") + DUCKBLOCK_CLI + ": " + std::strerror(rc));
  return pid;
}

inline int cli_wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// Runs duckblock to completion. `scratch` is a directory for the captured output.
inline CliRun cli_run(const std::vector<std::string>& args, const std::string& home,
                      const std::map<std::string, std::string>& extra = {}) {
  static int n = 0;
  std::string base = home + "/.cli-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  pid_t pid = cli_spawn(args, home, extra, base + ".out", base + ".err");
  CliRun r;
  r.rc = cli_wait(pid);
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  ::unlink((base + ".out").c_str());
  ::unlink((base + ".err").c_str());
  return r;
}

// Waits (without a deadline that could make a slow machine fail: the ctest
// timeout bounds it) until `path` contains `needle`.
inline bool wait_for_text(const std::string& path, const std::string& needle, pid_t alive) {
  for (;;) {
    if (slurp(path).find(needle) != std::string::npos) return true;
    siginfo_t info{};
    // WNOWAIT: notice an exit without reaping, so cli_wait still gets the status.
    if (::waitid(P_PID, alive, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == alive) {
      return slurp(path).find(needle) != std::string::npos;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

inline std::string file_digest(const std::string& path) {
  return to_hex(sha256(read_file(path)));
}

inline void write_text(const std::string& path, const std::string& text) {
  write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// A database-like file the test writes and changes, with its bytes kept to
// compare what a restore or a follower gives back.
struct DbBytes {
  static constexpr size_t kPage = 4096;
  explicit DbBytes(uint64_t seed) : rng(seed) {}
  // `pages` random pages.
  void write(const std::string& path, size_t pages) {
    data.resize(pages * kPage);
    for (auto& b : data) b = uint8_t(rng());
    write_file_atomic(path, data);
  }
  // Rewrites a few pages and grows the file by one page, like a checkpoint.
  void modify(const std::string& path) {
    for (int i = 0; i < 3; ++i) data[(rng() % (data.size() / kPage)) * kPage + rng() % kPage] ^= 0x5a;
    size_t old = data.size();
    data.resize(old + kPage);
    for (size_t i = old; i < data.size(); ++i) data[i] = uint8_t(rng());
    write_file_atomic(path, data);
  }
  std::string digest() const { return to_hex(sha256(data)); }

  std::mt19937_64 rng;
  std::vector<uint8_t> data;
};

inline std::string describe(const CliRun& r) {
  return "exit " + std::to_string(r.rc) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

}  // namespace duckblock::test
