#!/bin/sh
# pg-cluster.sh start|stop DIR
#
# Starts (or stops) a throwaway PostgreSQL cluster in DIR for the tests, so
# that every Go test package shares one server instead of each starting its
# own. "start" prints the DSN to use as TEST_DATABASE_URL:
#
#   export TEST_DATABASE_URL=$(scripts/pg-cluster.sh start /tmp/mxpg)
#   go test -race ./...
#   scripts/pg-cluster.sh stop /tmp/mxpg
#
# Needs the Debian package "postgresql" (initdb and pg_ctl). As root, the
# cluster runs as the "postgres" user, because initdb refuses to run as root.
# Durability is off (fsync, full_page_writes, synchronous_commit): the data
# is disposable. The three are written to postgresql.conf, not given on
# the command line, so ALTER SYSTEM can turn them back on (scripts/bench.sh
# does): a setting from the command line outranks postgresql.auto.conf
# (PostgreSQL documentation, "Setting Parameters", 20.1).
set -eu

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 dir=$2

bindir() {
	if command -v pg_config >/dev/null 2>&1; then
		b=$(pg_config --bindir)
		[ -x "$b/initdb" ] && { echo "$b"; return; }
	fi
	for b in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
		[ -x "$b/initdb" ] && { echo "$b"; return; }
	done
	b=$(command -v initdb 2>/dev/null) && { dirname "$b"; return; }
	echo "pg-cluster.sh: initdb not found; install the Debian package postgresql" >&2
	exit 1
}

BIN=$(bindir)
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || {
			echo "pg-cluster.sh: running as root needs the postgres user (Debian package postgresql)" >&2
			exit 1
		}
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	# Ask the kernel for an unused port; python3 is in every Debian image we use,
	# otherwise fall back to a random high port.
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + $$ % 20000))
}

case $cmd in
start)
	mkdir -p "$dir/sock"
	dir=$(cd "$dir" && pwd)
	[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
	port=$(free_port)
	(cd "$dir" && as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync --no-locale >"$dir/initdb.log" 2>&1) || {
		cat "$dir/initdb.log" >&2
		exit 1
	}
	printf '%s\n' "fsync = off" "full_page_writes = off" "synchronous_commit = off" >>"$dir/data/postgresql.conf"
	(cd "$dir" && as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c max_connections=300" \
		start >/dev/null) || {
		cat "$dir/log" >&2
		exit 1
	}
	echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	;;
stop)
	dir=$(cd "$dir" && pwd)
	(cd "$dir" && as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null) || true
	rm -rf "$dir"
	;;
*) usage ;;
esac
