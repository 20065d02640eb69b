#!/usr/bin/env bash
# systemd-test.sh: runs the Debian package under a real systemd, as an admin
# would. It builds the package (scripts/package.sh), makes a minimal Debian 12
# root (debootstrap --variant=minbase, plus systemd), boots it with systemd as
# PID 1 (systemd-nspawn, sharing this machine's network), installs the package
# there with apt (so its Depends are fetched, not assumed), and checks:
#
#   - systemctl start returns only once the daemon answers (Type=notify: the
#     first request, sent once with no retry, must get the greylisting
#     deferral);
#   - every decision line reaches the journal, past a journald rate limit
#     that would let a few hundred of 2,000 through (the unit sets its own);
#   - systemctl reload right after a restart reaches the new daemon, which
#     reloads and keeps running;
#   - the gc service runs to success;
#   - systemctl stop ends the daemon with status 0.
#
# Then, with the package purged and its user deleted, it runs the README's
# install from source ("As a service": its shell block, as printed there,
# with the package's binary) and checks that the service it enables starts
# with the example config and answers.
#
# scripts/test.sh runs it; as root:
#
#   scripts/systemd-test.sh
#
# A missing tool (debootstrap, systemd-nspawn, nsenter) fails the test;
# nothing is skipped. DEBIAN_MIRROR overrides the mirror debootstrap uses.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/policy.sh
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

fail() { echo "systemd-test.sh: $*" >&2; exit 1; }
step() { printf -- '--- %s\n' "$*"; }

for tool in debootstrap systemd-nspawn nsenter dpkg-deb; do
	command -v "$tool" >/dev/null || fail "$tool is missing (scripts/install-test-deps.sh installs it)"
done
[ "$(id -u)" -eq 0 ] || fail "must run as root: it boots a container"

tmp=$(mktemp -d /tmp/mxp-systemd-XXXXXX)
root=$tmp/root
machine=mxp-systemd-$$
nspawn=""
cleanup() {
	if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
		# SIGTERM asks the container's systemd to power off (systemd-nspawn(1)).
		kill -TERM "$nspawn" 2>/dev/null || true
		for _ in $(seq 300); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$nspawn" 2>/dev/null || true
		wait "$nspawn" 2>/dev/null || true
	fi
	# A debootstrap killed halfway leaves /proc and /sys mounted in the
	# root; --one-file-system keeps rm out of them.
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

step "build the package, and the load tool"
deb=$(scripts/package.sh "$tmp")
go build -o "$tmp/" ./cmd/mxpolicyd-load

step "a minimal Debian 12 root with systemd (debootstrap)"
# debootstrap fetches about a hundred packages with no retry of its own
# (apt, below, retries by itself: Acquire::Retries), so a failed attempt
# is tried again from scratch, up to three times.
for attempt in 1 2 3; do
	rm -rf --one-file-system "$root"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$root" \
		"${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp/debootstrap.log" 2>&1 && break
	tail -5 "$tmp/debootstrap.log" >&2
	[ "$attempt" -lt 3 ] || fail "debootstrap failed three times"
	echo "systemd-test.sh: debootstrap attempt $attempt failed; trying again" >&2
done
cp "$deb" "$root/root/mxpolicyd.deb"

step "boot it (systemd-nspawn)"
# --register=no and --keep-unit: no machined or systemd on this side to
# register with; the container shares this machine's network.
systemd-nspawn -D "$root" -M "$machine" --register=no --keep-unit --console=read-only \
	--resolv-conf=copy-host -b >"$tmp/console.log" 2>&1 </dev/null &
nspawn=$!
pid1=""
for _ in $(seq 300); do
	pid1=$(pgrep -P "$nspawn" -x systemd || true)
	[ -n "$pid1" ] && break
	kill -0 "$nspawn" 2>/dev/null || { cat "$tmp/console.log" >&2; fail "systemd-nspawn exited"; }
	sleep 0.1
done
[ -n "$pid1" ] || { cat "$tmp/console.log" >&2; fail "no systemd in the container"; }
inside() { nsenter -t "$pid1" -a -- "$@"; }
# systemctl fails to connect until systemd has opened its socket; then
# --wait returns once start-up is over.
state=""
for _ in $(seq 600); do
	state=$(inside systemctl is-system-running --wait 2>/dev/null || true)
	[ -z "$state" ] || break
	sleep 0.2
done
case $state in
running | degraded) echo "container: $state" ;;
*) cat "$tmp/console.log" >&2; fail "the container's systemd is '$state'" ;;
esac

