#!/usr/bin/env bash
# Webhook ingestion benchmark: starts a release `bursar serve` on a fresh database, drives it with
# `bursar bench-ingest`, and reports the server's peak RSS.
#
#   bench/ingest.sh [EVENTS] [CONCURRENCY]            # SQLite in a temp dir
#   BENCH_DATABASE_URL=postgres://… bench/ingest.sh    # an empty PostgreSQL database
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
concurrency=${2:-64}
cargo build --release -q
work=$(mktemp -d /tmp/bursar-bench.XXXXXX)
export BURSAR_DATABASE_URL=${BENCH_DATABASE_URL:-sqlite://$work/bench.db}
export BURSAR_MASTER_KEYS="bench:$(head -c 32 /dev/urandom | base64)"
export STRIPE_WEBHOOK_SECRET=whsec_bench_secret
export BURSAR_LISTEN=127.0.0.1:${BENCH_PORT:-18080}
export BURSAR_PUBLIC_URL=http://$BURSAR_LISTEN
export RUST_LOG=warn
target/release/bursar migrate >/dev/null
target/release/bursar serve 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "$BURSAR_PUBLIC_URL/healthz" >/dev/null && break; sleep 0.1; done
echo "engine: ${BURSAR_DATABASE_URL%%:*}  events: $events  concurrency: $concurrency  machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
/usr/bin/time -f "load generator CPU: %U s user, %S s sys" target/release/bursar bench-ingest --events "$events" --concurrency "$concurrency"
echo "server peak RSS: $(awk '/VmHWM/{printf "%.1f MB", $2/1024}' /proc/$server/status), server CPU: $(awk '{printf "%.1f s", ($14+$15)/100}' /proc/$server/stat)"
