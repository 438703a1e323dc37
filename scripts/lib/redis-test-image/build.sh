#!/usr/bin/env bash
# Builds localhost/drctl-test/redis:latest for the container tests, from Debian's packages only
# (no registry of images is reachable where the tests run): a minimal Debian root with
# redis-server and redis-tools, imported into podman with an entrypoint that keeps the official
# redis image's contract (see docker-entrypoint.sh). Skipped when the image exists and was built
# from this script and entrypoint.
# Usage: build.sh
set -euo pipefail
image=localhost/drctl-test/redis:latest
here=$(cd "$(dirname "$0")" && pwd)
rev=$(cat "$0" "$here/docker-entrypoint.sh" | sha256sum | cut -c1-16)
if podman image exists "$image" &&
  [ "$(podman image inspect --format '{{index .Labels "drctl.entrypoint"}}' "$image")" = "$rev" ]; then
  exit 0
fi
. /etc/os-release
echo "building $image from Debian $VERSION_CODENAME's redis-server (about a minute)"
# setpriv (util-linux) drops to the redis user, as the official image's gosu does.
mmdebstrap --quiet --variant=apt --include=redis-server,redis-tools,util-linux \
  --customize-hook="upload $here/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
  --customize-hook='chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"' \
  --customize-hook='mkdir -p "$1/data" && chroot "$1" chown redis:redis /data' \
  "$VERSION_CODENAME" - |
  podman import --quiet \
    --change 'WORKDIR /data' \
    --change 'VOLUME /data' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["redis-server"]' \
    --change 'EXPOSE 6379' \
    --change "LABEL drctl.entrypoint=$rev" \
    - "$image" >/dev/null
