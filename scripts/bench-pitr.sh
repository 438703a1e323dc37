#!/usr/bin/env bash
# Benchmark (issue #17, performance): drctl's WAL archiving, PITR replay and base backup next to
# pgBackRest and Barman's cloud client, side by side in ONE run, on real PostgreSQL WAL.
#
#   wal-push   N real 16 MiB segments (from a throwaway cluster's pgbench load) pushed one process
#              per segment, as archive_command does, to an fs storage and to a local S3 server
#              (s3s-fs; pgBackRest only speaks TLS to S3, so it goes through a socat TLS proxy):
#              drctl wal-push, pgbackrest archive-push (sync, and --archive-async), and
#              barman-cloud-wal-archive (S3 only, gzip).
#   wal-fetch  the same segments fetched back one by one, as restore_command does (drctl wal-fetch
#              with its prefetcher and with prefetch = 1, pgbackrest archive-get,
#              barman-cloud-wal-restore): the fetch side of replay, without the replay.
#   keep-up    a cluster with archive_command = drctl wal-push under `pgbench -c 2 -T 60`: the
#              .ready backlog in pg_wal/archive_status sampled every 2 s.
#   replay     ONE cluster archiving into drctl AND pgBackRest (archive_command = drctl wal-push &&
#              pgbackrest archive-push), one base backup each, then >= N segments of pgbench WAL;
#              `drctl restore --at now --target-datadir --start` vs `pgbackrest restore` + start,
#              each timed to promotion.
#   basebackup drctl backup (pg_basebackup -Ft -X none | zstd | age | fs) vs raw
#              `pg_basebackup -Ft -D - -X none > /dev/null` (and pgbackrest backup --type=full).
# It prints one table: operation, tool, wall seconds, rate, ratio to the anchor; and `uptime`
# at start and end.
#
# Installs what is missing with apt-get: pgbackrest, barman-cli-cloud, socat, openssl, zstd, age
# (and PostgreSQL via scripts/lib/throwaway-pg.sh's ensure_pg_installed).
# Uses s3s-fs from PATH or /var/tmp/drctl-tools/bin (scripts/test.sh installs it).
# Everything lives in one temp dir; every server it starts is stopped on exit; it never touches
# the machine's own PostgreSQL (own data dirs, free ports). As root, PostgreSQL and every tool run
# as `postgres` (runuser) and the temp dir is chowned to it.
#
# Usage: [DRCTL=/path/to/drctl] [SCALE=50] [KEEP=1] [BARMAN_SEGS=16] [KEEPUP_SECS=60] scripts/bench-pitr.sh [SEGMENTS]
#   SEGMENTS  segments for wal-push/fetch and the minimum WAL replayed (default 128 = 2 GiB)
#   SCALE     pgbench -i scale of the cluster (default 50, ~750 MB: the base backup's size)
#   DRCTL     a built drctl (else: cargo build --release)
#   KEEP=1    keep the temp dir
#   BARMAN_SEGS  segments Barman's client pushes/fetches (default 16: it is slow; its rate is per segment)
#   KEEPUP_SECS  pgbench duration of the keep-up test (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SEGMENTS=${1:-128}
SCALE=${SCALE:-50}
KEEPUP_SECS=${KEEPUP_SECS:-60}
BARMAN_SEGS=${BARMAN_SEGS:-16}
UPTIME_START=$(uptime)

. scripts/lib/throwaway-pg.sh
ensure_pg_installed
need=()
command -v pgbackrest >/dev/null || need+=(pgbackrest)
command -v barman-cloud-wal-archive >/dev/null || need+=(barman-cli-cloud)
command -v socat >/dev/null || need+=(socat)
command -v openssl >/dev/null || need+=(openssl)
command -v zstd >/dev/null || need+=(zstd)
command -v age >/dev/null || need+=(age)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
S3S_FS=$(command -v s3s-fs || echo /var/tmp/drctl-tools/bin/s3s-fs)
[ -x "$S3S_FS" ] || { echo "s3s-fs not found (cargo install s3s-fs --features binary)" >&2; exit 1; }
PG_BIN=/usr/lib/postgresql/15/bin
[ -x "$PG_BIN/initdb" ] || PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)

