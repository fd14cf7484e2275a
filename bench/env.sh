# Sourced by the bench scripts.

# The environment a benchmark's `bursar serve` runs with, on a fresh SQLite database in the
# directory "$1" (or BENCH_DATABASE_URL), listening on port "$2".
bench_env() {
  export BURSAR_DATABASE_URL=${BENCH_DATABASE_URL:-sqlite://$1/bench.db}
  export BURSAR_MASTER_KEYS="bench:$(head -c 32 /dev/urandom | base64)"
  export STRIPE_WEBHOOK_SECRET=whsec_bench_secret
  export BURSAR_LISTEN=127.0.0.1:$2
  export BURSAR_PUBLIC_URL=http://$BURSAR_LISTEN
  export RUST_LOG=warn
}

# Waits until the server at URL "$1" answers; fails the script if it never does.
wait_up() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return; sleep 0.1; done
  echo "server at $1 did not start" >&2
  exit 1
}
