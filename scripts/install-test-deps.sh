#!/usr/bin/env bash
# install-test-deps.sh: installs, from Debian's packages, the real components
# the tests run against, if they are missing. scripts/test.sh calls it.
#
#   postfix, swaks                 the end-to-end rig (internal/postfixtest, e2e/)
#   postgresql                     the PostgreSQL store tests (scripts/pg-cluster.sh)
#   clamav-daemon, clamav-milter   the ClamAV sidecar end-to-end test
#   clamav (clamconf), systemd     checks of the contrib/ files
#   chromium                       the HTML report's headless-browser test (report/)
#   prometheus (promtool)          the alert rules' checks and unit tests (contrib/)
#   docker-compose                 `docker-compose config` on contrib/compose (no engine needed)
#   buildah, podman, runc          the container image build and run (scripts/image.sh)
#   lintian                        the Debian package's checks (scripts/package-test.sh)
#   debootstrap, systemd-container the package under a real systemd (scripts/systemd-test.sh)
#   postgrey, sqlgrey, db-util,    the switch-day import tests (e2e/import_test.go): the real
#   libdbd-sqlite3-perl, libdbd-pg-perl  greylisters on loopback, db_dump for postgrey's files
#   pgbouncer                      the daemon behind a transaction pool (e2e/pgbouncer_test.go)
#
# It exits non-zero when a package cannot be installed: a missing component
# must fail the run, never turn its tests into skips.
set -euo pipefail

packages=(postfix swaks postgresql clamav-daemon clamav-milter clamav systemd chromium
	prometheus docker-compose buildah podman runc lintian debootstrap systemd-container
	postgrey sqlgrey db-util libdbd-sqlite3-perl libdbd-pg-perl pgbouncer)

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
# Only promtool is wanted from the prometheus package, and postgrey, sqlgrey and
# pgbouncer must not run system-wide (the tests start their own on loopback): a policy-rc.d that
# answers 101 ("action forbidden") keeps its service from starting
# (invoke-rc.d(8); /usr/share/doc/init-system-helpers/README.policy-rc.d.gz).
# One the machine already has is left as it is.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
	installed "$p" || { echo "install-test-deps.sh: $p did not install" >&2; exit 1; }
done
