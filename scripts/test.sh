#!/usr/bin/env bash
# Lints, then runs the whole test suite on SQLite, then again on a throwaway PostgreSQL cluster.
# PostgreSQL: uses BURSAR_TEST_POSTGRES_URL if set; otherwise starts a temporary server from the
# installed binaries (Debian's postgresql package) that requires TLS and a password, and runs the
# suite over TLS (sslmode=require). Set BURSAR_TEST_SKIP_POSTGRES=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests on SQLite (and the local Stripe's own tests)"
cargo test --workspace --all-targets

if [ "${BURSAR_TEST_SKIP_POSTGRES:-}" = 1 ]; then
  echo "== PostgreSQL run skipped (BURSAR_TEST_SKIP_POSTGRES=1)"
  exit 0
fi

pg_url="${BURSAR_TEST_POSTGRES_URL:-}"
if [ -z "$pg_url" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bindir" ] || { echo "PostgreSQL is not installed (apt-get install -y postgresql), or set BURSAR_TEST_POSTGRES_URL" >&2; exit 1; }
  pgdir=$(mktemp -d /tmp/bursar-pg.XXXXXX)
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$pgdir"
  run_pg "$bindir/initdb" -D "$pgdir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  # Like a managed server: TCP clients must use TLS (a throwaway self-signed certificate) and a
  # password; plain TCP is refused.
  openssl req -new -x509 -days 2 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$pgdir/data/server.key" -out "$pgdir/data/server.crt" >/dev/null 2>&1
  chmod 600 "$pgdir/data/server.key"
  [ "$(id -u)" = 0 ] && chown postgres "$pgdir/data/server.key" "$pgdir/data/server.crt" "$pgdir/data"
  printf '%s\n' 'local all all trust' 'hostssl all all 127.0.0.1/32 scram-sha-256' \
    'hostnossl all all 127.0.0.1/32 reject' > "$pgdir/data/pg_hba.conf"
  # A port below the kernel's ephemeral range (32768+), so no outgoing connection holds it; one
  # taken anyway (another cluster) means another try on another port.
  trap 'run_pg "$bindir/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
  started=
  for _ in 1 2 3 4 5; do
    port=$(( 20000 + RANDOM % 12000 ))
    if run_pg "$bindir/pg_ctl" -D "$pgdir/data" -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300 -c ssl=on" -l "$pgdir/log" -w start >/dev/null; then
      started=1
      break
    fi
  done
  [ -n "$started" ] || { cat "$pgdir/log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
  password=$(openssl rand -hex 16)
  run_pg "$bindir/psql" -q -h "$pgdir" -p "$port" -U postgres -c "ALTER USER postgres PASSWORD '$password'" >/dev/null
  pg_url="postgres://postgres:$password@127.0.0.1:$port/postgres?sslmode=require"
fi

echo "== tests on PostgreSQL"
BURSAR_TEST_DATABASE_URL="$pg_url" cargo test --all-targets

echo "== scale-out: three processes on one PostgreSQL, one killed mid-load (small size)"
BENCH_POSTGRES_URL="$pg_url" BURSAR_BIN=target/debug/bursar bench/scaleout.sh 3000
