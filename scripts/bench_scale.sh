#!/usr/bin/env bash
# Scale benchmark (issue 12; a benchmark, not a test). Builds DuckDB
# databases of 1 and 4 GB from SQL (range(), random()), cached in
# .cache/bench-scale/ between runs, and runs each section on each of them.
#
#   BENCH_SCALE_MAX_GB   largest database (default 1; 4 adds the 4 GB one, 16
#                        a 16 GB one; the disk needs about 4x that free)
#   BENCH_SCALE_MB       sizes in MB instead, space-separated (e.g. "100", a
#                        quick check of the script itself)
#   BENCH_SCALE_SECTIONS sections to run, space-separated (default: all)
#   BENCH_SCALE_RUNS     runs per measurement, alternating the compared
#                        commands (default 2; the machine is shared)
#   BENCH_SCALE_DIR      work directory (default: a fresh one under $TMPDIR
#                        or /tmp, removed at exit)
#
# Sections (each a pair of functions: section_NAME MB DB appends table rows
# for one database, report_NAME prints the table; add a name to SECTIONS):
#   restore  the store's size and the snapshot's (upload's) time, plain hadbp
#            v1 and zstd; restore throughput from the local-directory store
#            beside `dd bs=1M conv=fdatasync` of the same file in the same run.
#   s3       restore from a local s3rver (started here, scripts/s3rver.sh)
#            beside curl fetching the same object with 4 parallel ranged
#            GETs into files that are then fsynced, alternating.
#   checkpoint  CHECKPOINT latency p50/p99/max after a 100-row UPDATE,
#            DuckDB alone and replicated (zstd, a snapshot due every 10
#            checkpoints, compacted in the background), the two alternating
#            in one process (duckdb_bench --scale checkpoint).
#   attach   open_replicated (what ATTACH runs) after a clean close and with
#            no clean-close record (what kill -9 leaves), beside DuckDB alone
#            (attach_bench --db).
#   rss      peak RSS of a leader minus DuckDB alone's, one process each, on
#            the same workload (duckdb_bench --scale rss).
#   restic   the eight-step workload of issue 12 on a new table inside the
#            database: bytes shipped per step, plain v1 and zstd, and the
#            CHECKPOINT plus upload time, beside restic's repository growth
#            backing up the same file after each step (installs restic;
#            duckdb_bench --scale steps).
#
#   BENCH_SCALE_CHECKPOINTS  checkpoints per side in `checkpoint` (default 200)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
MAX_GB=${BENCH_SCALE_MAX_GB:-1}
RUNS=${BENCH_SCALE_RUNS:-2}
SECTIONS=(checkpoint attach rss restic restore s3)
[[ -n ${BENCH_SCALE_SECTIONS:-} ]] && read -r -a SECTIONS <<<"$BENCH_SCALE_SECTIONS"
CACHE=$ROOT/.cache/bench-scale

# ---- setup ---------------------------------------------------------------

