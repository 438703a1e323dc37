#!/usr/bin/env bash
# The monthly restore test, for any CI: restores the newest backup of every source from the
# production storage into throwaway servers and checks it (`drctl verify`).
#
# Environment:
#   DRCTL_CONFIG            the production config (the same drctl.toml the VPS uses)
#   DRCTL_IDENTITY          the age identity itself (AGE-SECRET-KEY-…), from a CI secret
#   plus whatever ${VARS} the config references (storage credentials).
# Exit status: 0 when every source verified, 1 otherwise. Prints a summary either way.
set -euo pipefail
: "${DRCTL_CONFIG:?set DRCTL_CONFIG to the config file}"
: "${DRCTL_IDENTITY:?set DRCTL_IDENTITY to the age identity (a CI secret)}"
DRCTL=${DRCTL:-drctl}
umask 077
KEY=$(mktemp)
trap 'rm -f "$KEY"' EXIT
printf '%s\n' "$DRCTL_IDENTITY" > "$KEY"

set +e
"$DRCTL" verify --identity "$KEY" "$@" | tee verify-summary.txt
status=${PIPESTATUS[0]}
set -e
echo
if [ "$status" -eq 0 ]; then
  echo "restore test PASSED: every source restored and matched what was dumped"
else
  echo "restore test FAILED (exit $status): see the FAIL lines above and runbooks/08-restore-test-failed.md" >&2
fi
exit "$status"
