#!/bin/sh
# Entrypoint of drctl's test image for the `docker` verification sandbox. It keeps the contract
# drctl relies on in the official postgres image: POSTGRES_PASSWORD sets the password of the
# superuser POSTGRES_USER (default `postgres`), POSTGRES_DB (default: the user's name) is
# created, an existing cluster in the data directory (a volume) is kept as it is, the local
# socket (/var/run/postgresql) trusts, the server listens on 5432 with password auth from the
# network, and `postgres -c …` (or just `-c …`) arguments are passed to the server. The
# binaries are Debian's.
set -eu
# setpriv execs (runuser would fork): postgres is PID 1 and gets the stop signal itself.
BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGDATA=/var/lib/postgresql/data
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
shift
mkdir -p "$PGDATA" /var/run/postgresql
# As the official image does: the data directory private, and everything in it the server's
# (files written into the volume from outside, e.g. a restore through the engine).
chmod 700 "$PGDATA"
find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
chown postgres /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/initdb" -D "$PGDATA" -U "$user" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server, no socket, before the real one starts.
    printf 'CREATE DATABASE "%s"\n' "$(printf '%s' "$db" | sed 's/"/""/g')" |
      setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
