#!/usr/bin/env bash
# Apply capacity: the worker alone, on events preloaded into a fresh inbox (no HTTP traffic).
#
#   bench/apply.sh [EVENTS] [SIZE]                      # SQLite in a temp dir
#   BENCH_DATABASE_URL=postgres://… bench/apply.sh      # an empty PostgreSQL database
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
size=${2:-3072}
cargo build --release -q --bin bursar
work=$(mktemp -d /tmp/bursar-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export BURSAR_DATABASE_URL=${BENCH_DATABASE_URL:-sqlite://$work/bench.db}
export BURSAR_MASTER_KEYS="bench:$(head -c 32 /dev/urandom | base64)"
export RUST_LOG=warn
echo "machine: $(nproc) cores; engine: ${BURSAR_DATABASE_URL%%:*}; events: $events of $size bytes"
target/release/bursar bench-apply --events "$events" --size "$size"