if [ -z "${DRCTL:-}" ]; then
  nice -n 10 cargo build --release --quiet
  DRCTL="${CARGO_TARGET_DIR:-$PWD/target}/release/drctl"
fi

WORK=$(mktemp -d /tmp/drctl-bench-pitr.XXXXXX)
chmod 755 "$WORK"
AS=()
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); fi
PIDS=()
DATADIRS=()
cleanup() {
  set +e
  for d in "${DATADIRS[@]}"; do
    [ -f "$d/postmaster.pid" ] && "${AS[@]}" "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  # detached drctl wal-prefetch processes started by this run's wal-fetch (found by our temp dir)
  for p in $(pgrep -f "$WORK" 2>/dev/null); do kill "$p" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/bin" "$WORK/sock" "$WORK/segs" "$WORK/s3/drctl" "$WORK/s3/pgbr" "$WORK/s3/barman" "$WORK/log"
cp "$DRCTL" "$WORK/bin/drctl"
D="$WORK/bin/drctl"
[ ${#AS[@]} -eq 0 ] || chown -R postgres: "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
as() { "${AS[@]}" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
log() { echo "==> $(date -u +%H:%M:%S) $*"; }

# Results: group|tool|wall|rate|anchor(1/0)
RES="$WORK/results.txt"
: > "$RES"
# (ratio: per-unit wall time against the anchor's; the 6th field scales a row that did less work)
row() { echo "$1|$2|$3|$4|$5|${6:-1}" >> "$RES"; echo "    $2: ${3}s  $4"; }

# ---------------------------------------------------------------- servers: S3 (+TLS proxy)
S3_KEY=AKIADRCTLBENCHPITR01
S3_SECRET=bench-pitr-secret
S3_PORT=$(free_port)
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_KEY" --secret-key "$S3_SECRET" "$WORK/s3" \
  >"$WORK/log/s3s.log" 2>&1 &
PIDS+=($!)
wait_port "$S3_PORT"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -days 2 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1
cat "$WORK/tls.key" "$WORK/tls.crt" > "$WORK/tls.pem"
TLS_PORT=$(free_port)
socat "OPENSSL-LISTEN:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork,cert=$WORK/tls.pem,verify=0" "TCP:127.0.0.1:$S3_PORT" \
  >"$WORK/log/socat.log" 2>&1 &
PIDS+=($!)
wait_port "$TLS_PORT"
export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_DEFAULT_REGION=us-east-1
export DRCTL_BENCH_S3_SECRET=$S3_SECRET
[ ${#AS[@]} -eq 0 ] || chown -R postgres: "$WORK"

# ---------------------------------------------------------------- configs
RCPT=$("$D" keygen --output "$WORK/key.txt" 2>/dev/null)
KEY="$WORK/key.txt"
C1PORT=$(free_port)
C1DATA="$WORK/c1"
drctl_cfg() { # file, storage block, [extra source lines]
  cat > "$1" <<TOML
[encryption]
recipients = ["$RCPT"]

[compression]
algorithm = "zstd"
level = 3

[daemon]
state_dir = "$WORK/state"

$2

[[source]]
name = "cluster"
type = "postgres_cluster"
url = "postgres://postgres@127.0.0.1:$C1PORT/postgres"
pg_bin_dir = "$PG_BIN"
${3:-}
TOML
  chmod 600 "$1"
}
fs_st() { printf '[[storage]]\nname = "local"\ntype = "fs"\nroot = "%s"\n' "$1"; }
s3_st() {
  printf '[[storage]]\nname = "s3"\ntype = "s3"\nbucket = "drctl"\nendpoint = "http://127.0.0.1:%s"\nregion = "us-east-1"\naccess_key_id = "%s"\nsecret_access_key = "${DRCTL_BENCH_S3_SECRET}"\nroot = "/%s"\n' \
    "$S3_PORT" "$S3_KEY" "$1"
}
drctl_cfg "$WORK/d-pitr.toml" "$(fs_st "$WORK/store-pitr")"
drctl_cfg "$WORK/d-fs.toml" "$(fs_st "$WORK/store-push")"
drctl_cfg "$WORK/d-fs-p0.toml" "$(fs_st "$WORK/store-push")" "prefetch = 1"
drctl_cfg "$WORK/d-s3.toml" "$(s3_st push)"
drctl_cfg "$WORK/d-s3-p0.toml" "$(s3_st push)" "prefetch = 1"
drctl_cfg "$WORK/d-keepup.toml" "$(fs_st "$WORK/store-keepup")"

pgbr_cfg() { # file, stanza, repo lines
  cat > "$1" <<INI
[global]
$3
repo1-retention-full=2
compress-type=zst
compress-level=3
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench-pitr-cipher-pass
log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=$WORK/pgbr-lock
spool-path=$WORK/pgbr-spool-$2
start-fast=y
process-max=2

[$2]
pg1-path=$C1DATA
pg1-port=$C1PORT
pg1-socket-path=$WORK/sock
pg1-user=postgres
INI
}
PGBR_S3="repo1-type=s3
repo1-path=/push
repo1-s3-bucket=pgbr
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$TLS_PORT
repo1-storage-verify-tls=n
repo1-s3-uri-style=path
repo1-s3-region=us-east-1
repo1-s3-key=$S3_KEY
repo1-s3-key-secret=$S3_SECRET"
pgbr_cfg "$WORK/pgbr-replay.conf" replay "repo1-path=$WORK/pgbr-repo-replay"
pgbr_cfg "$WORK/pgbr-fs.conf" pushfs "repo1-path=$WORK/pgbr-repo-push"
pgbr_cfg "$WORK/pgbr-s3.conf" pushs3 "$PGBR_S3"
pgbr_cfg "$WORK/pgbr-fs-async.conf" pushfsa "repo1-path=$WORK/pgbr-repo-push-async
archive-async=y"
pgbr_cfg "$WORK/pgbr-s3-async.conf" pushs3a "${PGBR_S3/repo1-path=\/push/repo1-path=/push-async}
archive-async=y"
BARMAN_URL="s3://barman/push"
barman_opts=(--endpoint-url "http://127.0.0.1:$S3_PORT")
[ ${#AS[@]} -eq 0 ] || chown -R postgres: "$WORK"

pgbr() { local cfg=$1; shift; as pgbackrest --config="$cfg" "$@"; }
psql1() { as "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "${PORT:-$C1PORT}" -U postgres -d postgres "$@"; }

# ---------------------------------------------------------------- cluster C1
log "cluster C1 (PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), port $C1PORT): archive_command = drctl wal-push && pgbackrest archive-push && cp"
as "$PG_BIN/initdb" -D "$C1DATA" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
DATADIRS+=("$C1DATA")
cat >> "$C1DATA/postgresql.conf" <<CONF
port = $C1PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
shared_buffers = 256MB
max_wal_size = 1GB
fsync = off
archive_mode = on
archive_command = 'test "\$(pwd -P)" = "$C1DATA" && $D --config $WORK/d-pitr.toml wal-push --source cluster %p && pgbackrest --config=$WORK/pgbr-replay.conf --stanza=replay archive-push %p && cp %p $WORK/segs/%f'
CONF
as "$PG_BIN/pg_ctl" -D "$C1DATA" -l "$WORK/log/c1.log" -w start >/dev/null
for c in replay:pgbr-replay fs:pgbr-fs s3:pgbr-s3 fsa:pgbr-fs-async s3a:pgbr-s3-async; do
  stanza=$(awk -F'[][]' '/^\[[a-z]/ && $2!="global" {print $2}' "$WORK/${c#*:}.conf")
  pgbr "$WORK/${c#*:}.conf" --stanza="$stanza" stanza-create
done

log "pgbench -i -s $SCALE"
PGB=(as "$PG_BIN/pgbench" -h "$WORK/sock" -p "$C1PORT" -U postgres)
"${PGB[@]}" -i -q -s "$SCALE" postgres >/dev/null 2>&1
psql1 -c "checkpoint" >/dev/null
log "database: $(psql1 -c "select pg_size_pretty(pg_database_size('postgres'))")"

# ---------------------------------------------------------------- base backup
log "base backup"
t=$(now); as "$PG_BIN/pg_basebackup" -h "$WORK/sock" -p "$C1PORT" -U postgres -Ft -D - -X none --checkpoint=fast > /dev/null 2>"$WORK/log/pgbb.log"
W_RAW=$(since "$t")
DBMB=$(psql1 -c "select pg_database_size('postgres')/1048576")
row basebackup "pg_basebackup -Ft -D - -X none > /dev/null" "$W_RAW" "$(awk -v s="$DBMB" -v w="$W_RAW" 'BEGIN{printf "%.0f MB/s", s/w}')" 1
t=$(now); as "$D" --config "$WORK/d-pitr.toml" backup --source cluster --no-prune >"$WORK/log/drctl-backup.log" 2>&1 || { cat "$WORK/log/drctl-backup.log"; exit 1; }
W=$(since "$t")
row basebackup "drctl backup (zstd 3 + age, fs)" "$W" "$(awk -v s="$DBMB" -v w="$W" 'BEGIN{printf "%.0f MB/s", s/w}')" 0
t=$(now); pgbr "$WORK/pgbr-replay.conf" --stanza=replay backup --type=full >"$WORK/log/pgbr-backup.log" 2>&1 || { cat "$WORK/log/pgbr-backup.log"; exit 1; }
W=$(since "$t")
row basebackup "pgbackrest backup --type=full (zst 3 + aes, fs, 2 procs)" "$W" "$(awk -v s="$DBMB" -v w="$W" 'BEGIN{printf "%.0f MB/s", s/w}')" 0

# ---------------------------------------------------------------- WAL load for replay
archived() { psql1 -c "select archived_count from pg_stat_archiver"; }
A0=$(archived)
log "pgbench load until >= $SEGMENTS more segments are archived (archived so far: $A0)"
"${PGB[@]}" -n -c 2 -j 2 -T 3600 postgres >"$WORK/log/pgbench-load.log" 2>&1 &
PGB_PID=$!
while [ $(( $(archived) - A0 )) -lt "$SEGMENTS" ]; do
  kill -0 "$PGB_PID" 2>/dev/null || { echo "pgbench ended early:"; cat "$WORK/log/pgbench-load.log"; exit 1; }
  sleep 2
done
# Stop pgbench by ending its sessions (as root, $PGB_PID is runuser's, and pgbench outlives a kill of it).
psql1 -c "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pgbench'" >/dev/null
wait "$PGB_PID" 2>/dev/null || true
psql1 -c "create table bench_marker as select now() as at" >/dev/null
last=$(psql1 -c "select pg_walfile_name(pg_current_wal_insert_lsn())")
psql1 -c "select pg_switch_wal()" >/dev/null
while [[ "$(psql1 -c "select coalesce(last_archived_wal,'') from pg_stat_archiver")" < "$last" ]]; do sleep 0.5; done
REPLAY_SEGS=$(( $(archived) - A0 ))
log "archived $REPLAY_SEGS segments after the base backups (failed: $(psql1 -c "select failed_count from pg_stat_archiver"))"

# ---------------------------------------------------------------- replay
wait_promoted() { # port, socket dir
  for _ in $(seq 36000); do
    [ "$(as "$PG_BIN/psql" -X -A -t -h "$2" -p "$1" -U postgres -d postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ] && return 0
    sleep 0.2
  done
  return 1
}
SEGMB=$(( REPLAY_SEGS * 16 ))
log "replay: drctl restore --at now --start"
R1="$WORK/r-drctl"; R1PORT=$(free_port)
mkdir -p "$R1"; chmod 700 "$R1"; [ ${#AS[@]} -eq 0 ] || chown postgres: "$R1"
DATADIRS+=("$R1")
t=$(now)
as "$D" --config "$WORK/d-pitr.toml" restore --source cluster --at now --identity "$KEY" \
  --target-datadir "$R1" --start --port "$R1PORT" >"$WORK/log/drctl-restore.log" 2>&1 || { cat "$WORK/log/drctl-restore.log"; exit 1; }
wait_promoted "$R1PORT" "$R1"  # drctl starts it with -k DATADIR
W_DRCTL_REPLAY=$(since "$t")
tail -n 3 "$WORK/log/drctl-restore.log" | sed 's/^/    | /'
[ "$(as "$PG_BIN/psql" -X -A -t -h "$R1" -p "$R1PORT" -U postgres -d postgres -c 'select count(*) from bench_marker')" = 1 ] \
  || { echo "drctl restore did not reach the end of the load"; exit 1; }
as "$PG_BIN/pg_ctl" -D "$R1" -m fast stop >/dev/null
cp "$R1/drctl-recovery.log" "$WORK/log/r-drctl.log"
rm -rf "$R1"

log "replay: pgbackrest restore + start"
R2="$WORK/r-pgbr"; R2PORT=$(free_port)
mkdir -p "$R2"; chmod 700 "$R2"; [ ${#AS[@]} -eq 0 ] || chown postgres: "$R2"
DATADIRS+=("$R2")
t=$(now)
pgbr "$WORK/pgbr-replay.conf" --stanza=replay --pg1-path="$R2" restore >"$WORK/log/pgbr-restore.log" 2>&1 || { cat "$WORK/log/pgbr-restore.log"; exit 1; }
as "$PG_BIN/pg_ctl" -D "$R2" -l "$WORK/log/r-pgbr.log" -o "-p $R2PORT -c archive_mode=off" start >/dev/null
wait_promoted "$R2PORT" "$WORK/sock"
W_PGBR_REPLAY=$(since "$t")
[ "$(as "$PG_BIN/psql" -X -A -t -h "$WORK/sock" -p "$R2PORT" -U postgres -d postgres -c 'select count(*) from bench_marker')" = 1 ] \
  || { echo "pgbackrest restore did not reach the end of the load"; exit 1; }
as "$PG_BIN/pg_ctl" -D "$R2" -m fast stop >/dev/null
rm -rf "$R2"
redo() { grep -oE 'redo done at .*elapsed: [0-9.]+ s' "$1" | tail -n1 | awk '{print $4 ", " $(NF-1)}'; }
REDO_DRCTL=$(redo "$WORK/log/r-drctl.log"); REDO_PGBR=$(redo "$WORK/log/r-pgbr.log")
echo "    redo (server log 'redo done at LSN ... elapsed'): drctl ${REDO_DRCTL:-?}s, pgbackrest ${REDO_PGBR:-?}s"
rate() { awk -v n="$1" -v w="$2" 'BEGIN{printf "%.1f seg/s", n/w}'; }
row replay "pgbackrest restore + replay $REPLAY_SEGS seg ($SEGMB MB) to promotion (redo to ${REDO_PGBR:-?}s)" "$W_PGBR_REPLAY" "$(rate "$REPLAY_SEGS" "$W_PGBR_REPLAY")" 1
row replay "drctl restore --at now --start, $REPLAY_SEGS seg, to promotion (redo to ${REDO_DRCTL:-?}s)" "$W_DRCTL_REPLAY" "$(rate "$REPLAY_SEGS" "$W_DRCTL_REPLAY")" 0

# ---------------------------------------------------------------- wal-push
# The last N segments of the load, in a fake pg_wal with archive_status/*.ready (pgBackRest's
# async mode reads those), next to C1's pg_control.
FAKE="$WORK/fakepg"
mkdir -p "$FAKE/pg_wal/archive_status" "$FAKE/global"
cp "$C1DATA/global/pg_control" "$FAKE/global/"
mapfile -t SEGS < <(ls "$WORK/segs" | grep -E '^[0-9A-F]{24}$' | sort | tail -n "$SEGMENTS")
N=${#SEGS[@]}
for s in "${SEGS[@]}"; do ln "$WORK/segs/$s" "$FAKE/pg_wal/$s"; done
[ ${#AS[@]} -eq 0 ] || chown -R postgres: "$FAKE"
ready_all() { rm -f "$FAKE/pg_wal/archive_status/"*; for s in "${SEGS[@]}"; do as touch "$FAKE/pg_wal/archive_status/$s.ready"; done; }
push_loop() { # label, command prefix... (segment path appended); marks .done as PostgreSQL does
  local label=$1; shift
  ready_all
  local t; t=$(now)
  for s in "${SEGS[@]}"; do
    as "$@" "$FAKE/pg_wal/$s" >>"$WORK/log/push.log" 2>&1 || { echo "$label failed on $s:"; tail -n 20 "$WORK/log/push.log"; exit 1; }
    mv "$FAKE/pg_wal/archive_status/$s.ready" "$FAKE/pg_wal/archive_status/$s.done"
  done
  PUSH_W=$(since "$t")
}
PGBR_FAKE=(--pg1-path="$FAKE")
log "wal-push: $N segments, one process per segment"
push_loop "drctl fs" "$D" --config "$WORK/d-fs.toml" wal-push --source cluster
row push-fs "drctl wal-push -> fs" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
push_loop "drctl fs again" "$D" --config "$WORK/d-fs.toml" wal-push --source cluster
row push-fs "drctl wal-push -> fs, again (already archived: per-call overhead)" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
push_loop "floor" sh -c 'zstd -3 -q -c "$1" | age -r "$0" > /dev/null' "$RCPT"
row push-fs "floor: shell zstd -3, piped to age, per segment" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
push_loop "pgbr fs" pgbackrest --config="$WORK/pgbr-fs.conf" --stanza=pushfs "${PGBR_FAKE[@]}" archive-push
row push-fs "pgbackrest archive-push -> fs" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 1
push_loop "pgbr fs async" pgbackrest --config="$WORK/pgbr-fs-async.conf" --stanza=pushfsa "${PGBR_FAKE[@]}" archive-push
row push-fs "pgbackrest archive-push --archive-async -> fs" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
push_loop "drctl s3" env DRCTL_BENCH_S3_SECRET="$S3_SECRET" "$D" --config "$WORK/d-s3.toml" wal-push --source cluster
row push-s3 "drctl wal-push -> S3 (http)" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
push_loop "pgbr s3" pgbackrest --config="$WORK/pgbr-s3.conf" --stanza=pushs3 "${PGBR_FAKE[@]}" archive-push
row push-s3 "pgbackrest archive-push -> S3 (https via socat)" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 1
push_loop "pgbr s3 async" pgbackrest --config="$WORK/pgbr-s3-async.conf" --stanza=pushs3a "${PGBR_FAKE[@]}" archive-push
row push-s3 "pgbackrest archive-push --archive-async -> S3" "$PUSH_W" "$(rate "$N" "$PUSH_W")" 0
# Barman's client is slow (Python, gzip -9): it gets the first $BARMAN_SEGS segments only.
ALL_SEGS=("${SEGS[@]}"); SEGS=("${ALL_SEGS[@]:0:$BARMAN_SEGS}"); NB=${#SEGS[@]}
push_loop "barman" env AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_DEFAULT_REGION=us-east-1 \
  barman-cloud-wal-archive "${barman_opts[@]}" -z "$BARMAN_URL" bench
row push-s3 "barman-cloud-wal-archive -z -> S3 (http; first $NB segments)" "$PUSH_W" "$(rate "$NB" "$PUSH_W")" 0 "$(awk -v a="$NB" -v b="$N" 'BEGIN{print a/b}')"
SEGS=("${ALL_SEGS[@]}")

# ---------------------------------------------------------------- wal-fetch (restore_command side)
FD="$WORK/fetch/pg_wal"
mkdir -p "$FD"; [ ${#AS[@]} -eq 0 ] || chown -R postgres: "$WORK/fetch"
fetch_loop() { # label, command... with @F@ and @P@ placeholders
  local label=$1; shift
  rm -rf "$FD"; as mkdir -p "$FD"
  local t; t=$(now)
  HITS=0
  for s in "${SEGS[@]}"; do
    [ -f "$FD/.drctl-prefetch/$s" ] && HITS=$((HITS + 1))  # already prefetched when asked for
    local args=("${@//@F@/$s}"); args=("${args[@]//@P@/$FD/RECOVERYXLOG}")
    as "${args[@]}" >>"$WORK/log/fetch.log" 2>&1 || { echo "$label failed on $s:"; tail -n 20 "$WORK/log/fetch.log"; exit 1; }
    rm -f "$FD/RECOVERYXLOG"
  done
  FETCH_W=$(since "$t")
}
log "wal-fetch: the same $N segments fetched one by one as restore_command (no replay)"
fetch_loop "pgbr fs" pgbackrest --config="$WORK/pgbr-fs.conf" --stanza=pushfs "${PGBR_FAKE[@]}" archive-get @F@ @P@
row fetch-fs "pgbackrest archive-get <- fs" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 1
fetch_loop "drctl fs" "$D" --config "$WORK/d-fs.toml" wal-fetch --source cluster --identity "$KEY" @F@ @P@
row fetch-fs "drctl wal-fetch <- fs (prefetch = 8, default; $HITS/$N ready in cache)" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 0
sleep 1
fetch_loop "drctl fs p0" "$D" --config "$WORK/d-fs-p0.toml" wal-fetch --source cluster --identity "$KEY" @F@ @P@
row fetch-fs "drctl wal-fetch <- fs (prefetch = 1; $HITS/$N ready in cache)" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 0
fetch_loop "pgbr s3" pgbackrest --config="$WORK/pgbr-s3.conf" --stanza=pushs3 "${PGBR_FAKE[@]}" archive-get @F@ @P@
row fetch-s3 "pgbackrest archive-get <- S3" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 1
fetch_loop "drctl s3" env DRCTL_BENCH_S3_SECRET="$S3_SECRET" "$D" --config "$WORK/d-s3.toml" wal-fetch --source cluster --identity "$KEY" @F@ @P@
row fetch-s3 "drctl wal-fetch <- S3 (prefetch = 8, default; $HITS/$N ready in cache)" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 0
sleep 1
fetch_loop "drctl s3 p0" env DRCTL_BENCH_S3_SECRET="$S3_SECRET" "$D" --config "$WORK/d-s3-p0.toml" wal-fetch --source cluster --identity "$KEY" @F@ @P@
row fetch-s3 "drctl wal-fetch <- S3 (prefetch = 1; $HITS/$N ready in cache)" "$FETCH_W" "$(rate "$N" "$FETCH_W")" 0
SEGS=("${ALL_SEGS[@]:0:$BARMAN_SEGS}")
fetch_loop "barman" env AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_DEFAULT_REGION=us-east-1 \
  barman-cloud-wal-restore "${barman_opts[@]}" "$BARMAN_URL" bench @F@ @P@
row fetch-s3 "barman-cloud-wal-restore <- S3 (serial; first $NB segments)" "$FETCH_W" "$(rate "$NB" "$FETCH_W")" 0 "$(awk -v a="$NB" -v b="$N" 'BEGIN{print a/b}')"
SEGS=("${ALL_SEGS[@]}")

# ---------------------------------------------------------------- keep-up under pgbench
log "keep-up: archive_command = drctl wal-push only, pgbench -c 2 -T $KEEPUP_SECS"
psql1 -c "alter system set archive_command = 'test \"\$(pwd -P)\" = \"$C1DATA\" && $D --config $WORK/d-keepup.toml wal-push --source cluster %p'" >/dev/null
psql1 -c "select pg_reload_conf()" >/dev/null
sleep 1
K_A0=$(archived); K_F0=$(psql1 -c "select failed_count from pg_stat_archiver")
L0=$(psql1 -c "select pg_current_wal_lsn()")
"${PGB[@]}" -n -c 2 -j 2 -T "$KEEPUP_SECS" postgres >"$WORK/log/pgbench-keepup.log" 2>&1 &
PGB_PID=$!
MAXB=0; SAMPLES=()
while kill -0 "$PGB_PID" 2>/dev/null; do
  b=$(find "$C1DATA/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l)
  SAMPLES+=("$b"); [ "$b" -gt "$MAXB" ] && MAXB=$b
  sleep 2
done
wait "$PGB_PID" || true
END_B=$(find "$C1DATA/pg_wal/archive_status" -name '*.ready' | wc -l)
t=$(now)
while [ "$(find "$C1DATA/pg_wal/archive_status" -name '*.ready' | wc -l)" -gt 0 ]; do sleep 0.5; done
DRAIN=$(since "$t")
WALMB=$(psql1 -c "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$L0')/1048576)")
K_SEGS=$(( $(archived) - K_A0 )); K_FAIL=$(( $(psql1 -c "select failed_count from pg_stat_archiver") - K_F0 ))
TPS=$(grep -oE 'tps = [0-9.]+' "$WORK/log/pgbench-keepup.log" | head -n1 | awk '{printf "%.0f", $3}')
echo "    pgbench ${TPS:-?} tps, $WALMB MB of WAL in ${KEEPUP_SECS}s ($(awk -v m="$WALMB" -v s="$KEEPUP_SECS" 'BEGIN{printf "%.1f", m/16/s}') seg/s), $K_SEGS segments archived, $K_FAIL failures"
echo "    .ready backlog every 2 s: ${SAMPLES[*]}"
echo "    max backlog $MAXB, at the end $END_B, drained ${DRAIN}s after pgbench ended"
row keepup "pgbench -c 2 -T $KEEPUP_SECS (${TPS:-?} tps) WAL rate" "$KEEPUP_SECS" "$(awk -v m="$WALMB" -v s="$KEEPUP_SECS" 'BEGIN{printf "%.1f seg/s", m/16/s}')" 1
row keepup "drctl wal-push archiver: max .ready $MAXB, end $END_B, drain ${DRAIN}s" "$(awk -v a="$KEEPUP_SECS" -v b="$DRAIN" 'BEGIN{printf "%.2f", a+b}')" \
  "$(awk -v n="$K_SEGS" -v a="$KEEPUP_SECS" -v b="$DRAIN" 'BEGIN{printf "%.1f seg/s", n/(a+b)}')" 0

# ---------------------------------------------------------------- table
UPTIME_END=$(uptime)
echo
echo "PITR benchmark: $N segments pushed/fetched, $REPLAY_SEGS segments replayed, pgbench scale $SCALE ($DBMB MB), $(nproc) cores, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $(pgbackrest version), barman-cli-cloud $(barman-cloud-wal-archive -V 2>&1 | awk '{print $NF}')"
echo "ratio: wall time per unit of work / the anchor's, same group (< 1 is faster than the anchor)"
awk -F'|' '
  { g[NR]=$1; tool[NR]=$2; w[NR]=$3; r[NR]=$4; u[NR]=$3/$6; if ($5==1) anchor[$1]=$3/$6 }
  END {
    printf "%-11s %-72s %9s %14s %7s\n", "operation", "tool", "wall s", "rate", "ratio"
    for (i=1;i<=NR;i++) {
      ratio = (anchor[g[i]] > 0) ? sprintf("%.2f", u[i]/anchor[g[i]]) : "-"
      if (u[i] == anchor[g[i]] && ratio == "1.00") ratio = "1.00*"
      printf "%-11s %-72s %9s %14s %7s\n", g[i], tool[i], w[i], r[i], ratio
    }
  }' "$RES"
echo "(* the anchor)"
echo "load at start: $UPTIME_START"
echo "load at end:   $UPTIME_END"
