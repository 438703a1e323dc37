#!/usr/bin/env bash
# Benchmark: drctl backup (pg_dump → zstd -3 → age → fs storage) against, in the same run,
#   A) raw `pg_dump -Fc -Z0 > /dev/null`
#   B) the shell pipeline `pg_dump -Fc -Z0 | zstd -3 | age -r KEY > file`
# and drctl writing the same stream to two fs storages at once (the tee's cost),
# on a database of SIZE_MB (default 500), printing wall-time ratios and peak RSS, then drctl's
# peak RSS on a database a quarter of that size, to show memory does not grow with the dump.
# DRCTL_BASELINE=/path/to/another/drctl adds that binary's `backup` to the same run, to tell a
# regression from a noisy machine.
# Usage: [DRCTL_BASELINE=…] scripts/bench.sh [SIZE_MB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-500}
RUNS=${2:-2}
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
# measure NAME CMD... → sets WALL_<NAME> (s) and RSS_<NAME> (KiB): best of $RUNS
measure() {
  local name=$1; shift
  local best_wall="" best_rss=""
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -v -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/stderr.txt" || { cat "$WORK/stderr.txt"; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then best_wall=$wall; best_rss=$rss; fi
  done
  printf -v "WALL_$name" '%s' "$best_wall"; printf -v "RSS_$name" '%s' "$best_rss"
}
drctl_self_rss() { grep -o 'peak_rss_kib=[0-9]*' "$WORK/stderr.txt" | tail -n1 | cut -d= -f2; }

echo "==> timing (best of $RUNS runs each)"
measure raw sh -c "pg_dump -Fc -Z0 -d big > /dev/null"
measure shell sh -c "pg_dump -Fc -Z0 -d big | zstd -3 -q | age -r $RCPT > $WORK/shell.age"
measure drctl env DRCTL_CONFIG="$WORK/big.toml" "$DRCTL" backup
SELF_big=$(drctl_self_rss)
measure drctl2 env DRCTL_CONFIG="$WORK/big2.toml" "$DRCTL" backup
SELF_big2=$(drctl_self_rss)
if [ -n "${DRCTL_BASELINE:-}" ]; then
  measure baseline env DRCTL_CONFIG="$WORK/big.toml" "$DRCTL_BASELINE" backup
fi
measure drctlsmall env DRCTL_CONFIG="$WORK/small.toml" "$DRCTL" backup
SELF_small=$(drctl_self_rss)

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
mib() { awk "BEGIN{printf \"%.1f\", $1 / 1024}"; }
echo
echo "database: big = $(pg_psql -c "select pg_size_pretty(pg_database_size('big'))"), dump = $(ls -l "$WORK"/store-big/data/big/*.age | awk 'NR==1{printf "%.0f MiB stored", $5/1048576}')"
printf '%-44s %9s %8s %14s\n' "command" "wall (s)" "× raw" "peak RSS (MiB)"
printf '%-44s %9s %8s %14s\n' "pg_dump -Fc -Z0 > /dev/null" "$WALL_raw" "1.00" "$(mib "$RSS_raw")"
printf '%-44s %9s %8s %14s\n' "pg_dump -Fc -Z0 | zstd -3 | age > file" "$WALL_shell" "$(ratio "$WALL_shell" "$WALL_raw")" "n/a (pipeline)"
printf '%-44s %9s %8s %14s\n' "drctl backup (fs)" "$WALL_drctl" "$(ratio "$WALL_drctl" "$WALL_raw")" "$(mib "$RSS_drctl")"
printf '%-44s %9s %8s %14s\n' "drctl backup (2 fs storages, teed)" "$WALL_drctl2" "$(ratio "$WALL_drctl2" "$WALL_raw")" "$(mib "$SELF_big2") (own)"
if [ -n "${DRCTL_BASELINE:-}" ]; then
  printf '%-44s %9s %8s %14s\n' "baseline drctl backup (fs)" "$WALL_baseline" "$(ratio "$WALL_baseline" "$WALL_raw")" "$(mib "$RSS_baseline")"
fi
echo
echo "drctl's own peak RSS (VmHWM, self-reported): big $(mib "$SELF_big") MiB, small (1/4 size) $(mib "$SELF_small") MiB"
echo "  (/usr/bin/time's figure for drctl is the max over drctl and its pg_dump child: big $(mib "$RSS_drctl"), small $(mib "$RSS_drctlsmall") MiB)"
echo "targets: wall ≤ 1.25× raw: $(awk "BEGIN{print ($WALL_drctl <= 1.25 * $WALL_raw) ? \"met\" : \"NOT met\"}");" \
     "own RSS ≤ 64 MiB: $(awk "BEGIN{print ($SELF_big <= 65536) ? \"met\" : \"NOT met\"}");" \
     "flat within ±10 %: $(awk "BEGIN{d=($SELF_big-$SELF_small)/$SELF_small; if (d<0) d=-d; print (d <= 0.10) ? \"met\" : \"NOT met\"}")"
