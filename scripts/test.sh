#!/usr/bin/env bash
# test.sh: THE command that runs every test of mxpolicyd, as CI does
# (.ci/run). Run it as root from anywhere in a checkout:
#
#   scripts/test.sh
#
# It installs the real components the tests use if they are missing
# (scripts/install-test-deps.sh), starts one throwaway PostgreSQL cluster
# unless TEST_DATABASE_URL names a server, then runs go vet, a gofmt check,
# staticcheck, every Go test with -race (the real-Postfix end-to-end tests
# in e2e/ included), the container image built and run (scripts/image.sh),
# the Debian package built, linted, installed and purged
# (scripts/package-test.sh) and run under systemd in a container
# (scripts/systemd-test.sh), and a short run of every fuzz target. Any
# missing component fails the run; nothing is skipped.
#
# Each fuzz target runs for a fixed number of executions (the table
# below); FUZZTIME=0 leaves fuzzing out, and any other FUZZTIME (1m,
# 2000000x) is passed to every target as its -fuzztime.
set -euo pipefail
cd "$(dirname "$0")/.."
# A non-login root shell may lack the sbin directories (postfix, clamd).
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

step() { printf '\n==> %s\n' "$*"; }

step "installing missing test dependencies"
scripts/install-test-deps.sh

if [ -z "${TEST_DATABASE_URL:-}" ]; then
	step "starting a throwaway PostgreSQL cluster"
	pgdir=$(mktemp -d /tmp/mxp-pg-XXXXXX)
	trap 'scripts/pg-cluster.sh stop "$pgdir"' EXIT
	TEST_DATABASE_URL=$(scripts/pg-cluster.sh start "$pgdir")
	export TEST_DATABASE_URL
fi

step "go vet ./..."
go vet ./...

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt: these files are not formatted (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi

# staticcheck (https://staticcheck.dev) finds what go vet does not: a
# condition that cannot be false, a rune set given bytes, a deprecated
# call. Pinned, and run from the module proxy, so it is not one of the
# module's dependencies.
step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# The million-row tests (greylist gc on a million triplets) are part of
# the suite, not an optional extra: gc and report must work on a
# realistic volume in seconds.
export MXPOLICYD_VOLUME_TEST=1

step "go test -race ./..."
go test -race -count=1 -timeout 20m ./...

step "container image: build (buildah), inspect, run and ask it one request (podman)"
scripts/image.sh

step "report and prune on a million decisions (PostgreSQL and SQLite)"
go test -run='^$' -bench='Volume' -benchtime=1x ./report/

step "Debian package: build, lintian, install, check, remove, purge"
scripts/package-test.sh

step "Debian package under a real systemd: start, reload, gc, stop"
scripts/systemd-test.sh

# Every fuzz target runs briefly, so CI stays short: each for a count of
# executions that takes about 5 s on a 2-core machine, the request parser
# (client input) about 10 s. A count, not a duration: Go 1.26's fuzzing
# coordinator can fail a duration-bounded run that found nothing with a bare
# "context deadline exceeded" when the deadline fires (CoordinateFuzzing in
# $(go env GOROOT)/src/internal/fuzz/fuzz.go: stop compares the deadline's
# error with the child context's before that child is cancelled). A count
# sets no deadline. A listed target that is missing fails the run.
fuzz_targets="
policy FuzzReadRequest 200000x
greylist FuzzSenderKey 20000x
dnsbl FuzzParseSite 50000x
whitelist FuzzNormalize 25000x
internal/db FuzzRedact 25000x
"
fuzztime=${FUZZTIME:-}
if [ "$fuzztime" != 0 ]; then
	if [ -n "$fuzztime" ] && ! [[ $fuzztime =~ ^[0-9]+([a-z]+)$ ]]; then
		echo "test.sh: FUZZTIME=$fuzztime: want a count or a duration (2000000x, 1m), or 0" >&2
		exit 1
	fi
	while read -r pkg target _; do
		if [ -n "$pkg" ] && ! grep -qs "^func $target(" "$pkg"/*_test.go; then
			echo "test.sh: $pkg/ has no $target fuzz target" >&2
			exit 1
		fi
	done <<<"$fuzz_targets"
	while read -r pkg target count; do
		[ -n "$pkg" ] || continue
		t=${fuzztime:-$count}
		step "fuzzing $pkg $target for $t"
		go test -run='^$' -fuzz="^$target\$" -fuzztime="$t" "./$pkg/" </dev/null
	done <<<"$fuzz_targets"
fi

step "all tests passed"
