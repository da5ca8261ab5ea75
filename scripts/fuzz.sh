#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan+UBSan (in build-fuzz/, or
# $FUZZ_BUILD_DIR) and runs the segment decoder's for a bounded time, seeded
# with the format's golden vectors (plain and zstd). Fails on any crash, sanitizer report,
# leak, timeout or memory blow-up; the offending input is left in the build
# dir (crash-*, leak-*, timeout-*, oom-*) and its path printed.
#   FUZZ_SECONDS  how long to fuzz (default 60)
#   FUZZ_MAX_LEN  largest input in bytes (default 65536)
#   FUZZ_RSS_MB   memory limit in MiB (default 2048)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
MAX_LEN=${FUZZ_MAX_LEN:-65536}
RSS_MB=${FUZZ_RSS_MB:-2048}
JOBS=${JOBS:-2}

CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDUCKBLOCK_FUZZ=ON -DDUCKBLOCK_SANITIZE=address,undefined \
  -DDUCKBLOCK_TESTS=OFF -DDUCKBLOCK_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target segment_decoder_fuzz

# New inputs go to the first directory (kept between runs, so later runs start
# where earlier ones stopped); the golden vectors are only read.
CORPUS=$BUILD/corpus/segment_decoder
mkdir -p "$CORPUS"
cd "$BUILD"
echo "fuzz: segment_decoder_fuzz for ${SECONDS_TO_RUN}s (max_len $MAX_LEN, rss limit ${RSS_MB} MiB)"
# -timeout: one input taking seconds is a hang worth reporting.
# The target aborts on its own checks; ASan/UBSan abort on any report.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  fuzz/segment_decoder_fuzz -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb="$RSS_MB" \
  -max_len="$MAX_LEN" -timeout=10 -print_final_stats=1 -artifact_prefix="$BUILD/" \
  "$CORPUS" "$ROOT/tests/data/hadbp" "$ROOT/tests/data/hadbp-zstd" 2>"$BUILD/fuzz.log" || {
    rc=$?
    tail -60 "$BUILD/fuzz.log" >&2
    echo "fuzz: FAILED (exit $rc); full log: $BUILD/fuzz.log" >&2
    exit "$rc"
  }
grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$BUILD/fuzz.log" || true
echo "fuzz: no crash"
