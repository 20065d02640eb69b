#!/usr/bin/env bash
# install-test-deps.sh: installs, from Debian's packages, the real components
# the tests run against, if they are missing. scripts/test.sh calls it.
#
#   postfix, swaks                 the end-to-end rig (internal/postfixtest, e2e/)
#   postgresql                     the PostgreSQL store tests (scripts/pg-cluster.sh)
#   clamav-daemon, clamav-milter   the ClamAV sidecar end-to-end test
#   clamav (clamconf), systemd     checks of the contrib/ files
#   chromium                       the HTML report's headless-browser test (report/)
#
# It exits non-zero when a package cannot be installed: a missing component
# must fail the run, never turn its tests into skips.
set -euo pipefail

packages=(postfix swaks postgresql clamav-daemon clamav-milter clamav systemd chromium)

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps.sh: missing packages: ${missing[*]}; run as root (or install them) first" >&2
	exit 1
fi

echo "install-test-deps.sh: installing ${missing[*]}"
# Postfix asks how to configure the system's mailer; the tests run their own
# instance and need none, so answer "No configuration" and leave /etc/postfix
# without a main.cf (no system Postfix is started).
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
	installed "$p" || { echo "install-test-deps.sh: $p did not install" >&2; exit 1; }
done
