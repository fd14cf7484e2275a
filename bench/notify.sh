#!/usr/bin/env bash
# Notification benchmark: latency from a verified Stripe webhook to the platform's receipt of
# its notification (p50/p99), and notifications delivered per second to a local receiver.
#
#   bench/notify.sh [ORDERS]        # SQLite in a temp dir; default 300 orders
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
cargo run --release -q --example notify -- "${1:-300}"
