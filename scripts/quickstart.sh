#!/usr/bin/env bash
# The 60-second tour: a real backup and restore on a local default.
# Starts a throwaway PostgreSQL (temp dir, free loopback port), seeds it, backs it up with
# drctl to local fs storage under ./quickstart/, restores it with `restore --at now` into a
# new database and compares the contents. Stops the server on exit. Touches no system service.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="$ROOT/quickstart"

. scripts/lib/throwaway-pg.sh
ensure_pg_installed

echo "==> building drctl"
cargo build --release --quiet
DRCTL="${CARGO_TARGET_DIR:-$ROOT/target}/release/drctl"

rm -rf "$WORK"; mkdir -p "$WORK"
start_throwaway_pg
echo "==> started a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
psql() { pg_psql "$@"; }
psql -c "create database app"
psql -d app -c "create table notes (id serial primary key, body text, at timestamptz default now());
                insert into notes (body) select 'note ' || g from generate_series(1, 10000) g;"

echo "==> drctl keygen, config, validate"
"$DRCTL" keygen --output "$WORK/identity.txt" > "$WORK/recipient.txt"
touch "$WORK/drctl.toml"; chmod 600 "$WORK/drctl.toml"
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
url = "postgres://postgres@127.0.0.1:$PG_PORT/app"
TOML
export DRCTL_CONFIG="$WORK/drctl.toml"
"$DRCTL" validate

echo "==> drctl backup"
"$DRCTL" backup
"$DRCTL" list

echo "==> drctl restore --at now into a new database"
psql -c "create database app_restored"
DRCTL_TARGET_URL="postgres://postgres@127.0.0.1:$PG_PORT/app_restored" "$DRCTL" restore --at now --source app-db

a=$(psql -d app -c "select md5(string_agg(t::text, ',' order by id)) from notes t")
b=$(psql -d app_restored -c "select md5(string_agg(t::text, ',' order by id)) from notes t")
if [ "$a" = "$b" ]; then
  echo "==> OK: restored database matches the original (md5 $a)"
  echo "    artifacts: $(find "$WORK/backups" -type f -not -path '*/.tmp/*' | sed "s|$ROOT/||" | tr '\n' ' ')"
else
  echo "==> FAILED: restored contents differ ($a vs $b)" >&2
  exit 1
fi
