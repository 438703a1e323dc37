#!/usr/bin/env bash
# Runs every test against real servers. Installs what the tests need when it is missing:
# PostgreSQL server binaries and client, Redis, NATS, age, zstd, sshd (SFTP), rclone (WebDAV)
# (Debian packages) and an S3-compatible server (moto, from PyPI). Safe to run again: installs are skipped when present.
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
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Installing the postgresql package may start a system cluster; the tests never use it.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import moto.server, flask' 2>/dev/null; then
  echo "installing: moto[server]"
  python3 -m pip install -q 'moto[server]'
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test --locked --all-targets "$@"
