#!/usr/bin/env bash
# Builds localhost/drctl-test/nats:latest for the container tests, shaped like the official
# scratch-based `nats` image: no shell, no tar, no package manager — only Debian's nats-server
# binary at /nats-server, the shared libraries it links (read from ldd), an empty /data, and
# ENTRYPOINT ["/nats-server"]; compose files give `command: -js -sd /data`. Made from a
# directory on this host (no image registry is reachable where the tests run) and imported
# with `podman import`. Skipped when the image exists and was built by this script from the
# same nats-server binary.
# Usage: build.sh
set -euo pipefail
image=localhost/drctl-test/nats:latest
bin=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$bin" ] || { echo "nats-server is missing: apt-get install nats-server" >&2; exit 1; }
rev=$(cat "$0" "$bin" | sha256sum | cut -c1-16)
if podman image exists "$image" &&
  [ "$(podman image inspect --format '{{index .Labels "drctl.build"}}' "$image")" = "$rev" ]; then
  exit 0
fi
echo "building $image from $bin (scratch-like: no shell, no tar)"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -m 755 "$bin" "$root/nats-server"
# The loader and every library ldd names, at the same paths (a static binary has none).
for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
mkdir -p "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"
for forbidden in sh bin/sh tar bin/tar usr/bin/tar; do
  [ ! -e "$root/$forbidden" ] || { echo "the image must have no $forbidden" >&2; exit 1; }
done
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
  podman import --quiet \
    --change 'VOLUME /data' \
    --change 'ENTRYPOINT ["/nats-server"]' \
    --change 'CMD ["-js", "-sd", "/data"]' \
    --change 'EXPOSE 4222' \
    --change "LABEL drctl.build=$rev" \
    - "$image" >/dev/null
