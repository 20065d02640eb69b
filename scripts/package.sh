#!/usr/bin/env bash
# package.sh: builds the Debian package mxpolicyd_<version>_amd64.deb with
# dpkg-deb from a staged tree, and prints its path. Run from anywhere in a
# checkout; needs Go and dpkg-deb (Debian's dpkg), nothing else:
#
#   scripts/package.sh [OUTDIR]        (default: the top of the checkout)
#
# The version comes from `git describe --tags --always --dirty`: the binary
# prints it (mxpolicyd version); the package gets a Debian version derived
# from it (deb-version(7)): tag v1.2 is 1.2, 3 commits after it
# 1.2+git<date>.<sha>, no tag at all 0.0~git<date>.<sha>; "+dirty" marks
# uncommitted changes; Debian revision 1. Dates are the commit's, so two
# builds of one commit are alike (SOURCE_DATE_EPOCH).
#
# packaging/deb/ holds the maintainer scripts, control, copyright and
# changelog templates; the man pages and completions come from the binary
# itself (the hidden `mxpolicyd gendocs`); the units, sysusers file, config
# and Postfix snippets from contrib/. scripts/package-test.sh checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
outdir=$(realpath "${1:-.}")
src=packaging/deb
umask 022
export TZ=UTC LC_ALL=C.UTF-8

