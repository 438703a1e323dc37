#!/usr/bin/env bash
# The tour: a real backup and restore on a local default.
# Starts a throwaway PostgreSQL (temp dir, free loopback port), seeds it, backs it up with
# drctl to local fs storage under ./quickstart/, restores it with `restore --at now` into a
# new database and compares the contents. Stops the server on exit. Touches no system service.
#
# Which drctl it runs (it prints the one it picked):
#   1. $DRCTL_BIN, if set (e.g. a downloaded release binary): nothing is compiled;
#   2. else target/release/drctl, if it exists and no source file is newer than it;
#   3. else a `quickstart` profile build (Cargo.toml): about a third of a clean --release
#      build's compile time, fast enough for this tour; not the binary to deploy;
#   4. else, without cargo, `drctl` on PATH.
set -euo pipefail
case "${DRCTL_BIN:-}" in ""|/*) ;; *) DRCTL_BIN="$PWD/$DRCTL_BIN" ;; esac   # relative to where you ran it
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="$ROOT/quickstart"

. scripts/lib/throwaway-pg.sh
ensure_pg_installed

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -n "${DRCTL_BIN:-}" ]; then
  [ -x "$DRCTL_BIN" ] || { echo "DRCTL_BIN=$DRCTL_BIN is not an executable file" >&2; exit 2; }
  DRCTL="$DRCTL_BIN"
elif [ -x "$TARGET/release/drctl" ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$TARGET/release/drctl" -print -quit)" ]; then
  DRCTL="$TARGET/release/drctl"
elif command -v cargo >/dev/null; then
  echo "==> building drctl (cargo build --profile quickstart; a few minutes the first time, seconds after)"
  cargo build --profile quickstart --quiet
  DRCTL="$TARGET/quickstart/drctl"
elif command -v drctl >/dev/null; then
  DRCTL="$(command -v drctl)"
else
  echo "no drctl: install Rust (https://rustup.rs) to build it, or set DRCTL_BIN=/path/to/drctl" >&2
  exit 2
fi
echo "==> running $DRCTL ($("$DRCTL" --version))"

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
