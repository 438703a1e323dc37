#!/bin/sh
# Entrypoint of drctl's test image for the `docker` verification sandbox. It keeps the contract
# drctl relies on in the official postgres image: POSTGRES_PASSWORD sets the password of the
# `postgres` superuser, the server listens on 5432 with password auth from the network, and
# `postgres -c …` (or just `-c …`) arguments are passed to the server. The binaries are Debian's.
set -eu
# setpriv execs (runuser would fork): postgres is PID 1 and gets the stop signal itself.
BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGDATA=/var/lib/postgresql/data
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
shift
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres "$PGDATA" /var/run/postgresql
pwfile=$(mktemp)
printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
chown postgres "$pwfile"
setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
rm -f "$pwfile"
echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
