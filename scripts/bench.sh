#!/usr/bin/env bash
# Benchmark: drctl backup (pg_dump → zstd -3 → age → fs storage) against, in the same run,
#   A) raw `pg_dump -Fc -Z0 > /dev/null` (the floor)
#   B) the shell pipeline `pg_dump -Fc -Z0 | zstd -3 -T1 | age -r KEY > file` that drctl replaces
# and drctl writing the same stream to two fs storages at once (the tee's cost), on a database
# of SIZE_MB (default 500). The commands run in RUNS alternating rounds; it prints medians of
# wall time (and its ratios to A and B), CPU seconds (and per GB of dump), peak RSS, and drctl's
# peak RSS on a database a quarter of that size, to show memory does not grow with the dump.
# DRCTL_BASELINE=/path/to/another/drctl adds that binary's `backup` to the same rounds, to tell
# a change from a noisy machine (before/after).
# Usage: [DRCTL_BASELINE=…] scripts/bench.sh [SIZE_MB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-500}
RUNS=${2:-3}
. scripts/lib/throwaway-pg.sh
ensure_pg_installed
need=(); command -v age >/dev/null || need+=(age); command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

start_bench

echo "==> building databases (this takes a while)"
make_bench_db big "$SIZE_MB"
make_bench_db small $(( SIZE_MB / 4 ))

"$DRCTL" keygen --output "$WORK/key.txt" > "$WORK/recipient.txt" 2>/dev/null
RCPT=$(cat "$WORK/recipient.txt")
for db in big small; do
install -m 600 /dev/null "$WORK/$db.toml"
cat > "$WORK/$db.toml" <<TOML
[encryption]
recipients = ["$RCPT"]
[compression]
algorithm = "zstd"
level = 3
[[storage]]
name = "local"
type = "fs"
root = "store-$db"
[[source]]
name = "$db"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PG_PORT/$db"
TOML
done
# The same source into two storages: one encoded stream, teed.
install -m 600 /dev/null "$WORK/big2.toml"
cp "$WORK/big.toml" "$WORK/big2.toml"
cat >> "$WORK/big2.toml" <<TOML
[[storage]]
name = "second"
type = "fs"
root = "store-big-second"
TOML