setup() {
  cd "$ROOT"
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    bash scripts/setup.sh
    bash scripts/fetch_duckdb.sh
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$BUILD_DIR" -j2 --target duckblock duckdb_bench attach_bench >/dev/null
  CLI=$BUILD_DIR/cli/duckblock
  DUCKDB_BENCH=$BUILD_DIR/bench/duckdb_bench
  ATTACH_BENCH=$BUILD_DIR/bench/attach_bench
  mkdir -p "$CACHE"
  WORK=${BENCH_SCALE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/duckblock-scale-XXXXXX")}
  mkdir -p "$WORK"
  [[ -n ${BENCH_SCALE_DIR:-} ]] || trap cleanup EXIT
}

S3_PID=""
cleanup() {
  [[ -z $S3_PID ]] || bash "$ROOT/scripts/s3rver.sh" stop "$S3_PID" || true
  [[ -n ${BENCH_SCALE_DIR:-} ]] || rm -rf "$WORK"
}

# ---- helpers -------------------------------------------------------------

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }
kb() { awk -v b="$1" 'BEGIN { if (b >= 1e6) printf "%.1f MB", b / 1e6; else printf "%.0f KB", b / 1e3 }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# The smaller of a time and the best so far ("" for none yet).
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
# Seconds a command takes (stdout discarded; it must succeed).
timed() {
  local t0 t1
  t0=$(now)
  "$@" >/dev/null || return 1
  t1=$(now)
  secs "$t0" "$t1"
}
# The database of about MB megabytes, built once and cached.
database() {
  local size=$1 db=$CACHE/db-${1}mb.duckdb
  if [[ ! -f $db ]]; then
    echo "bench_scale: building $db (about $size MB, cached for later runs)" >&2
    "$DUCKDB_BENCH" --make-db "$db" --size-mb "$size" >&2
  fi
  echo "$db"
}

# A fresh copy of the database at $WORK/NAME.duckdb (sections change their copies).
copy_db() {
  rm -f "$WORK/$2.duckdb" "$WORK/$2.duckdb.wal"
  cp "$1" "$WORK/$2.duckdb"
  echo "$WORK/$2.duckdb"
}
# The value of KEY in a `key=value key=value` line (`key=a b|key=c` if values hold spaces).
field() {
  local sep=' '
  [[ $2 == *'|'* ]] && sep='|'
  tr "$sep" '\n' <<<"$2" | sed -n "s/^$1=//p"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- section: checkpoint -------------------------------------------------

CHECKPOINT_ROWS=()

section_checkpoint() {
  local size=$1 db=$2 n=${BENCH_SCALE_CHECKPOINTS:-200} line load
  local plain replicated
  plain=$(copy_db "$db" plain) replicated=$(copy_db "$db" replicated)
  line=$("$DUCKDB_BENCH" --scale checkpoint --db "$plain" --db2 "$replicated" --latency-runs "$n" --every 10 \
    --dir "$WORK/bench")
  load=$(loadavg)
  rm -rf "$WORK/bench" "$plain" "$replicated"
  echo "bench_scale: $size MB checkpoint: $line (load $load)" >&2
  CHECKPOINT_ROWS+=("| $(mb "$(stat -c %s "$db")") MB | $(field off_p50 "$line") / $(field off_p99 "$line") / $(field off_max "$line") ms | $(field on_p50 "$line") / $(field on_p99 "$line") / $(field on_max "$line") ms | $(ratio "$(field on_p99 "$line")" "$(field off_p99 "$line")")x | $(field last_compacted "$line") / $(field coalesced "$line") | $load |")
}

report_checkpoint() {
  echo
  echo "CHECKPOINT after a 100-row UPDATE, ${BENCH_SCALE_CHECKPOINTS:-200} per side, alternating (a snapshot due every 10, compacted in the background):"
  echo "| database | DuckDB alone p50 / p99 / max | replicated p50 / p99 / max | p99 replicated / alone | last snapshot built / due ones coalesced | load average after |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${CHECKPOINT_ROWS[@]}"
}

# ---- section: attach -----------------------------------------------------

ATTACH_ROWS=()

section_attach() {
  local size=$1 db=$2 copy line
  copy=$(copy_db "$db" attach)
  line=$("$ATTACH_BENCH" --db "$copy" --dir "$WORK/attach" --runs "$((RUNS < 3 ? 3 : RUNS))" | tail -1)
  rm -rf "$WORK/attach" "$copy"
  echo "bench_scale: $size MB attach: $line" >&2
  ATTACH_ROWS+=("| $(mb "$(stat -c %s "$db")") MB | $(field plain_p50 "$line") ms | $(field clean_p50 "$line") ms (max $(field clean_max "$line")) | $(field kill_p50 "$line") ms (max $(field kill_max "$line")) |")
}

report_attach() {
  echo
  echo "Open time (open_replicated, what ATTACH runs; page cache warm; p50 of $((RUNS < 3 ? 3 : RUNS)) alternating runs):"
  echo "| database | DuckDB alone | after a clean close | after kill -9 (no clean-close record: whole file compared) |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ATTACH_ROWS[@]}"
}

# ---- section: rss --------------------------------------------------------

RSS_ROWS=()

# Peak RSS in KiB of one run of the workload, replicated (1) or not (0).
rss_once() {
  local copy line
  copy=$(copy_db "$1" rss)
  line=$("$DUCKDB_BENCH" --scale rss --db "$copy" --replicated "$2" --checkpoints 100 --every 10 --dir "$WORK/bench")
  rm -rf "$WORK/bench" "$copy"
  field peak_rss_kib "$line"
}

section_rss() {
  local size=$1 db=$2 i p r p_best="" r_best=""
  for ((i = 0; i < RUNS; i++)); do
    p=$(rss_once "$db" 0)
    r=$(rss_once "$db" 1)
    echo "bench_scale: $size MB rss run $i: DuckDB alone $p KiB, replicated $r KiB" >&2
    p_best=$(best "$p" "$p_best") r_best=$(best "$r" "$r_best")
  done
  RSS_ROWS+=("| $(mb "$(stat -c %s "$db")") MB | $((p_best / 1024)) MiB | $((r_best / 1024)) MiB | $(((r_best - p_best) / 1024)) MiB |")
}

report_rss() {
  echo
  echo "Peak RSS, 100 small updates and a 1% update, one CHECKPOINT each (replicated: the seq-0 snapshot at open, a snapshot due every 10 compacted in the background; smallest of $RUNS runs each):"
  echo "| database | DuckDB alone | replicated | added by duckblock |"
  echo "|---|---|---|---|"
  printf '%s\n' "${RSS_ROWS[@]}"
}

# ---- section: restic -----------------------------------------------------

RESTIC_ROWS=()

section_restic() {
  local size=$1 db=$2 plain zstd line
  command -v restic >/dev/null || apt-get install -y restic >&2
  export RESTIC_PASSWORD=duckblock-bench
  rm -rf "$WORK/restic-repo"
  restic init -r "$WORK/restic-repo" --quiet >/dev/null
  plain=$(copy_db "$db" steps-plain) zstd=$(copy_db "$db" steps-zstd)
  RESTIC_ROWS+=("| **$(mb "$(stat -c %s "$db")") MB database** | | | | |")
  while IFS= read -r line; do
    echo "bench_scale: $size MB restic: $line" >&2
    RESTIC_ROWS+=("| $(field step "$line") | $(kb "$(field none "$line")") | $(kb "$(field zstd "$line")") ($(field zstd_s "$line") s) | $(kb "$(field restic "$line")") ($(field restic_s "$line") s) | $(ratio "$(field zstd "$line")" "$(field restic "$line")")x |")
  done < <("$DUCKDB_BENCH" --scale steps --db "$plain" --db2 "$zstd" --restic-repo "$WORK/restic-repo" --dir "$WORK/bench")
  rm -rf "$WORK/bench" "$WORK/restic-repo" "$plain" "$zstd"
}

report_restic() {
  echo
  echo "Bytes shipped per step (store growth, local-directory stores; time: CHECKPOINT and upload) beside restic $(restic version | cut -d' ' -f2) backing up the same file after each step (repository growth; time: the backup):"
  echo "| step | plain v1 | zstd (time) | restic (time) | zstd / restic |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${RESTIC_ROWS[@]}"
}

# ---- section: restore ----------------------------------------------------

RESTORE_ROWS=()

# dd of the same bytes, durable, in this run (the page cache holds the input
# either way: both read it warm).
dd_once() {
  rm -f "$WORK/dd.bin"
  sync
  timed dd if="$1" of="$WORK/dd.bin" bs=1M conv=fdatasync status=none
  rm -f "$WORK/dd.bin"
}

restore_once() {
  local store=$1 out=$WORK/restored.duckdb
  rm -f "$out" "$out.duckblock"
  sync
  timed "$CLI" restore --store "file://$store" --db scale --to "$out" -q
}

section_restore() {
  local size=$1 db=$2 bytes comp store stored snap_s dd_best restore_best r d i
  bytes=$(stat -c %s "$db")
  for comp in none zstd; do
    store=$WORK/store-$comp
    rm -rf "$store" "$WORK/spool"
    sync
    snap_s=$(timed "$CLI" snapshot "$db" --store "file://$store" --db scale --spool "$WORK/spool" \
      --compression "$comp" -q)
    stored=$(du -sb "$store" | cut -f1)
    rm -rf "$WORK/spool"
    # Alternating: dd, restore, dd, restore...; the best of each.
    dd_best="" restore_best=""
    for ((i = 0; i < RUNS; i++)); do
      d=$(dd_once "$db")
      r=$(restore_once "$store")
      dd_best=$(best "$d" "$dd_best") restore_best=$(best "$r" "$restore_best")
      echo "bench_scale: $size MB $comp run $i: dd ${d} s, restore ${r} s" >&2
    done
    cmp -s "$db" "$WORK/restored.duckdb" || { echo "bench_scale: restored file differs from $db" >&2; exit 1; }
    rm -f "$WORK/restored.duckdb" "$WORK/restored.duckdb.duckblock"
    rm -rf "$store"
    RESTORE_ROWS+=("| $(mb "$bytes") MB | $comp | $(mb "$stored") MB | ${snap_s} s | $(mbps "$bytes" "$restore_best") MB/s | $(mbps "$bytes" "$dd_best") MB/s | $(ratio "$dd_best" "$restore_best")x |")
  done
}

report_restore() {
  echo
  echo "Restore, local-directory store (best of $RUNS alternating runs):"
  echo "| database | segments | store | snapshot (upload) time | restore | dd conv=fdatasync | restore / dd |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${RESTORE_ROWS[@]}"
}

# ---- section: s3 ---------------------------------------------------------

S3_ROWS=()

s3_start() {
  [[ -z $S3_PID ]] || return 0
  bash "$ROOT/scripts/s3rver.sh" install >&2
  read -r S3_PORT S3_PID < <(bash "$ROOT/scripts/s3rver.sh" start "$WORK/s3data" scale --parent $$)
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
}

# curl: the object in 4 ranges fetched in parallel, each into its own file,
# then all fsynced (what a restore's durable write pays too).
curl_ranged() {
  local url=$1 size=$2 parts=4 i lo hi pids=()
  for ((i = 0; i < parts; i++)); do
    lo=$((size * i / parts)) hi=$((size * (i + 1) / parts - 1))
    curl -s -f --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -r "$lo-$hi" "$url" -o "$WORK/part$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "bench_scale: curl failed on $url" >&2; return 1; }; done
  [[ $(stat -c %s "$WORK"/part* | awk '{ n += $1 } END { print n }') == "$size" ]] || { echo "bench_scale: curl fetched the wrong size" >&2; return 1; }
  sync "$WORK"/part*
  rm -f "$WORK"/part*
}

section_s3() {
  local size=$1 db=$2 bytes key obj c r r4 c_best="" r_best="" r4_best="" out=$WORK/restored.duckdb i
  s3_start
  bytes=$(stat -c %s "$db")
  local s3=(--store "s3://scale/db$size/" --endpoint "http://127.0.0.1:$S3_PORT" --db scale)
  rm -rf "$WORK/spool"
  "$CLI" snapshot "$db" "${s3[@]}" --spool "$WORK/spool" -q >/dev/null
  rm -rf "$WORK/spool"
  read -r key obj < <("$CLI" ls "${s3[@]}" --json |
    python3 -c 'import json, sys; s = json.load(sys.stdin)["snapshots"][-1]; print(s["key"], s["size"])')
  local url=http://127.0.0.1:$S3_PORT/scale/db$size/$key
  for ((i = 0; i < RUNS; i++)); do
    c=$(timed curl_ranged "$url" "$obj")
    rm -f "$out" "$out.duckblock"
    sync
    r=$(timed "$CLI" restore "${s3[@]}" --to "$out" -q)
    cmp -s "$db" "$out" || { echo "bench_scale: restored file differs from $db" >&2; exit 1; }
    rm -f "$out" "$out.duckblock"
    sync
    # The same with 4 parallel ranged GETs (the default for remote S3; a
    # loopback endpoint reads with one unless told otherwise).
    r4=$(DUCKBLOCK_S3_DOWNLOAD_STREAMS=4 timed "$CLI" restore "${s3[@]}" --to "$out" -q)
    cmp -s "$db" "$out" || { echo "bench_scale: restored file differs from $db" >&2; exit 1; }
    rm -f "$out" "$out.duckblock"
    c_best=$(best "$c" "$c_best") r_best=$(best "$r" "$r_best") r4_best=$(best "$r4" "$r4_best")
    echo "bench_scale: $size MB s3 run $i: curl ${c} s, restore ${r} s (1 stream), ${r4} s (4 streams)" >&2
  done
  S3_ROWS+=("| $(mb "$bytes") MB | $(mb "$obj") MB | $(mbps "$obj" "$r_best") MB/s ($(ratio "$c_best" "$r_best")x) | $(mbps "$obj" "$r4_best") MB/s ($(ratio "$c_best" "$r4_best")x) | $(mbps "$obj" "$c_best") MB/s |")
}

report_s3() {
  echo
  echo "Restore from s3rver on 127.0.0.1 (zstd segments; object bytes per second; best of $RUNS alternating runs):"
  echo "| database | object | restore, 1 stream (/ curl) | restore, 4 streams (/ curl) | curl, 4 parallel ranged GETs |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${S3_ROWS[@]}"
}

# ---- main ----------------------------------------------------------------

main() {
  setup
  local sizes=() size db s
  if [[ -n ${BENCH_SCALE_MB:-} ]]; then
    read -r -a sizes <<<"$BENCH_SCALE_MB"
  else
    for gb in 1 4 16; do (( gb <= MAX_GB )) && sizes+=($((gb * 1000))); done
  fi
  for size in "${sizes[@]}"; do
    db=$(database "$size")
    for s in "${SECTIONS[@]}"; do "section_$s" "$size" "$db"; done
  done
  echo "bench_scale: $(nproc) CPUs, load average $(loadavg)"
  for s in "${SECTIONS[@]}"; do "report_$s"; done
}

main "$@"
