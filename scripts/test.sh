#!/usr/bin/env bash
# test.sh: THE command that runs every test of mxpolicyd, as CI does
# (.ci/run). Run it as root from anywhere in a checkout:
#
#   scripts/test.sh
#
# It installs the real components the tests use if they are missing
# (scripts/install-test-deps.sh), starts one throwaway PostgreSQL cluster
# unless TEST_DATABASE_URL names a server, then runs go vet, a gofmt check,
# every Go test with -race (the real-Postfix end-to-end tests in e2e/
# included), and a short fuzz run of the policy request parser. Any missing
# component fails the run; nothing is skipped.
#
# FUZZTIME (default 20s) sets the fuzz run's length; FUZZTIME=0 leaves it out.
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

# The million-row tests (greylist gc on a million triplets) are part of
# the suite, not an optional extra: issue 3 asks gc and report to work on a
# realistic volume in seconds.
export MXPOLICYD_VOLUME_TEST=1

step "go test -race ./..."
go test -race -count=1 -timeout 20m ./...

step "report and prune on a million decisions (PostgreSQL and SQLite)"
go test -run='^$' -bench='Volume' -benchtime=1x ./report/

fuzztime=${FUZZTIME:-20s}
if [ "$fuzztime" != 0 ]; then
	step "fuzzing FuzzReadRequest for $fuzztime"
	if ! grep -qs 'func FuzzReadRequest' policy/*_test.go; then
		echo "test.sh: policy/ has no FuzzReadRequest fuzz target" >&2
		exit 1
	fi
	go test -run='^$' -fuzz='^FuzzReadRequest$' -fuzztime="$fuzztime" ./policy/
fi

step "all tests passed"
