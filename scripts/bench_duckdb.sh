#!/usr/bin/env bash
# Replicating a real DuckDB: bytes shipped per checkpoint, CHECKPOINT latency
# with capture on and off, follower lag (bench/duckdb_bench.cpp). Extra
# arguments go to the benchmark: --rows N --latency-runs N --lag-samples N
# --dir DIR (default: a fresh directory under $TMPDIR, removed afterwards).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
bash scripts/fetch_duckdb.sh
bash scripts/build.sh >/dev/null
exec "${BUILD_DIR:-$ROOT/build}/bench/duckdb_bench" "$@"