describe=$(git describe --tags --always --dirty)
sha=$(git rev-parse --short HEAD)
export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
snapshot=git$(git log -1 --date=format-local:%Y%m%d --format=%cd).$sha
if tag=$(git describe --tags --abbrev=0 2>/dev/null); then
	upstream=${tag#v}
	[ "$(git describe --tags)" = "$tag" ] || upstream+="+$snapshot"
else
	upstream="0.0~$snapshot"
fi
[[ $describe != *-dirty ]] || upstream+="+dirty"
version=$upstream-1
dpkg --validate-version "$version" || {
	echo "package.sh: tag $tag gives no valid Debian version" >&2
	exit 1
}

# embedded_copyright prints a copyright-format 1.0 paragraph for Go and
# for each module linked into the binary $1, from that module's own
# licence file, so the list follows go.mod. Apache-2.0 refers to
# /usr/share/common-licenses (Debian Policy §12.5); an unknown licence
# fails the build.
embedded_copyright() {
	local mod ver dir file short holders
	go version -m "$1" | awk '$1 == "dep" { print $2, $3 }' | {
		echo "std $(go env GOVERSION)"
		cat
	} | while read -r mod ver; do
		if [ "$mod" = std ]; then
			dir=$(go env GOROOT)
		else
			dir=$(go env GOMODCACHE)/$(sed 's/[A-Z]/!\L&/g' <<<"$mod")@$ver
		fi
		file=$(find "$dir" -maxdepth 1 -iregex '.*/\(licen[cs]e\|copying\)\(\.txt\|\.md\)?' | head -1)
		if [ -z "$file" ]; then
			echo "package.sh: $mod $ver: no licence file in $dir" >&2
			return 1
		fi
		if grep -q 'Apache License' "$file" && grep -q 'MIT' "$file"; then
			short="Expat and Apache-2.0"
		elif grep -q 'Apache License' "$file"; then
			short=Apache-2.0
		elif grep -q 'Permission is hereby granted, free of charge' "$file"; then
			short=Expat
		elif grep -q 'Neither the name' "$file"; then
			short=BSD-3-clause
		elif grep -q 'Redistribution and use' "$file"; then
			short=BSD-2-clause
		else
			echo "package.sh: $mod $ver: unknown licence in $file" >&2
			return 1
		fi
		holders=$(grep -m5 -i '^ *copyright (c)\|^ *copyright [0-9]' "$file" | sed 's/^ *//' || true)
		printf '\nFiles: %s\n' "$([ "$mod" = std ] && echo "go/*" || echo "vendor/$mod/*")"
		printf 'Copyright: %s\n' "$(sed '2,$s/^/ /' <<<"${holders:-the $mod authors}")"
		printf 'Comment: %s %s, linked into /usr/bin/mxpolicyd\n' "$([ "$mod" = std ] && echo "Go standard library" || echo "$mod")" "$ver"
		printf 'License: %s\n' "$short"
		if [ "$short" = Apache-2.0 ]; then
			printf ' On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'
		else
			sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$file"
		fi
	done
}

stage=$(mktemp -d /tmp/mxp-deb-XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/mxpolicyd

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.buildVersion=$describe" \
	-o "$root/usr/bin/mxpolicyd" ./cmd/mxpolicyd

# Man pages and completions from the command tree of the binary just built.
"$root/usr/bin/mxpolicyd" gendocs "$stage/gen"
install -d "$root/usr/share/man/man8"
for page in "$stage"/gen/man/*.8; do
	gzip -9n <"$page" >"$root/usr/share/man/man8/$(basename "$page").gz"
done
install -D -m 0644 "$stage/gen/completion/mxpolicyd.bash" "$root/usr/share/bash-completion/completions/mxpolicyd"
install -D -m 0644 "$stage/gen/completion/_mxpolicyd" "$root/usr/share/zsh/vendor-completions/_mxpolicyd"
install -D -m 0644 "$stage/gen/completion/mxpolicyd.fish" "$root/usr/share/fish/vendor_completions.d/mxpolicyd.fish"

# Conffiles. mxpolicyd.yaml, shipped with no secret in it, becomes
# root:mxpolicyd 0640 by the postinst's stat override (the user does not
# exist when dpkg first unpacks it); the whitelist files it names must
# exist for serve to start.
install -D -m 0644 contrib/config/mxpolicyd.example.yaml "$root/etc/mxpolicyd/mxpolicyd.yaml"
install -m 0644 "$src/whitelist_clients" "$src/whitelist_recipients" "$root/etc/mxpolicyd/"

# systemd units: a package installs under /usr, never /usr/local (Debian
# Policy §9.1.2), so ExecStart points at /usr/bin.
install -d "$root/usr/lib/systemd/system"
for unit in mxpolicyd.service mxpolicyd-gc.service mxpolicyd-gc.timer; do
	sed 's|/usr/local/bin/mxpolicyd|/usr/bin/mxpolicyd|g' "contrib/systemd/$unit" \
		>"$root/usr/lib/systemd/system/$unit"
done
if grep -rh -v '^#' "$root/usr/lib/systemd/system" | grep /usr/local >/dev/null; then # not -q: pipefail
	echo "package.sh: a unit still runs something from /usr/local" >&2
	exit 1
fi
install -D -m 0644 contrib/systemd/mxpolicyd.sysusers.conf "$root/usr/lib/sysusers.d/mxpolicyd.conf"

# Documentation, compressed with gzip -9n (Debian Policy §12.3).
install -d "$doc/examples"
gzip -9n <README.md >"$doc/README.md.gz"
gzip -9n <docs/configuration.md >"$doc/configuration.md.gz"
gzip -9n <docs/whitelists.md >"$doc/whitelists.md.gz"
install -m 0644 contrib/postfix/main.cf.snippet contrib/postfix/main.cf.unix.snippet \
	contrib/systemd/mxpolicyd.service.d/postfix-socket.conf "$doc/examples/"
sed -e "s|@VERSION@|$version|" -e "s|@DESCRIBE@|$describe|" \
	-e "s|@DATE@|$(git log -1 --format=%cD)|" "$src/changelog" | gzip -9n >"$doc/changelog.Debian.gz"
{ cat "$src/copyright"; embedded_copyright "$root/usr/bin/mxpolicyd"; } >"$doc/copyright"
install -D -m 0644 "$src/lintian-overrides" "$root/usr/share/lintian/overrides/mxpolicyd"

# Control area. md5sums leaves out conffiles, as dh_md5sums does: dpkg
# keeps their checksums itself.
install -d "$root/DEBIAN"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
(cd "$root" && find usr -type f | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@INSTALLED_SIZE@|$size|" "$src/control" >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# Every file is owned by root; mtimes are the commit's.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb=$outdir/mxpolicyd_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
