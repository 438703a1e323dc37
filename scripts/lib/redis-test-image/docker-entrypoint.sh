#!/bin/sh
# Entrypoint of drctl's Redis test image. It keeps the official redis image's contract that
# compose files rely on: the working directory (and so the RDB and AOF files) is /data;
# `redis-server --appendonly yes` (or just `--appendonly yes`, or a path to a .conf file) runs
# the server with those arguments and no config file of its own; run as root, it chowns /data
# and drops to the `redis` user; any other command runs as given. The binaries are Debian's.
set -eu
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
  # setpriv execs: redis-server is PID 1 and gets the stop signal itself.
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
  # Protected mode off as in the official image (built with it off), so other containers on the
  # network can connect; a config file given first keeps its place and has the last word.
  shift
  if [ $# -gt 0 ] && [ "${1%.conf}" != "$1" ]; then exec /usr/bin/redis-server "$@"; fi
  exec /usr/bin/redis-server --protected-mode no "$@"
fi
exec "$@"
