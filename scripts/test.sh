#!/usr/bin/env bash
# Sets up a fresh machine, builds, and runs every test. This is what CI runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# The DuckDB layer (duckdb/, extension/) and its end-to-end tests need DuckDB
# 1.4.4 from npm (fetched once into .cache/duckdb). DUCKBLOCK_DUCKDB=0 skips
# them and builds and tests the core, S3 and CLI only.
if [[ ${DUCKBLOCK_DUCKDB:-1} == 1 ]]; then
  bash scripts/fetch_duckdb.sh  # DuckDB 1.4.4 for duckdb/ (cached in .cache/duckdb)
  bash scripts/build.sh -DDUCKBLOCK_DUCKDB_ROOT="$ROOT/.cache/duckdb"
else
  bash scripts/build.sh -DDUCKBLOCK_DUCKDB_ROOT="$ROOT/.cache/no-duckdb"
fi
(cd build && ctest --output-on-failure -j2 --timeout 600)

# The core's tests again, built with clang under ASan+UBSan (build-asan/).
# Only the core targets are built and only tests labelled "core" run, so
# targets that need DuckDB stay out of the sanitizer build.
echo "== core tests under ASan+UBSan"
CC=clang CXX=clang++ cmake -S "$ROOT" -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDUCKBLOCK_SANITIZE=address,undefined -DDUCKBLOCK_BENCH=OFF -DDUCKBLOCK_FUZZ=OFF >/dev/null
cmake --build build-asan -j2 --target duckblock_core duckblock duckblock_tests
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j2 --timeout 600 -L core)

# The segment decoder's libFuzzer target, for a bounded time.
echo "== fuzzing the segment decoder"
FUZZ_SECONDS=${FUZZ_SECONDS:-45} bash scripts/fuzz.sh
