#!/usr/bin/env bash
# package-test.sh: builds the Debian package (scripts/package.sh), runs
# lintian on it, installs it on this machine with dpkg -i, checks what it
# installed, then removes and purges it. scripts/test.sh runs it; as root:
#
#   scripts/package-test.sh
#
# A missing tool (dpkg, lintian) fails the test; nothing is skipped. It
# refuses to run where mxpolicyd is already installed or its directories
# exist, since it purges them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

fail() { echo "package-test.sh: $*" >&2; exit 1; }
step() { printf -- '--- %s\n' "$*"; }
installed() { dpkg-query -W -f='${Status}' mxpolicyd 2>/dev/null | grep -q ' installed$'; }

for tool in dpkg dpkg-deb dpkg-query dpkg-statoverride lintian setpriv; do
	command -v "$tool" >/dev/null || fail "$tool is missing (scripts/install-test-deps.sh installs it)"
done
[ "$(id -u)" -eq 0 ] || fail "must run as root: it installs the package"
! installed || fail "mxpolicyd is installed here; remove it (dpkg -P mxpolicyd) first"
for d in /etc/mxpolicyd /var/lib/mxpolicyd; do
	[ ! -e "$d" ] || fail "$d exists; this test would purge it"
done

out=$(mktemp -d /tmp/mxp-pkgtest-XXXXXX)
cleanup() {
	if installed; then dpkg -P mxpolicyd >/dev/null || true; fi
	rm -rf "$out"
}
trap cleanup EXIT

step "build"
deb=$(scripts/package.sh "$out")
dpkg-deb -c "$deb" >"$out/contents"

step "lintian"
# Warnings count as failures: each one left is either fixed or overridden
# with its reason in packaging/deb/lintian-overrides.
lintian --allow-root --fail-on error,warning --info "$deb"

step "contents"
# Every entry root-owned; directories and the binary 0755, files 0644.
while read -r mode owner _ _ _ path _; do
	case "$path" in
	./usr/bin/mxpolicyd) want=-rwxr-xr-x ;;
	*/) want=drwxr-xr-x ;;
	*) want=-rw-r--r-- ;;
	esac
	[ "$mode $owner" = "$want root/root" ] || fail "$path is $mode $owner, want $want root/root"
done <"$out/contents"
for path in ./usr/bin/mxpolicyd ./etc/mxpolicyd/mxpolicyd.yaml \
	./etc/mxpolicyd/whitelist_clients ./etc/mxpolicyd/whitelist_recipients \
	./usr/lib/systemd/system/mxpolicyd.service ./usr/lib/systemd/system/mxpolicyd-gc.service \
	./usr/lib/systemd/system/mxpolicyd-gc.timer ./usr/lib/sysusers.d/mxpolicyd.conf \
	./usr/share/doc/mxpolicyd/README.md.gz ./usr/share/doc/mxpolicyd/copyright \
	./usr/share/doc/mxpolicyd/changelog.Debian.gz ./usr/share/doc/mxpolicyd/examples/main.cf.snippet \
	./usr/share/doc/mxpolicyd/examples/main.cf.unix.snippet \
	./usr/share/man/man8/mxpolicyd.8.gz ./usr/share/man/man8/mxpolicyd-serve.8.gz \
	./usr/share/man/man8/mxpolicyd-config-check.8.gz \
	./usr/share/bash-completion/completions/mxpolicyd \
	./usr/share/zsh/vendor-completions/_mxpolicyd \
	./usr/share/fish/vendor_completions.d/mxpolicyd.fish \
	./usr/share/lintian/overrides/mxpolicyd; do
	grep -q " $path\$" "$out/contents" || fail "the package lacks $path"
done
! grep -q gendocs "$out/contents" || fail "the hidden gendocs command has a man page"

step "install"
dpkg -i "$deb"
installed || fail "dpkg -i left mxpolicyd not installed"

step "version and config from the installed paths"
describe=$(zcat /usr/share/doc/mxpolicyd/changelog.Debian.gz | sed -n 's/.*git describe \([^ ]*\)\.$/\1/p')
[ -n "$describe" ] || fail "changelog.Debian.gz names no git describe"
got=$(/usr/bin/mxpolicyd version)
[ "$got" = "mxpolicyd $describe" ] || fail "mxpolicyd version printed \"$got\", want \"mxpolicyd $describe\""
debversion=$(dpkg-query -W -f='${Version}' mxpolicyd)
[[ $debversion == *"$(git rev-parse --short "${describe%-dirty}" 2>/dev/null || echo "$describe")"* ]] ||
	fail "package version $debversion does not name commit $describe"
