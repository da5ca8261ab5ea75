#!/usr/bin/env bash
# Builds and runs the segment benchmark (bench/segment_bench.cpp): snapshot,
# decode+verify and apply of one large file, with sha256sum, OpenSSL SHA-256,
# cp and dd baselines measured in the same run. See docs/PERFORMANCE.md.
#   BENCH_SIZE_MIB  size of the test file (default 1024)
#   BENCH_REPEAT    runs per measurement, the fastest kept (default 3)
#   BENCH_DIR       work directory (default: a fresh one under $TMPDIR or /tmp)
#   BENCH_FILE      use this file instead of a generated one
#   BENCH_COLD=1    evict the files from the page cache before every run
# Extra arguments go to segment_bench (--help lists them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-bench}
bash "$ROOT/scripts/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDUCKBLOCK_BENCH=ON >/dev/null
cmake --build "$BUILD" -j2 --target segment_bench >/dev/null

args=(--size-mib "${BENCH_SIZE_MIB:-1024}" --repeat "${BENCH_REPEAT:-3}")
[[ -n ${BENCH_DIR:-} ]] && args+=(--dir "$BENCH_DIR")
[[ -n ${BENCH_FILE:-} ]] && args+=(--file "$BENCH_FILE")
[[ ${BENCH_COLD:-0} == 1 ]] && args+=(--cold)
exec "$BUILD/bench/segment_bench" "${args[@]}" "$@"
