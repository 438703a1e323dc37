#!/usr/bin/env bash
# Restore-point picking among many backups over a slow link (#16 item 6): fabricates histories of
# 100, 1,000 and 10,000 backups of one source on a local S3 server (moto), then times
# `drctl restore --at … --dry-run` through a proxy that adds DELAY_MS to every request, once
# without the index (every manifest read) and once with it. Prints wall time, requests and peak
# RSS for each. Usage: scripts/bench-catalog.sh [DELAY_MS] [SIZES...]
set -euo pipefail
cd "$(dirname "$0")/.."
DELAY_MS=${1:-30}
shift || true
SIZES=${*:-100 1000 10000}
DRCTL=${DRCTL:-}
if [ -z "$DRCTL" ]; then
  cargo build --release --quiet
  DRCTL="${CARGO_TARGET_DIR:-target}/release/drctl"
fi
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
python3 -c 'import moto.server, boto3' 2>/dev/null || python3 -m pip install -q 'moto[server]'
WORK=$(mktemp -d /tmp/drctl-bench-catalog.XXXXXX)
pids=()
proxy_pid=
cleanup() { for p in "${pids[@]}" $proxy_pid; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3=$(port); PROXY=$(port)
python3 -m moto.server -H 127.0.0.1 -p "$S3" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$S3) 2>/dev/null && break; sleep 0.1; done
python3 scripts/lib/latency-proxy.py "$PROXY" "$S3" "$DELAY_MS" "$WORK/requests" & proxy_pid=$!
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 DRCTL_BENCH_S3=bench
python3 - "$S3" <<'PY'
import boto3, sys
boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}").create_bucket(Bucket="bench")
PY
"$DRCTL" keygen --output "$WORK/key.txt" > "$WORK/rcpt" 2>/dev/null
mkdir -p "$WORK/src" && echo hello > "$WORK/src/a.txt"
config() { # ROOT ENDPOINT_PORT
  install -m 600 /dev/null "$WORK/$1.toml"
  cat > "$WORK/$1.toml" <<TOML
[encryption]
recipients = ["$(cat "$WORK/rcpt")"]
[prune]
after_backup = false
[[storage]]
name = "s3"
type = "s3"
bucket = "bench"
endpoint = "http://127.0.0.1:$2"
region = "us-east-1"
access_key_id = "bench"
secret_access_key = "\${DRCTL_BENCH_S3}"
root = "/$1"
[[source]]
name = "app"
type = "files"
paths = ["$WORK/src"]
TOML
}
printf '%-8s %-8s %10s %10s %12s\n' backups index wall_s requests peak_rss_MiB
for n in $SIZES; do
  config "h$n" "$S3"
  # One real backup gives the template manifest; the history is fabricated from it.
  "$DRCTL" --config "$WORK/h$n.toml" backup >/dev/null 2>&1
  python3 - "$S3" "h$n" "$n" <<'PY'
import boto3, json, sys, datetime, random
from concurrent.futures import ThreadPoolExecutor
port, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bench", Prefix=f"{root}/manifests/app/")["Contents"]]
template = json.loads(s3.get_object(Bucket="bench", Key=keys[0])["Body"].read())
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
def put(i):
    t = start + datetime.timedelta(hours=i)
    mid = t.strftime("%Y%m%dT%H%M%SZ") + "-%08x" % random.getrandbits(32)
    m = dict(template, id=mid, run_id=mid, started_at=t.isoformat().replace("+00:00", "Z"),
             finished_at=t.isoformat().replace("+00:00", "Z"))
    s3.put_object(Bucket="bench", Key=f"{root}/manifests/app/{mid}.json", Body=json.dumps(m).encode())
with ThreadPoolExecutor(32) as ex:
    list(ex.map(put, range(n - 1)))
PY
  config "h$n-slow" "$PROXY"
  sed -i "s|root = \"/h$n-slow\"|root = \"/h$n\"|" "$WORK/h$n-slow.toml"
  for mode in without with; do
    if [ $mode = with ]; then
      # A second real backup writes the index (reading the fabricated manifests once, directly).
      "$DRCTL" --config "$WORK/h$n.toml" backup >/dev/null 2>&1
    else
      python3 -c "import boto3,sys; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3').delete_object(Bucket='bench', Key='h$n/index/app.json')"
    fi
    kill -TERM "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
    python3 scripts/lib/latency-proxy.py "$PROXY" "$S3" "$DELAY_MS" "$WORK/requests" & proxy_pid=$!
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PROXY) 2>/dev/null && break; sleep 0.05; done
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/rss" "$DRCTL" --config "$WORK/h$n-slow.toml" restore --at now --source app --dry-run >/dev/null
    t1=$(date +%s.%N)
    kill -TERM "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
    python3 scripts/lib/latency-proxy.py "$PROXY" "$S3" "$DELAY_MS" "$WORK/requests2" & proxy_pid=$!
    printf '%-8s %-8s %10.2f %10s %12.1f\n' "$n" "$mode" "$(echo "$t1 - $t0" | bc)" "$(cat "$WORK/requests")" "$(echo "$(cat "$WORK/rss") / 1024" | bc -l)"
  done
done
