#!/usr/bin/env bash
# Two builds of Bursar under the same load, alternated, so a change worth 5–10% shows through
# these VMs' 20–30% run-to-run variance (compare the medians, not single runs).
#
#   cp target/release/bursar /tmp/bursar-a      # before the change
#   … change, cargo build --release …
#   bench/ab.sh /tmp/bursar-a target/release/bursar [ROUNDS] [EVENTS]
#
# Each run: a fresh SQLite database (or BENCH_DATABASE_URL, recreated by you between runs),
# `serve` from that build, and `bench-ingest` (64 in flight, 3 KB) from build A. Prints
# acked/s, p99 and the server's CPU time per run, then the medians per build.
set -euo pipefail
. "$(dirname "$0")/env.sh"
a=$1 b=$2 rounds=${3:-4} events=${4:-60000}
# One load generator for both sides (BENCH_LOADGEN, else build A's), so only the server differs.
loadgen=${BENCH_LOADGEN:-$a}
out=$(mktemp /tmp/bursar-ab.XXXXXX)
trap 'rm -f "$out"' EXIT

run() {
  local bin=$1 work server
  work=$(mktemp -d /tmp/bursar-ab.XXXXXX)
  bench_env "$work" "${BENCH_PORT:-18082}"
  if curl -s -o /dev/null "$BURSAR_PUBLIC_URL/healthz"; then
    echo "something already listens on $BURSAR_LISTEN" >&2; exit 1
  fi
  "$bin" migrate >/dev/null
  "$bin" serve 2>"$work/server.log" &
  server=$!
  wait_up "$BURSAR_PUBLIC_URL/healthz"
  "$loadgen" bench-ingest --events "$events" --concurrency 64 --size 3072 >"$work/out"
  local cpu
  cpu=$(awk '{print ($14+$15)*10}' "/proc/$server/stat")
  kill "$server"; wait "$server" 2>/dev/null || true
  awk -v cpu="$cpu" '/ack throughput/{t=$3} /ack latency/{p=$10} END{print t, p, cpu}' "$work/out"
  rm -rf "$work"
}

for i in $(seq "$rounds"); do
  for side in a b; do
    bin=$a; [ "$side" = b ] && bin=$b
    result=$(run "$bin")
    echo "$side $result" | tee -a "$out"
  done
done
echo "== medians over $rounds runs each: acked/s, p99 ms, server CPU ms"
for side in a b; do
  awk -v s="$side" '$1 == s {print $2, $3, $4}' "$out" | awk -v s="$side" '
    { t[NR]=$1; p[NR]=$2; c[NR]=$3 }
    function med(x, n,   i, j, v) {   # median of x[1..n], sorted in place
      for (i = 2; i <= n; i++) { v = x[i]; for (j = i - 1; j > 0 && x[j] > v; j--) x[j+1] = x[j]; x[j+1] = v }
      return n % 2 ? x[(n+1)/2] : (x[n/2] + x[n/2+1]) / 2
    }
    END { printf "%s: %d acked/s, p99 %.2f ms, CPU %d ms\n", s, med(t, NR), med(p, NR), med(c, NR) }'
done
