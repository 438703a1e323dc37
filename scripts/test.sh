#!/usr/bin/env bash
# Runs every test against real servers. Installs what the tests need when it is missing:
# PostgreSQL server binaries and client, Redis, NATS, age, zstd, sshd (SFTP), rclone (WebDAV),
# podman + runc (a Docker-API engine for the `docker` verification sandbox) and mmdebstrap
# (Debian packages), two S3-compatible servers (moto from PyPI, s3s-fs from crates.io), and PostgreSQL, Redis and NATS container images
# built from Debian packages. Safe to run again: installs and the image build are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v age >/dev/null || need_apt+=(age)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v pg_dump >/dev/null || need_apt+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-check-rdb >/dev/null || need_apt+=(redis-tools)
command -v nats-server >/dev/null || need_apt+=(nats-server)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v rclone >/dev/null || need_apt+=(rclone)
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
# promtool checks and unit-tests scripts/prometheus-alerts.yml (tests/e2e/monitoring.rs).
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v openssl >/dev/null || need_apt+=(openssl)
# The status page is rendered in headless Chromium (tests/e2e/monitoring.rs).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Wait for another apt (unattended upgrades, a second test run) instead of failing on its lock.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  # Installing the postgresql package may start a system cluster; the tests never use it.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}" >/dev/null
fi
# The docker sandbox tests run the newest installed server major in a container.
pg_major=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1 | cut -d/ -f5)
bash scripts/lib/pg-test-image/build.sh "$pg_major"
# Container-source tests: Redis from Debian's redis-server, with the official image's contract.
bash scripts/lib/redis-test-image/build.sh
# NATS like the official scratch image (no shell, no tar): Debian's nats-server alone.
bash scripts/lib/nats-test-image/build.sh
if ! python3 -c 'import moto.server, flask' 2>/dev/null; then
  echo "installing: moto[server]"
  python3 -m pip install -q 'moto[server]'
fi
# A real SMTP server (with TLS) for the e-mail notifier's test.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing: aiosmtpd"
  python3 -m pip install -q aiosmtpd
fi
# A second S3 server that checks every signature and lacks parts of the API (no
# ListMultipartUploads), as small providers do: s3s-fs, built from crates.io (about 4 minutes, once).
tools=/var/tmp/drctl-tools
if ! command -v s3s-fs >/dev/null && [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing: s3s-fs into $tools (cargo install, about 4 minutes)"
  cargo install -q s3s-fs --version 0.13.0-alpha.3 --features binary --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

# Module layering: lower layers never reach up, no import cycles outside the model layer.
python3 scripts/module-cycles.py

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test --locked --all-targets "$@"