echo "mxpolicyd version: $got (package $debversion)"
/usr/bin/mxpolicyd --config /etc/mxpolicyd/mxpolicyd.yaml config check >/dev/null
# The daemon's user must read its config (group mxpolicyd, 0640).
setpriv --reuid mxpolicyd --regid mxpolicyd --init-groups \
	/usr/bin/mxpolicyd --config /etc/mxpolicyd/mxpolicyd.yaml config check >/dev/null
# Output is read whole before grep: with pipefail, "cmd | grep -q" fails
# at random when grep exits on its match and cmd's next write gets SIGPIPE.
grep -q '^check' <<<"$(/usr/bin/mxpolicyd __complete config "" 2>/dev/null)" ||
	fail "completion of \"mxpolicyd config\" does not offer check"
bash -c '. /usr/share/bash-completion/completions/mxpolicyd && declare -F __start_mxpolicyd >/dev/null' ||
	fail "the bash completion defines no __start_mxpolicyd"
grep -q '^\.TH "MXPOLICYD-SERVE" "8"' <<<"$(zcat /usr/share/man/man8/mxpolicyd-serve.8.gz)" ||
	fail "mxpolicyd-serve.8 has no section 8 header"

step "installed owners and modes"
# What dpkg -c promised, on disk; the config became root:mxpolicyd 0640
# (it may hold DNS list keys) by the postinst's stat override.
while read -r mode owner _ _ _ path _; do
	path=${path#.}
	[ "$path" != / ] || continue
	want="${mode:1} ${owner/\//:}"
	[ "$path" != /etc/mxpolicyd/mxpolicyd.yaml ] || want="rw-r----- root:mxpolicyd"
	got=$(stat -c '%A %U:%G' "${path%/}")
	[ "$got" = "${mode:0:1}$want" ] || fail "$path is $got, want ${mode:0:1}$want"
done <"$out/contents"

step "user, state directory, services"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd mxpolicyd) || fail "no user mxpolicyd"
[ "$home" = /var/lib/mxpolicyd ] || fail "mxpolicyd's home is $home"
case "$shell" in */nologin) ;; *) fail "mxpolicyd's shell is $shell" ;; esac
getent group mxpolicyd >/dev/null || fail "no group mxpolicyd"
got=$(stat -c '%U:%G %a' /var/lib/mxpolicyd)
[ "$got" = "mxpolicyd:mxpolicyd 750" ] || fail "/var/lib/mxpolicyd is $got"
# Installed, never enabled or started (postinst: dh_installsystemd --no-enable).
if compgen -G '/etc/systemd/system/*.wants/mxpolicyd*' >/dev/null; then
	fail "the package enabled a unit: $(echo /etc/systemd/system/*.wants/mxpolicyd*)"
fi
for p in /proc/[0-9]*; do
	[ "$(readlink "$p/exe" 2>/dev/null)" != /usr/bin/mxpolicyd ] || fail "an mxpolicyd process runs: ${p#/proc/}"
done
if [ -d /run/systemd/system ]; then
	! systemctl --quiet is-active mxpolicyd.service || fail "mxpolicyd.service was started"
	! systemctl --quiet is-enabled mxpolicyd.service || fail "mxpolicyd.service was enabled"
fi

step "remove"
dpkg -r mxpolicyd
[ ! -e /usr/bin/mxpolicyd ] || fail "dpkg -r left /usr/bin/mxpolicyd"
[ -f /etc/mxpolicyd/mxpolicyd.yaml ] || fail "dpkg -r removed the config; only purge may"
[ -d /var/lib/mxpolicyd ] || fail "dpkg -r removed /var/lib/mxpolicyd; only purge may"

step "purge"
dpkg -P mxpolicyd
for d in /etc/mxpolicyd /var/lib/mxpolicyd; do
	[ ! -e "$d" ] || fail "dpkg -P left $d"
done
! dpkg-statoverride --list /etc/mxpolicyd/mxpolicyd.yaml >/dev/null || fail "dpkg -P left the stat override"
! installed || fail "dpkg -P left mxpolicyd installed"
[ -z "$(dpkg-query -W -f='${Status}' mxpolicyd 2>/dev/null | grep -v 'not-installed')" ] ||
	fail "dpkg -P left mxpolicyd in state $(dpkg-query -W -f='${Status}' mxpolicyd)"
echo "package-test.sh: ok ($(basename "$deb"))"
