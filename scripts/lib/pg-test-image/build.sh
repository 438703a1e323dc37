#!/usr/bin/env bash
# Builds localhost/drctl-test/postgres:<major> for the tests of the `docker` verification sandbox,
# from Debian's packages only (no registry of images is reachable where the tests run): a minimal
# Debian root with postgresql-<major>, imported into podman with an entrypoint that keeps the
# official postgres image's contract (see docker-entrypoint.sh). Skipped when the image exists.
# Usage: build.sh MAJOR
set -euo pipefail
major=${1:?usage: build.sh MAJOR}
image=localhost/drctl-test/postgres:$major
here=$(cd "$(dirname "$0")" && pwd)
# This script's and the entrypoint's hash is a label: an image built from older ones is rebuilt.
rev=$(cat "$0" "$here/docker-entrypoint.sh" | sha256sum | cut -c1-16)
if podman image exists "$image" &&
  [ "$(podman image inspect --format '{{index .Labels "drctl.entrypoint"}}' "$image")" = "$rev" ]; then
  exit 0
fi
. /etc/os-release
echo "building $image from Debian $VERSION_CODENAME's postgresql-$major (about a minute)"
mmdebstrap --quiet --variant=apt --include="postgresql-$major" \
  --customize-hook="upload $here/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
  --customize-hook='chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"' \
  --customize-hook='rm -rf "$1"/etc/postgresql/*/main "$1"/var/lib/postgresql/*/main' \
  "$VERSION_CODENAME" - |
  podman import --quiet \
    --change "ENV PG_MAJOR=$major" \
    --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'EXPOSE 5432' \
    --change 'STOPSIGNAL SIGINT' \
    --change "LABEL drctl.entrypoint=$rev" \
    - "$image" >/dev/null