step "install the package with apt"
inside apt-get update -q >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; fail "apt-get update failed"; }
if ! inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	/root/mxpolicyd.deb >>"$tmp/apt.log" 2>&1; then
	cat "$tmp/apt.log" >&2
	fail "apt-get install of the package failed"
fi
inside systemctl --quiet is-enabled mxpolicyd.service && fail "the package enabled mxpolicyd.service"

# The admin's edit of the installed config: free loopback ports (the
# network is this machine's), SPF off (no DNS here), enforcing.
port=$(free_port) || fail "no free loopback port"
inside sh -c 'cat >/etc/mxpolicyd/mxpolicyd.yaml' <<EOF
listen: ["127.0.0.1:$port"]
observe: false
checks:
  spf: {enabled: false}
EOF

show() { inside systemctl show -p "$1" --value "${2:-mxpolicyd.service}"; }

# journald drops a service's messages past RateLimitBurst= in
# RateLimitIntervalSec= (journald.conf(5): 10000 in 30 s, times a factor
# of 1 to 6 from the journal's free disk space). A small system-wide limit
# here stands for a busy MX's decision lines against the default one: the
# unit must lift it for itself (the "decision lines" step below).
inside mkdir -p /etc/systemd/journald.conf.d
inside sh -c 'printf "[Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=100\n" >/etc/systemd/journald.conf.d/mxpolicyd-test.conf'
inside systemctl restart systemd-journald.service

step "systemctl start: returns once the daemon answers"
inside systemctl start mxpolicyd.service
[ "$(show Type)" = notify ] || fail "mxpolicyd.service has Type=$(show Type), want notify"
reply=$(policy_ask "$port" bob@example.net)
case $reply in
action=DEFER_IF_PERMIT*) echo "first request after start: $reply" ;;
*) inside journalctl -u mxpolicyd --no-pager >&2; fail "first request after start got '$reply', want the deferral" ;;
esac

step "decision lines: every one reaches the journal, past journald's rate limit"
# 2000 decisions in a second or two: twenty times the burst set above,
# more than its disk-space factor allows.
decisions() { inside journalctl --no-pager -o cat -u mxpolicyd.service | grep -c ' msg=decision ' || true; }
before=$(decisions)
sum=$("$tmp/mxpolicyd-load" -addr "127.0.0.1:$port" -conns 4 -requests 2000 -duration 0 -summary) ||
	fail "mxpolicyd-load failed: $sum"
answered=$(tr ' ' '\n' <<<"$sum" | sed -n 's/^answered=//p')
[ "$answered" = 2000 ] || fail "mxpolicyd-load: $sum"
# The daemon writes its lines within a millisecond; journald takes them
# in its own time.
got=0
for _ in $(seq 150); do
	got=$(($(decisions) - before))
	[ "$got" -ge "$answered" ] && break
	sleep 0.1
done
if [ "$got" -ne "$answered" ]; then
	# journald says "Suppressed N messages" once the interval is over;
	# the daemon's own drops are its "log records dropped" warning.
	echo "LogRateLimitIntervalUSec=$(show LogRateLimitIntervalUSec) LogRateLimitBurst=$(show LogRateLimitBurst)" >&2
	inside journalctl --no-pager -o short-precise | grep -v ' msg=decision ' | tail -20 >&2
	fail "the journal holds $got decision lines of the $answered decisions"
fi
echo "decision lines in the journal: $got of $answered"

step "systemctl reload right after a restart"
inside systemctl restart mxpolicyd.service
inside systemctl reload mxpolicyd.service || { inside journalctl -u mxpolicyd --no-pager >&2; fail "systemctl reload failed"; }
invocation=$(show InvocationID)
# The journal is read whole before grep: with pipefail, "journalctl |
# grep -q" fails at random when grep exits early and journalctl gets SIGPIPE.
reloaded() { grep -q 'config reloaded' <<<"$(inside journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$invocation")"; }
for _ in $(seq 100); do
	reloaded && break
	sleep 0.1
