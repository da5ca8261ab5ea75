#!/usr/bin/env bash
# The main job on the embedded default store (a local directory), with a
# real DuckDB 1.4.4:
#   - a leader: a small C++ host linked with the release libduckdb.so
#     (demo/demo_host.cpp) LOADs the built duckblock.duckdb_extension,
#     ATTACHes 'duckblock:///.../leader.duckdb' and runs a workload (bulk
#     load, update, large append, delete, drop table), with a CHECKPOINT and
#     duckblock_sync() after each step;
#   - a follower kept current: `duckblock follow` in the background, whose
#     file must reach each checkpoint's seq with the leader's sha256 and read
#     the same in DuckDB (READ_ONLY); it is stopped with SIGTERM at the end;
#   - `duckblock ls`, `duckblock verify`, and restores to earlier points by
#     --seq and by --time, each the leader's file as it was then.
# It installs what it needs (scripts/setup.sh, DuckDB from
# scripts/fetch_duckdb.sh) and builds the command line, the extension and the
# host into build-demo/ (its own directory, so the test build's settings are
# left alone); the files it makes are left in build-demo/demo/run/. Every check
# that fails stops it with exit status 1 and says what differed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
bash scripts/fetch_duckdb.sh
if [[ ! -f .cache/duckdb/lib/libduckdb.so ]]; then
  echo "demo: needs DuckDB 1.4.4 for linux x86_64 (scripts/fetch_duckdb.sh), not available here" >&2
  exit 1
fi

BUILD=$ROOT/build-demo
mkdir -p "$BUILD"
echo "demo: building the command line, the DuckDB extension and the demo host into build-demo/"
echo "      (a few minutes the first time; log: build-demo/build.log)"
if ! BUILD_DIR=$BUILD BUILD_TARGETS=duckblock_demo_host bash scripts/build.sh \
       -DDUCKBLOCK_TESTS=OFF -DDUCKBLOCK_BENCH=OFF -DDUCKBLOCK_DUCKDB_ROOT="$ROOT/.cache/duckdb" \
       >"$BUILD/build.log" 2>&1; then
  tail -40 "$BUILD/build.log" >&2
  echo "demo: the build failed; full log: $BUILD/build.log" >&2
  exit 1
fi
echo
"$BUILD/demo/duckblock_demo_host" "$BUILD/cli/duckblock" "$BUILD/extension/duckblock.duckdb_extension" \
  "$BUILD/demo/run"
