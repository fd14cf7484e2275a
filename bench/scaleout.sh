#!/usr/bin/env bash
# Scale-out proof: `bursar serve` processes on one PostgreSQL database under signed webhook load.
#
#   BENCH_POSTGRES_URL=postgres://user:pw@host:port/postgres bench/scaleout.sh [EVENTS] [CONCURRENCY]
#
# 1. One process takes EVENTS events (default 60,000, 3 KB, 64 in flight): its throughput.
# 2. Three processes on a second database take EVENTS events spread over them; a third of the
#    way in, one is killed with SIGKILL. Every event that got a 2xx must be in the inbox once,
#    applied, by the two processes left (the killed one's claimed events are taken over when
#    their lease runs out).
# Prints acked events/s for one and for three processes, then the check; exits 1 if an
# acknowledged event is missing, unapplied or stored twice.
#
# BENCH_POSTGRES_URL names a server where the script may create and drop its two databases
# (`bursar_scaleout_1`, `bursar_scaleout_3`). BURSAR_BIN runs that binary instead of building a
# release one (CI runs the suite's debug build with small sizes: `BURSAR_BIN=target/debug/bursar
# bench/scaleout.sh 3000`).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-60000}
concurrency=${2:-64}
server=${BENCH_POSTGRES_URL:?set BENCH_POSTGRES_URL to a PostgreSQL server (a URL of its postgres database)}
if [ -z "${BURSAR_BIN:-}" ]; then
  cargo build --release -q --bin bursar
  BURSAR_BIN=target/release/bursar
fi
work=$(mktemp -d /tmp/bursar-scaleout.XXXXXX)
. bench/env.sh
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18090}

# The URL of database $1 on the same server (its query string, e.g. sslmode, kept).
db_url() {
  local base=${server%%\?*} query=
  [ "$server" != "$base" ] && query="?${server#*\?}"
  echo "${base%/*}/$1$query"
}
# Makes database $1 afresh and migrates it; its URL is left in $db.
fresh_db() {
  PGOPTIONS='--client-min-messages=warning' psql -q "$server" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  db=$(db_url "$1")
  BENCH_DATABASE_URL=$db bench_env "$work" "$port"
  "$BURSAR_BIN" migrate >/dev/null
  urls=()
}

# Starts `bursar serve` number $1 on database $2; its pid goes to pids[], its URL to urls[].
start() {
  local n=$1 url=http://127.0.0.1:$((port + $1))
  BENCH_DATABASE_URL=$2 bench_env "$work" $((port + n))
  export BURSAR_WORKER_LEASE_SECS=3 BURSAR_WORKER_EVENT_TIMEOUT_SECS=1
  "$BURSAR_BIN" serve 2>"$work/server-$n.log" &
  pids+=("$!")
  wait_up "$url/healthz"
  urls+=(--url "$url")
}

# Sends the load to urls[], writing acked ids to $1; prints the generator's figures.
load() {
  "$BURSAR_BIN" bench-ingest "${urls[@]}" --events "$events" --concurrency "$concurrency" \
    --size 3072 --no-wait --acked "$1" | tee "$1.out"
}
rate() { awk '/ack throughput/{print $3}' "$1.out"; }

# Waits until the inbox of database $1 has nothing left to apply; then checks the acked ids in
# file $2: each is in the inbox exactly once, applied.
check() {
  local db=$1 acked=$2 unfinished
  for _ in $(seq 600); do
    unfinished=$(psql -tA "$db" -c "SELECT COUNT(*) FROM events WHERE status NOT IN ('applied', 'ignored')")
    [ "$unfinished" = 0 ] && break
    sleep 0.1
  done
  psql -q "$db" -c "CREATE TEMP TABLE acked (event_id TEXT)" \
    -c "\\copy acked FROM '$acked'" \
    -c "\\pset tuples_only on" -c "\\pset format unaligned" \
    -c "SELECT COUNT(*) AS acked,
               COUNT(*) FILTER (WHERE n = 1 AND applied = 1) AS applied_once,
               COUNT(*) FILTER (WHERE n = 0) AS missing,
               COUNT(*) FILTER (WHERE n > 1) AS stored_twice,
               COUNT(*) FILTER (WHERE n = 1 AND applied = 0) AS unapplied
          FROM (SELECT a.event_id, COUNT(e.seq) AS n,
                       COUNT(e.seq) FILTER (WHERE e.status = 'applied') AS applied
                  FROM acked a LEFT JOIN events e ON e.event_id = a.event_id GROUP BY a.event_id) t" \
    | tee "$work/check"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; events: $events; concurrency: $concurrency; 3,072-byte random bodies"

echo "== one process"
fresh_db bursar_scaleout_1
one=$db
start 0 "$one"
load "$work/one"
check "$one" "$work/one" >/dev/null
IFS='|' read -r acked applied missing twice unapplied < <(tail -n 1 "$work/check")
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()

echo "== three processes, one killed with SIGKILL a third of the way in"
fresh_db bursar_scaleout_3
three=$db
for n in 1 2 3; do start "$n" "$three"; done
victim=${pids[0]}
load "$work/three" &
loader=$!
# A third of the events acked by the database's count, then the kill.
for _ in $(seq 3000); do
  stored=$(psql -tA "$three" -c "SELECT COUNT(*) FROM events")
  [ "$stored" -ge $((events / 3)) ] && break
  sleep 0.05
done
kill -9 "$victim"
echo "killed process 1 (pid $victim) with $stored events stored"
wait "$loader"
check "$three" "$work/three" >/dev/null
IFS='|' read -r acked3 applied3 missing3 twice3 unapplied3 < <(tail -n 1 "$work/check")

awk -v a="$(rate "$work/one")" -v b="$(rate "$work/three")" 'BEGIN {
  printf "== acked events/s: one process %d, three processes %d (one killed mid-run): %.2f×\n", a, b, b / a
}'
echo "one process:    $acked acked, $applied applied exactly once, $missing missing, $twice stored twice, $unapplied unapplied"
echo "three processes: $acked3 acked, $applied3 applied exactly once, $missing3 missing, $twice3 stored twice, $unapplied3 unapplied"
if [ "$applied" != "$acked" ] || [ "$applied3" != "$acked3" ] || [ "$acked3" = 0 ]; then
  echo "FAIL: an acknowledged event is missing, unapplied or stored twice" >&2
  exit 1
fi
echo "OK: every acknowledged event applied exactly once"
