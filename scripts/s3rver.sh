#!/usr/bin/env bash
# The S3-protocol server the tests and the benchmark run against: s3rver
# (@20minutes/s3rver@5.0.0 from npm), which checks SigV4 signatures. It is
# installed once into .cache/s3rver (gitignored) next to @aws-sdk/client-s3,
# the official client the interop test uses.
#
#   scripts/s3rver.sh install          install (idempotent, cached)
#   scripts/s3rver.sh start DIR [BUCKET...] [--parent PID]
#                                      start on 127.0.0.1 on a free port with
#                                      DIR (emptied first) as its storage and
#                                      the BUCKETs created; prints "PORT PID"
#                                      once it answers (log in DIR.log). With
#                                      --parent, the server is stopped when
#                                      process PID ends (a crashed test).
#   scripts/s3rver.sh stop PID         stop a server this script started
#   scripts/s3rver.sh fixture-start DIR / fixture-stop DIR
#                                      for ctest: one fresh server (bucket
#                                      duckblock-test) for the whole run,
#                                      "PORT PID" in DIR/server
#   scripts/s3rver.sh dir              print the install directory
#
# Its published package lacks bin/, so it runs from lib/cli.js (which only
# exports parseAsync). Credentials: access key S3RVER, secret S3RVER. Node needs
# --openssl-legacy-provider: without it s3rver's MD5-based continuation
# tokens fail and paginated listings answer 500.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.cache/s3rver"
S3RVER_VERSION=5.0.0
SDK_VERSION=3.1175.0

install() {
  mkdir -p "$DIR"
  # One installer at a time (tests start servers in parallel).
  exec 9>"$DIR/.lock"
  flock 9
  if [[ -f "$DIR/.installed-$S3RVER_VERSION-$SDK_VERSION" &&
        -f "$DIR/node_modules/@20minutes/s3rver/lib/cli.js" ]]; then
    exec 9>&-  # servers started later must not inherit (and hold) the lock
    return 0
  fi
  command -v npm >/dev/null || bash "$ROOT/scripts/setup.sh"
  [[ -f "$DIR/package.json" ]] || echo '{"name":"duckblock-s3-test","private":true}' >"$DIR/package.json"
  echo "s3rver.sh: installing @20minutes/s3rver@$S3RVER_VERSION and @aws-sdk/client-s3@$SDK_VERSION into $DIR" >&2
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error \
     "@20minutes/s3rver@$S3RVER_VERSION" "@aws-sdk/client-s3@$SDK_VERSION" >&2)
  touch "$DIR/.installed-$S3RVER_VERSION-$SDK_VERSION"
  exec 9>&-
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start() {
  local data="${1:?usage: s3rver.sh start DIR [BUCKET...]}"
  shift
  local buckets=() parent=""
  while (($#)); do
    if [[ $1 == --parent ]]; then parent=$2; shift 2; continue; fi
    buckets+=(--configure-bucket "$1")
    shift
  done
  install
  rm -rf "$data"
  mkdir -p "$data"
  local tries
  for tries in 1 2 3 4 5; do
    local port
    port=$(free_port)
    # setsid: the server gets its own process group so stop can end it and
    # nothing else.
    setsid node --openssl-legacy-provider -e \
      'require(process.argv[1]).parseAsync(["node", "s3rver"].concat(process.argv.slice(2))).catch(e => { console.error(e); process.exit(1) })' \
      "$DIR/node_modules/@20minutes/s3rver/lib/cli.js" \
      --address 127.0.0.1 --port "$port" --directory "$data" --silent "${buckets[@]}" \
      >"$data.log" 2>&1 </dev/null &
    local pid=$!
    local i
    for i in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
        if [[ -n $parent ]]; then
          # A watchdog in the server's process group: it goes when the
          # server is stopped, and stops the server if the parent dies first.
          setsid bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
                          kill -- "-$2" 2>/dev/null' _ "$parent" "$pid" >/dev/null 2>&1 </dev/null &
        fi
        echo "$port $pid"
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true  # lost a race for the port: try another
  done
  echo "s3rver.sh: s3rver did not start; log: $data.log" >&2
  cat "$data.log" >&2 || true
  return 1
}

stop() {
  local pid="${1:?usage: s3rver.sh stop PID}"
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
}

fixture_start() {
  local dir="${1:?usage: s3rver.sh fixture-start DIR}"
  fixture_stop "$dir"
  mkdir -p "$dir"
  # The parent is ctest: if it dies without running fixture-stop, the
  # watchdog ends the server.
  start "$dir/data" duckblock-test --parent "$PPID" >"$dir/server.tmp"
  mv "$dir/server.tmp" "$dir/server"
  echo "s3rver for the tests: http://127.0.0.1:$(cut -d' ' -f1 "$dir/server")"
}

fixture_stop() {
  local dir="${1:?usage: s3rver.sh fixture-stop DIR}"
  if [[ -f "$dir/server" ]]; then
    stop "$(cut -d' ' -f2 "$dir/server")"
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  fixture-start) shift; fixture_start "$@" ;;
  fixture-stop) shift; fixture_stop "$@" ;;
  dir) echo "$DIR" ;;
  *) sed -n '2,/^set -euo/{/^#/p}' "$0" >&2; exit 2 ;;
esac
