#!/usr/bin/env bash
# The dashboard test in a real headless Chromium: installs what it needs (Debian's chromium,
# playwright-core from the lock file) and FAILS, never skips, when it cannot.
#
#     bash tests/dashboard/run.sh            # release build, as scripts/test.sh builds
#     DASHBOARD_PROFILE=dev bash tests/dashboard/run.sh
#
# Screenshots land in target/dashboard/.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
fi
test -x /usr/bin/chromium || { echo "error: /usr/bin/chromium is missing" >&2; exit 1; }
command -v node >/dev/null || { echo "error: node is not installed" >&2; exit 1; }

echo "==> playwright-core"
(cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error)

echo "==> dashboard test in headless Chromium"
profile=(--release)
if [ "${DASHBOARD_PROFILE:-release}" = dev ]; then
    profile=()
fi
cargo test "${profile[@]}" --locked -p dolittle-runtime --test dashboard -- --ignored --nocapture
