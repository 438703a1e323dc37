#!/usr/bin/env bash
# Benchmark: the restore time (RTO) `drctl verify` measures for one backup, in the same run,
# in each PostgreSQL sandbox:
#   local   a temporary cluster from /usr/lib/postgresql/<major>/bin (socket only)
#   url     a scratch database on an existing server (here: the throwaway source server itself)
#   docker  a postgres:<major> container, when a Docker engine answers at $DOCKER_HOST
#           (default /var/run/docker.sock); the image is $DRCTL_BENCH_DOCKER_IMAGE
#           (default "postgres:{major}"), pulled before timing so the pull is not counted.
# RTO is drctl's own figure (download + decrypt + server start + pg_restore); wall is the whole
# `drctl verify` command, checks and clean-up included. Best of RUNS.
# Usage: scripts/bench-verify.sh [SIZE_MB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-200}
RUNS=${2:-2}
IMAGE=${DRCTL_BENCH_DOCKER_IMAGE:-postgres:{major\}}
. scripts/lib/throwaway-pg.sh
ensure_pg_installed

start_bench

echo "==> building the database (this takes a while)"
make_bench_db app "$SIZE_MB"
"$DRCTL" keygen --output "$WORK/key.txt" > "$WORK/recipient.txt" 2>/dev/null
config() { # sandbox lines → $WORK/drctl.toml
  install -m 600 /dev/null "$WORK/drctl.toml"
  cat > "$WORK/drctl.toml" <<TOML
[encryption]
recipients = ["$(cat "$WORK/recipient.txt")"]
[daemon]
state_dir = "$WORK/state"
[[storage]]
name = "local"
type = "fs"
root = "$WORK/store"
[[source]]
name = "app"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PG_PORT/app"
[verify]
$1
TOML
}
config 'sandbox = "local"'
DRCTL_CONFIG="$WORK/drctl.toml" "$DRCTL" backup 2>/dev/null | tail -n1

engine=${DOCKER_HOST:-unix:///var/run/docker.sock}
sandboxes=(local url)
if python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "${engine#unix://}" 2>/dev/null; then
  sandboxes+=(docker)
  major=$("$PG_BIN/postgres" --version | awk '{print $3}' | cut -d. -f1)
  ref=${IMAGE//\{major\}/$major}
  if command -v docker >/dev/null && ! DOCKER_HOST=$engine docker image inspect "$ref" >/dev/null 2>&1; then
    DOCKER_HOST=$engine docker pull -q "$ref" >/dev/null
  fi
else
  echo "(no Docker engine at $engine: the docker sandbox is left out)"
fi

printf '\n%-8s %9s %9s\n' sandbox "RTO (s)" "wall (s)"
for sb in "${sandboxes[@]}"; do
  case $sb in
    local) config 'sandbox = "local"' ;;
    url) config "sandbox = \"url\"
url = \"postgres://postgres@127.0.0.1:$PG_PORT/postgres\"" ;;
    docker) config "sandbox = \"docker\"
docker_image = \"$IMAGE\"" ;;
  esac
  best_rto="" best_wall=""
  for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    DRCTL_CONFIG="$WORK/drctl.toml" "$DRCTL" verify --json --identity "$WORK/key.txt" > "$WORK/verify.json" 2>"$WORK/stderr.txt" ||
      { cat "$WORK/verify.json" "$WORK/stderr.txt"; exit 1; }
    wall=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")
    rto=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))[0]["rto_seconds"])' "$WORK/verify.json")
    if [ -z "$best_rto" ] || awk "BEGIN{exit !($rto < $best_rto)}"; then best_rto=$rto; best_wall=$wall; fi
  done
  printf '%-8s %9s %9s\n' "$sb" "$best_rto" "$best_wall"
done
