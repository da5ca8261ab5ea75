#!/usr/bin/env bash
# Every commit shipped: commit latency without capture, in interval mode and
# in commit mode (local store and a fresh s3rver on 127.0.0.1), log bytes
# shipped against WAL bytes written, PUTs per minute under a steady stream,
# follower visibility lag (bench/log_bench.cpp). Extra arguments go to the
# benchmark: --commits N --rate N --stream-seconds N --lag-samples N --dir DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
cd "$ROOT"
bash scripts/setup.sh
bash scripts/fetch_duckdb.sh
BUILD_TARGETS="log_bench" bash scripts/build.sh >/dev/null
bash scripts/s3rver.sh install
work=$(mktemp -d)
read -r port pid < <(bash scripts/s3rver.sh start "$work/data" bench --parent $$)
trap 'bash "$ROOT/scripts/s3rver.sh" stop "$pid"; rm -rf "$work" "$work.log"' EXIT
AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1 \
  "$BUILD_DIR/bench/log_bench" --s3-endpoint "http://127.0.0.1:$port" --bucket bench "$@"
