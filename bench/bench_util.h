// Helpers the DuckDB benchmarks share (duckdb_bench.cpp, log_bench.cpp).
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "duckdb.hpp"

namespace duckblock::bench {

using Clock = std::chrono::steady_clock;

// Runs a statement; a benchmark whose SQL fails has no figures to print.
inline void run(duckdb::Connection& con, const std::string& sql) {
  auto r = con.Query(sql);
  if (r->HasError()) {
    std::fprintf(stderr, "SQL failed: %s: %s\n", sql.c_str(), r->GetError().c_str());
    std::exit(1);
  }
}

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Runs `body` in `dir`, or in a fresh directory under $TMPDIR (removed
// afterwards) if `dir` is empty; an exception is reported as `name: what`.
// Returns the process's exit status.
inline int run_in_dir(const char* name, std::string dir, const std::function<void(const std::string&)>& body) {
  bool own_dir = dir.empty();
  if (own_dir) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) return 1;
    dir = tmpl;
  }
  std::filesystem::create_directories(dir);
  try {
    body(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
  if (own_dir) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace duckblock::bench