export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres
# run NAME CMD... → one timed run; appends "wall cpu rss self_rss" to $WORK/NAME.runs
# (wall and CPU = user + sys of the command and every child it waited for, in seconds; RSS in
# KiB: /usr/bin/time's is the largest single process, drctl's own VmHWM is in its log line).
run() {
  local name=$1; shift
  /usr/bin/time -v -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/stderr.txt" || { cat "$WORK/stderr.txt"; exit 1; }
  awk -F': ' -v self="$(grep -o 'peak_rss_kib=[0-9]*' "$WORK/stderr.txt" | tail -n1 | cut -d= -f2)" '
    /Elapsed \(wall clock\)/ {n=split($2,a,":"); w=0; for(i=1;i<=n;i++) w=w*60+a[i]}
    /User time/ {u=$2} /System time/ {s=$2} /Maximum resident set size/ {r=$2}
    END {printf "%s %.2f %s %s\n", w, u+s, r, (self=="" ? 0 : self)}' "$WORK/time.txt" >> "$WORK/$name.runs"
}
# col NAME K → the median of column K over NAME's runs; colmax NAME K → the largest
col() { sort -g -k"$2","$2" "$WORK/$1.runs" | awk -v k="$2" '{v[NR]=$k} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
colmax() { sort -g -k"$2","$2" "$WORK/$1.runs" | tail -n1 | awk -v k="$2" '{print $k}'; }

# Rounds alternate the commands (raw, shell, drctl, …, raw, shell, drctl, …) so that a slow
# stretch of a shared machine hits all of them alike; each figure is the median over the rounds.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "==> timing: $RUNS alternating rounds (load average: $LOAD_BEFORE)"
for _ in $(seq "$RUNS"); do
  run raw sh -c "pg_dump -Fc -Z0 -d big > /dev/null"
  run shell sh -c "pg_dump -Fc -Z0 -d big | zstd -3 -T1 -q | age -r $RCPT > $WORK/shell.age"
  run drctl env DRCTL_CONFIG="$WORK/big.toml" "$DRCTL" backup
  if [ -n "${DRCTL_BASELINE:-}" ]; then
    run baseline env DRCTL_CONFIG="$WORK/big.toml" "$DRCTL_BASELINE" backup
  fi
  run drctl2 env DRCTL_CONFIG="$WORK/big2.toml" "$DRCTL" backup
  run drctlsmall env DRCTL_CONFIG="$WORK/small.toml" "$DRCTL" backup
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
mib() { awk "BEGIN{printf \"%.1f\", $1 / 1024}"; }
RAW=$(col raw 1); SHELL_W=$(col shell 1)
DUMP_BYTES=$(pg_dump -Fc -Z0 -d big | wc -c)
row() { # label name rss
  local w c; w=$(col "$2" 1); c=$(col "$2" 2)
  printf '%-42s %8s %6s %8s %7s %8s %12s\n' "$1" "$w" "$(ratio "$w" "$RAW")" "$(ratio "$w" "$SHELL_W")" "$c" \
    "$(awk "BEGIN{printf \"%.2f\", $c / ($DUMP_BYTES / 1e9)}")" "$3"
}
echo
echo "database: big = $(pg_psql -c "select pg_size_pretty(pg_database_size('big'))"), dump = $(awk "BEGIN{printf \"%.0f MB\", $DUMP_BYTES / 1e6}") (pg_dump -Fc -Z0), $(ls -l "$WORK"/store-big/data/big/*.age | awk 'NR==1{printf "%.0f MiB stored", $5/1048576}')"
echo "$(nproc) cores; load average before: $LOAD_BEFORE, after: $LOAD_AFTER; medians of $RUNS alternating rounds"
printf '%-42s %8s %6s %8s %7s %8s %12s\n' "command" "wall (s)" "× raw" "× shell" "CPU (s)" "CPU s/GB" "peak RSS MiB"
row "pg_dump -Fc -Z0 > /dev/null" raw "$(mib "$(colmax raw 3)")"
row "pg_dump -Fc -Z0 | zstd -3 -T1 | age > file" shell "n/a (3 procs)"
row "drctl backup (fs)" drctl "$(mib "$(colmax drctl 4)")"
if [ -n "${DRCTL_BASELINE:-}" ]; then
  row "baseline drctl backup (fs)" baseline "$(mib "$(colmax baseline 4)")"
fi
row "drctl backup (2 fs storages, teed)" drctl2 "$(mib "$(colmax drctl2 4)")"
SELF_big=$(colmax drctl 4); SELF_small=$(colmax drctlsmall 4)
echo "(CPU = user + sys of the command and its children: pg_dump, zstd and age in the shell pipeline; pg_dump and"
echo " drctl for drctl; not the PostgreSQL server. drctl's RSS is its own VmHWM, without its pg_dump child.)"
echo
echo "drctl's own peak RSS (VmHWM, self-reported): big $(mib "$SELF_big") MiB, small (1/4 size) $(mib "$SELF_small") MiB"
DRCTL_W=$(col drctl 1)
echo "targets: wall ≤ shell pipeline: $(awk "BEGIN{print ($DRCTL_W <= $SHELL_W) ? \"met\" : \"NOT met\"}");" \
     "wall ≤ 1.25× raw: $(awk "BEGIN{print ($DRCTL_W <= 1.25 * $RAW) ? \"met\" : \"NOT met\"}");" \
     "own RSS ≤ 64 MiB: $(awk "BEGIN{print ($SELF_big <= 65536) ? \"met\" : \"NOT met\"}");" \
     "flat within ±10 %: $(awk "BEGIN{d=($SELF_big-$SELF_small)/$SELF_small; if (d<0) d=-d; print (d <= 0.10) ? \"met\" : \"NOT met\"}")"
