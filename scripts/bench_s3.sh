#!/usr/bin/env bash
# S3 benchmark: starts a fresh s3rver on 127.0.0.1, then PUTs and GETs a
# 256 MiB object through the duckblock S3 store and with curl against it,
# printing MB/s, the ratios and our peak memory.
#   scripts/bench_s3.sh [--mib N] [--rounds N]      (BUILD_DIR defaults to build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
cd "$ROOT"
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target s3_bench >/dev/null
bash scripts/s3rver.sh install
work=$(mktemp -d)
read -r port pid < <(bash scripts/s3rver.sh start "$work/data" bench --parent $$)
trap 'bash "$ROOT/scripts/s3rver.sh" stop "$pid"; rm -rf "$work" "$work.log"' EXIT
AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1 \
  "$BUILD_DIR/bench/s3_bench" --endpoint "http://127.0.0.1:$port" --bucket bench --dir "$work" "$@"