done
reloaded ||
	{ inside journalctl -u mxpolicyd --no-pager >&2; fail "the daemon never logged the reload"; }
[ "$(show ActiveState)/$(show NRestarts)" = active/0 ] ||
	fail "after the reload: $(show ActiveState), $(show NRestarts) restarts"
reply=$(policy_ask "$port" carol@example.net)
[[ $reply == action=DEFER_IF_PERMIT* ]] || fail "request after the reload got '$reply'"

step "the gc service"
inside systemctl start mxpolicyd-gc.service ||
	{ inside journalctl -u mxpolicyd-gc --no-pager >&2; fail "mxpolicyd-gc.service failed"; }
[ "$(show Result mxpolicyd-gc.service)" = success ] || fail "mxpolicyd-gc.service: $(show Result mxpolicyd-gc.service)"

step "systemctl stop: status 0"
inside systemctl stop mxpolicyd.service
[ "$(show Result)/$(show ExecMainStatus)" = success/0 ] ||
	fail "after stop: Result=$(show Result) ExecMainStatus=$(show ExecMainStatus)"

step "the README's install from source, on a clean system"
inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q mxpolicyd >>"$tmp/apt.log" 2>&1 ||
	{ cat "$tmp/apt.log" >&2; fail "apt-get purge failed"; }
inside userdel mxpolicyd
inside getent group mxpolicyd >/dev/null && inside groupdel mxpolicyd
# The README's block, run from a copy of what it names: the binary (the
# package's), contrib/ and the whitelist files. Only the example config's
# port changes, to a free one (the network is this machine's).
src=$root/root/src
mkdir -p "$src/packaging/deb"
dpkg-deb -x "$deb" "$tmp/deb"
cp "$tmp/deb/usr/bin/mxpolicyd" "$src/"
cp -r contrib "$src/"
cp packaging/deb/whitelist_clients packaging/deb/whitelist_recipients "$src/packaging/deb/"
port=$(free_port) || fail "no free loopback port"
sed -i "s/127.0.0.1:10040/127.0.0.1:$port/" "$src/contrib/config/mxpolicyd.example.yaml"
awk '/^- \*\*As a service\*\*/ { svc = 1 }
	svc && /^  ```sh$/ { block = 1; next }
	block && /^  ```$/ { exit }
	block { sub(/^  /, ""); print }' README.md >"$src/install.sh"
[ -s "$src/install.sh" ] || fail "no shell block under the README's \"As a service\""
inside bash -euo pipefail -c 'cd /root/src && . ./install.sh' ||
	{ inside journalctl -u mxpolicyd --no-pager >&2; fail "the README's install steps failed"; }
[ "$(inside stat -c %G:%a /etc/mxpolicyd/mxpolicyd.yaml)" = mxpolicyd:640 ] ||
	fail "the config is $(inside stat -c %G:%a /etc/mxpolicyd/mxpolicyd.yaml), want group mxpolicyd, mode 640"
[ "$(show ActiveState)/$(show ActiveState mxpolicyd-gc.timer)" = active/active ] ||
	{ inside journalctl -u mxpolicyd --no-pager >&2; fail "after the README's steps: mxpolicyd $(show ActiveState), timer $(show ActiveState mxpolicyd-gc.timer)"; }
# The example config observes (answers DUNNO) and its DNS server is absent
# here, which fails open.
reply=$(policy_ask "$port" dave@example.net)
[ "$reply" = action=DUNNO ] || { inside journalctl -u mxpolicyd --no-pager >&2; fail "the README's install answered '$reply', want action=DUNNO"; }
inside systemctl stop mxpolicyd.service
[ "$(show Result)/$(show ExecMainStatus)" = success/0 ] ||
	fail "after stop: Result=$(show Result) ExecMainStatus=$(show ExecMainStatus)"
echo "systemd-test.sh: ok ($(basename "$deb"), and the README's install from source)"
