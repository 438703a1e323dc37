#!/usr/bin/env bash
# The 60-second tour: a real backup and restore on a local default.
# Starts a throwaway PostgreSQL (temp dir, free loopback port), seeds it, backs it up with
# drctl to local fs storage under ./quickstart/, restores it with `restore --at now` into a
# new database and compares the contents. Stops the server on exit. Touches no system service.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="$ROOT/quickstart"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_dump >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)

echo "==> building drctl"
cargo build --release --quiet
DRCTL="${CARGO_TARGET_DIR:-$ROOT/target}/release/drctl"

rm -rf "$WORK"; mkdir -p "$WORK"
PGDIR=$(mktemp -d /tmp/drctl-quickstart-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AS=""
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PGDIR"; AS="runuser -u postgres --"; fi
cleanup() { $AS "$BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDIR"; }
trap cleanup EXIT

echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$PORT"
$AS "$BIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
$AS "$BIN/pg_ctl" -D "$PGDIR/data" -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1" -l "$PGDIR/log" -w start >/dev/null
psql() { "$BIN/psql" -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
psql -c "create database app"
psql -d app -c "create table notes (id serial primary key, body text, at timestamptz default now());
                insert into notes (body) select 'note ' || g from generate_series(1, 10000) g;"

echo "==> drctl keygen, config, validate"
"$DRCTL" keygen --output "$WORK/identity.txt" > "$WORK/recipient.txt"
cat > "$WORK/drctl.toml" <<TOML
[encryption]
recipients = ["$(cat "$WORK/recipient.txt")"]
identity_file = "identity.txt"   # on a real VPS the identity lives offline, not here

[[storage]]
name = "local"
type = "fs"
root = "backups"

[[source]]
name = "app-db"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/app"
TOML
export DRCTL_CONFIG="$WORK/drctl.toml"
"$DRCTL" validate

echo "==> drctl backup"
"$DRCTL" backup
"$DRCTL" list

echo "==> drctl restore --at now into a new database"
psql -c "create database app_restored"
DRCTL_TARGET_URL="postgres://postgres@127.0.0.1:$PORT/app_restored" "$DRCTL" restore --at now --source app-db

a=$(psql -d app -c "select md5(string_agg(t::text, ',' order by id)) from notes t")
b=$(psql -d app_restored -c "select md5(string_agg(t::text, ',' order by id)) from notes t")
if [ "$a" = "$b" ]; then
  echo "==> OK: restored database matches the original (md5 $a)"
  echo "    artifacts: $(find "$WORK/backups" -type f -not -path '*/.tmp/*' | sed "s|$ROOT/||" | tr '\n' ' ')"
else
  echo "==> FAILED: restored contents differ ($a vs $b)" >&2
  exit 1
fi
