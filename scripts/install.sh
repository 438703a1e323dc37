#!/usr/bin/env bash
# Installs drctl on a VPS: the binary, the systemd unit and a config skeleton.
# Usage: sudo bash scripts/install.sh [path/to/drctl]   (default: builds a release binary)
# It never overwrites an existing config or environment file.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then
  cargo build --release --locked
  BIN="${CARGO_TARGET_DIR:-target}/release/drctl"
fi
install -m 0755 "$BIN" /usr/local/bin/drctl
install -d -m 0700 /etc/drctl /var/lib/drctl /var/backups/drctl
install -D -m 0644 README.md /usr/local/share/doc/drctl/README.md
cp -r runbooks /usr/local/share/doc/drctl/ 2>/dev/null || true
install -d -m 0755 /etc/drctl/policies
for p in policies/*.toml; do [ -e "/etc/drctl/$p" ] || install -m 0644 "$p" "/etc/drctl/$p"; done
if [ ! -e /etc/drctl/drctl.toml ]; then
  cat > /etc/drctl/drctl.toml <<'TOML'
# drctl config. Check it with: drctl validate --config /etc/drctl/drctl.toml
[encryption]
# Public keys only (age1…). Create one on a trusted machine with `drctl keygen --output key.txt`
# and keep key.txt OFFLINE: this host must not be able to read its own backups.
recipients = ["age1REPLACE_ME"]

[daemon]
timezone = "UTC"
state_dir = "/var/lib/drctl"

[[storage]]
name = "local"
type = "fs"
root = "/var/backups/drctl"

# [[storage]]
# name = "r2"
# type = "s3"
# bucket = "backups"
# endpoint = "https://ACCOUNT.r2.cloudflarestorage.com"
# region = "auto"
# access_key_id = "${R2_ACCESS_KEY_ID}"
# secret_access_key = "${R2_SECRET_ACCESS_KEY}"
# root = "/vps1"

[[source]]
name = "app-db"
type = "postgres"
url = "postgres://app:${PG_PASSWORD}@127.0.0.1:5432/app"
retention = "policies/default.toml"

[[job]]
name = "nightly"
schedule = "0 3 * * *"
max_age = "26h"
# ping_url = "https://hc-ping.com/YOUR-UUID"

# [[notify]]
# type = "slack"
# url = "${SLACK_WEBHOOK_URL}"
TOML
  chmod 0600 /etc/drctl/drctl.toml
  echo "wrote /etc/drctl/drctl.toml: edit it, then run: drctl validate --config /etc/drctl/drctl.toml"
fi
if [ ! -e /etc/drctl/env ]; then
  printf '# KEY=value lines for the daemon (secrets referenced as ${KEY} in drctl.toml)\n' > /etc/drctl/env
  chmod 0600 /etc/drctl/env
fi
if [ -d /run/systemd/system ]; then
  install -m 0644 scripts/drctl.service /etc/systemd/system/drctl.service
  systemctl daemon-reload
  echo "enable with: systemctl enable --now drctl"
else
  echo "no systemd here: run 'drctl daemon --config /etc/drctl/drctl.toml' under your supervisor"
fi
