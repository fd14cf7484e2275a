#!/usr/bin/env bash
# Webhook ingestion benchmark, as a ratio to this machine's ceiling measured in the same run.
#
#   bench/ingest.sh [EVENTS] [CONCURRENCY] [SIZE]        # SQLite in a temp dir
#   BENCH_DATABASE_URL=postgres://… bench/ingest.sh       # an empty PostgreSQL database
#
# 1. The ceiling (bench/ceiling.rs: the same server loop, router and signature check, no
#    storage) is loaded by `bursar bench-ingest` (a separate process; events signed before the
#    clock starts).
# 2. The durable ceiling (the same, but each body is appended to a file and fdatasynced before
#    its 2xx, group-committed): what storing durably costs on this machine before any database.
# 3. A release `bursar serve` on a fresh database gets the same load; then the script waits until
#    the worker has applied every event.
# It prints each one's acked/s and latencies, the ratios, and the server's peak RSS and CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-60000}
concurrency=${2:-64}
size=${3:-3072}
cargo build --release -q --bin bursar --example ceiling
work=$(mktemp -d /tmp/bursar-bench.XXXXXX)
. bench/env.sh
bench_env "$work" "${BENCH_PORT:-18080}"
ceiling_addr=127.0.0.1:${BENCH_CEILING_PORT:-18081}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
peak() { awk '/VmHWM/{printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
cpu() { awk '{printf "%.1f s", ($14+$15)/100}' "/proc/$1/stat"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; events: $events; concurrency: $concurrency; size: $size bytes"
# One of the two ceilings (extra arguments: the durable one's journal file) under the load.
reference() {
  local name=$1 ceiling; shift
  target/release/examples/ceiling "$ceiling_addr" "$STRIPE_WEBHOOK_SECRET" "$@" 2>/dev/null &
  ceiling=$!; pids+=("$ceiling")
  wait_up "http://$ceiling_addr/"
  target/release/bursar bench-ingest --url "http://$ceiling_addr" --events "$events" --concurrency "$concurrency" --size "$size" --no-wait | tee "$work/$name.out"
  echo "$name peak RSS: $(peak "$ceiling"), CPU: $(cpu "$ceiling")"
  kill "$ceiling"; wait "$ceiling" 2>/dev/null || true
}
echo "== ceiling (signature check only, no storage)"
reference ceiling
echo "== durable ceiling (signature check, each body appended to a file and fdatasynced before the 2xx, group-committed; no database)"
reference durable "$work/journal"
rm -f "$work/journal"

echo "== bursar (${BURSAR_DATABASE_URL%%:*})"
target/release/bursar migrate >/dev/null
target/release/bursar serve 2>"$work/server.log" &
server=$!; pids+=("$server")
wait_up "$BURSAR_PUBLIC_URL/healthz"
target/release/bursar bench-ingest --events "$events" --concurrency "$concurrency" --size "$size" | tee "$work/bursar.out"
echo "bursar peak RSS: $(peak "$server"), CPU: $(cpu "$server")"
rate() { awk '/ack throughput/{print $3}' "$work/$1.out"; }
awk -v b="$(rate bursar)" -v c="$(rate ceiling)" -v d="$(rate durable)" 'BEGIN {
  printf "== ratio: bursar %d / ceiling %d acked events/s = %.2f\n", b, c, b / c
  printf "   (durable ceiling %d / ceiling = %.2f; bursar / durable ceiling = %.2f)\n", d, d / c, b / d
}'
