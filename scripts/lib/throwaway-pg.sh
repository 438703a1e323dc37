# Sourced by scripts: start a throwaway PostgreSQL in a temp dir on a free loopback port,
# stopped and removed on exit. Never touches a system cluster.
# After `start_throwaway_pg`: $PG_BIN, $PG_PORT, $PG_DIR, and a `pg_psql` function.

ensure_pg_installed() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_dump >/dev/null; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
}

start_throwaway_pg() {
  ensure_pg_installed
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  PG_DIR=$(mktemp -d /tmp/drctl-throwaway-pg.XXXXXX)
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PG_AS=""
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DIR"; PG_AS="runuser -u postgres --"; fi
  trap stop_throwaway_pg EXIT
  $PG_AS "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
  $PG_AS "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 ${PG_EXTRA_OPTS:-}" \
    -l "$PG_DIR/log" -w start >/dev/null
}

stop_throwaway_pg() {
  [ -n "${PG_DIR:-}" ] || return 0
  $PG_AS "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

pg_psql() { "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

make_bench_db() { # name, MB — rows of ~250 bytes: text that compresses about as well as real app data
  local rows=$(( $2 * 1024 * 1024 / 250 ))
  pg_psql -c "create database $1"
  pg_psql -d "$1" -c "create table events (id bigserial primary key, at timestamptz, kind text, user_id int, body text, meta jsonb);
    insert into events (at, kind, user_id, body, meta)
    select '2026-01-01'::timestamptz + g * interval '1 second', (array['login','view','buy','logout'])[1 + g % 4], g % 50000,
           md5(g::text) || ' ' || repeat(md5((g % 997)::text), 3), jsonb_build_object('ip', '10.0.' || (g % 255) || '.' || (g % 7), 'ok', g % 3 = 0)
    from generate_series(1, $rows) g;" >/dev/null
  echo "  $1: $(pg_psql -c "select pg_size_pretty(pg_database_size('$1'))")"
}

# For benchmarks: a release build of drctl ($DRCTL), a private $WORK dir and a throwaway server
# tuned for bulk loads, all removed on exit.
start_bench() {
  cargo build --release --quiet
  DRCTL="${CARGO_TARGET_DIR:-$PWD/target}/release/drctl"
  WORK=$(mktemp -d /tmp/drctl-bench.XXXXXX)
  PG_EXTRA_OPTS="-c shared_buffers=256MB -c fsync=off -c max_wal_size=4GB"
  start_throwaway_pg
  trap 'stop_throwaway_pg; rm -rf "$WORK"' EXIT
}
