#!/usr/bin/env bash
# Builds the drctl image from the repository's Containerfile for the tests, with no image
# registry: the base is a minimal Debian root made by mmdebstrap (with ca-certificates, age and
# zstd, so the Containerfile's apt step is skipped) imported into podman, and the binary is the
# one given (copied into a temporary build context; `--target prebuilt`).
# Skipped when an image built from the same binary, Containerfile and script exists.
# Usage: build.sh DRCTL_BINARY [IMAGE]   (IMAGE default: localhost/drctl-test/drctl:latest)
set -euo pipefail
binary=${1:?usage: build.sh DRCTL_BINARY [IMAGE]}
image=${2:-localhost/drctl-test/drctl:latest}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. /etc/os-release
base=localhost/drctl-test/debian-base:$VERSION_CODENAME

# The same runtime settings as the tests' engine (support/docker.rs): runc with cgroupfs and
# modest rlimits, which sandboxes without CAP_SYS_RESOURCE accept.
if [ -z "${CONTAINERS_CONF:-}" ]; then
  conf=$(mktemp)
  trap 'rm -f "$conf"' EXIT
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$conf"
  export CONTAINERS_CONF=$conf
fi

base_rev=$(sha256sum "$0" | cut -c1-16)
if ! podman image exists "$base" ||
  [ "$(podman image inspect --format '{{index .Labels "drctl.base"}}' "$base")" != "$base_rev" ]; then
  echo "building $base from Debian $VERSION_CODENAME (about a minute)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,age,zstd \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$VERSION_CODENAME" - |
    podman import --quiet --change "LABEL drctl.base=$base_rev" --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi

rev=$(cat "$binary" "$root/Containerfile" "$0" | sha256sum | cut -c1-16)
if podman image exists "$image" &&
  [ "$(podman image inspect --format '{{index .Labels "drctl.build"}}' "$image")" = "$rev" ]; then
  exit 0
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx" ${conf:+"$conf"}' EXIT
cp "$binary" "$ctx/drctl"
cp "$root/Containerfile" "$ctx/Containerfile"
echo "building $image from $binary"
podman build --quiet --pull=never --target prebuilt --build-arg "BASE=$base" \
  --label "drctl.build=$rev" -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
