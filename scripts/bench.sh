#!/usr/bin/env bash
# scripts/bench.sh: mxpolicyd's end-to-end benchmark, in one run, side by
# side with its two ceilings:
#
#   - the protocol ceiling: internal/benchtools/bareresponder, which reads
#     each request with the daemon's parser (policy.ReadRequest) and answers
#     action=DUNNO, deciding nothing;
#   - the database ceiling: pgbench running the daemon's own greylisting
#     statement (scripts/bench/greylist-upsert.sql, regenerated from
#     greylist/pgstore.go by internal/benchtools/pgbenchscript) on the same
#     PostgreSQL, one new triplet per transaction, -M prepared;
#
# then mxpolicyd on PostgreSQL and on the embedded SQLite store, with new
# and with known passing triplets, greylisting only and with SPF and three
# DNS lists (internal/dnstest/cmd/fakedns serving scripts/bench/bench.zone);
# the memory of 10,000 open connections; 1, 2 and 4 daemons sharing one
# PostgreSQL; and postgrey, when Debian's package is installed.
#
# Load comes from cmd/mxpolicyd-load on the same machine (and cores).
# Output on stdout is markdown for docs/PERFORMANCE.md; progress goes to
# stderr. Run from anywhere, as root or as a user who can run PostgreSQL:
#
#   scripts/bench.sh
#   BENCH_DURATION=2 BENCH_CONNS=8 scripts/bench.sh     # a smoke test
#
# Environment:
#   BENCH_DURATION   seconds per case (default 15)
#   BENCH_CONNS      busy persistent connections, like smtpd processes (64)
#   BENCH_RSS_CONNS  connections open in the memory case (10000)
#   BENCH_PAIRS      runs of each store's known case, between runs of the
#                    bare responder (3); the median run is its verdict
#   BENCH_PG_DURABLE 1 (default): fsync, full_page_writes and
#                    synchronous_commit on, as in production; 0 keeps
#                    scripts/pg-cluster.sh's throwaway settings
#   BENCH_POSTGREY   0 skips postgrey even when installed
#   BENCH_KEEP       1 keeps the work directory (logs, databases)
#
# Needs: go, PostgreSQL server and pgbench (Debian: postgresql,
# postgresql-contrib); optional: postgrey. Everything it starts it stops.
set -euo pipefail

DURATION=${BENCH_DURATION:-15}
CONNS=${BENCH_CONNS:-64}
RSS_CONNS=${BENCH_RSS_CONNS:-10000}
PAIRS=${BENCH_PAIRS:-3}
PG_DURABLE=${BENCH_PG_DURABLE:-1}
WITH_POSTGREY=${BENCH_POSTGREY:-1}
KEEP=${BENCH_KEEP:-0}
COMMAND="BENCH_DURATION=$DURATION BENCH_CONNS=$CONNS BENCH_RSS_CONNS=$RSS_CONNS BENCH_PG_DURABLE=$PG_DURABLE scripts/bench.sh"

die() { echo "bench.sh: $*" >&2; exit 1; }
say() { echo "bench.sh: $*" >&2; }
for v in DURATION CONNS RSS_CONNS PAIRS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, got '${!v}'"
done
((CONNS % 4 == 0)) || die "BENCH_CONNS must be a multiple of 4 (the scale-out case splits it over 4 daemons)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v go >/dev/null || die "go not found"
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1) ||
	die "pgbench not found: apt-get install postgresql postgresql-contrib"
[[ -x $PGBENCH ]] || die "pgbench not found: apt-get install postgresql postgresql-contrib"
PSQL=$(command -v psql || echo "$(dirname "$PGBENCH")/psql")
CLK_TCK=$(getconf CLK_TCK)
WARM=$((DURATION < 3 ? DURATION : 3)) # each warm-up run of the known cases

tmp=$(mktemp -d /tmp/mxbench.XXXXXX)
chmod 755 "$tmp"
BIN=$tmp/bin
PGDIR=$tmp/pg
started=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${started[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${started[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	[[ -f $PGDIR/data/postmaster.pid ]] && scripts/pg-cluster.sh stop "$PGDIR" || true
	if ((KEEP)) || ((rc != 0)); then
		say "work directory kept: $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn NAME CMD...: runs CMD in the background, stdout to $tmp/NAME.out,
# stderr to $tmp/NAME.log; its pid is in $SPAWNED.
spawn() {
	local name=$1
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	SPAWNED=$!
	started+=("$SPAWNED")
}

# stop PID: SIGTERM, then SIGKILL after 10 s.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# new_port: a TCP port nothing listens on, in $PORT. Ports are taken below
# the kernel's ephemeral range (ip_local_port_range, ip(7)), where the
# load tool's own connections could hold them.
EPHEMERAL=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
next_port=$((EPHEMERAL > 12000 ? 10000 + RANDOM % (EPHEMERAL - 12000) : 1024 + RANDOM % 1000))
new_port() {
	while :; do
		next_port=$((next_port + 1))
		((next_port < EPHEMERAL)) || die "no free port below $EPHEMERAL"
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; then
			PORT=$next_port
			return
		fi
	done
}

# wait_tcp PORT: until something accepts on PORT (30 s).
wait_tcp() {
	local i
	for ((i = 0; i < 300; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_ready PORT: until mxpolicyd's /readyz on PORT answers 200 (30 s):
# the store is migrated and reachable, so greylisting does not fail open.
wait_ready() {
	local i status
	for ((i = 0; i < 300; i++)); do
		status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
			printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && head -1 <&3) 2>/dev/null || true)
		[[ $status == *" 200 "* ]] && return 0
		sleep 0.1
	done
	return 1
}

# ticks PID: the process's user+system CPU, in clock ticks (proc(5),
# /proc/PID/stat fields 14 and 15; the name field may hold spaces, so
# fields are counted after its closing parenthesis).
ticks() {
	[[ -r /proc/$1/stat ]] || die "process $1 exited early (logs in $tmp)"
	sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# pg_ticks: CPU of the whole PostgreSQL server: the postmaster, its live
# children (backends, walwriter, checkpointer...) and, through cutime and
# cstime, the children it has reaped.
pg_ticks() {
	local pm
	pm=$(head -1 "$PGDIR/data/postmaster.pid")
	# cat, not awk, reads the files: a process may exit between the glob
	# and the read, which cat skips and awk would stop at.
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" '{
		pid = $1
		sub(/.*\) /, "")
		if (pid == pm) t += $12 + $13 + $14 + $15
		else if ($2 == pm) t += $12 + $13
	} END { print t + 0 }'
}

# hwm PID: peak resident memory (VmHWM), in MiB.
hwm() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# kv FILE KEY: a value of mxpolicyd-load's -summary line.
kv() { awk -v k="$2" '{for (i = 1; i <= NF; i++) {split($i, a, "="); if (a[1] == k) print a[2]}}' "$1"; }

# calc FORMAT EXPR: awk arithmetic; the parentheses keep a comparison from
# being read as an output redirection.
calc() { awk "BEGIN {printf \"$1\", ($2)}"; }

# ---- build --------------------------------------------------------------

say "building into $BIN"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/mxpolicyd ./cmd/mxpolicyd-load ./internal/benchtools/bareresponder \
	./internal/benchtools/pgbenchscript ./internal/dnstest/cmd/fakedns
"$BIN/pgbenchscript" -src greylist >"$tmp/greylist-upsert.sql"
if ! cmp -s "$tmp/greylist-upsert.sql" scripts/bench/greylist-upsert.sql; then
	say "WARNING: greylist's statement changed since scripts/bench/greylist-upsert.sql was generated;" \
		"measuring the current one (regenerate: go run ./internal/benchtools/pgbenchscript > scripts/bench/greylist-upsert.sql)"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < RSS_CONNS + 1000)); then
	ulimit -n $((RSS_CONNS + 1000)) 2>/dev/null || say "ulimit -n $(ulimit -n): the memory case will show dial failures"
fi

# ---- the machine ----------------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
GOVER=$(go env GOVERSION)
PGVER=$("$PGBENCH" --version | awk '{print $3}')
POSTGREY=""
if ((WITH_POSTGREY)) && command -v postgrey >/dev/null && id postgrey >/dev/null 2>&1; then
	POSTGREY=$(command -v postgrey)
fi
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (with uncommitted changes)"

# ---- PostgreSQL -------------------------------------------------------------

say "starting PostgreSQL"
DSN=$(scripts/pg-cluster.sh start "$PGDIR")
if ((PG_DURABLE)); then
	"$PSQL" -qX "$DSN" -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET full_page_writes = on" \
		-c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
	# The reload is a signal: wait until the server reads the settings as
	# on, and stop if it never does (the numbers would claim durability
	# they did not pay for).
	for i in $(seq 50); do
		on=$("$PSQL" -qXAt "$DSN" -c "SELECT count(*) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit') AND setting = 'on'")
		[[ $on == 3 ]] && break
		sleep 0.1
	done
	[[ $on == 3 ]] || die "PostgreSQL did not turn fsync, full_page_writes and synchronous_commit on"
	PGMODE="fsync, full_page_writes and synchronous_commit on (the statement turns synchronous_commit off for its own transaction, greylist/pgstore.go)"
else
	PGMODE="scripts/pg-cluster.sh's throwaway settings: fsync, full_page_writes and synchronous_commit off"
fi
db_n=0
# new_db: a fresh migrated database, its DSN in $DB. The previous case's
# database is dropped first (kept with BENCH_KEEP=1): autovacuum would
# otherwise visit its tables during the cases after it.
new_db() {
	((KEEP || db_n == 0)) || "$PSQL" -qX "$DSN" -c "DROP DATABASE IF EXISTS bench$db_n WITH (FORCE)" >/dev/null
	db_n=$((db_n + 1))
	"$PSQL" -qX "$DSN" -c "CREATE DATABASE bench$db_n" >/dev/null
	DB=${DSN/\/postgres\?//bench$db_n?}
	"$BIN/mxpolicyd" migrate --database "$DB" >/dev/null
}

# ---- recording rows ----------------------------------------------------

rows=() # markdown rows, printed at the end
notes=()
declare -A RPS # req/s by case, for ratios

# row CASE REQS P50 P99 CPU RSS ERRORS REPLIES RATIO TARGET VERDICT
row() {
	local s
	s=$(printf ' | %s' "$@")
	rows+=("|${s:2} |")
}

# answers FILE: the most frequent reply and its share.
answers() {
	local f=$1 best="" n=0 total v c
	total=$(kv "$f" answered)
	for v in dunno defer_if_permit prepend reject other; do
		c=$(kv "$f" "$v")
		((c > n)) && best=$v n=$c
	done
	((total > 0)) || { echo "none"; return; }
	echo "$(echo "$best" | tr a-z A-Z) $(calc %.1f "100 * $n / $total")%"
}

# verdict OK: "met" or "NOT met".
verdict() { (($1)) && echo "met" || echo "**NOT met**"; }

# ceiling_ratio REQS CEILING: "0.83×".
ratio() { calc "%.2f×" "$1 / $2"; }

# load NAME ADDR SEED KIND [DURATION] [extra flags]: one mxpolicyd-load run
# writing its summary line to $tmp/NAME.sum. KIND new draws from 65,536
# client networks x 10^6 senders x 10^6 recipients (every triplet new);
# known from 10 x 10 x 10 (1,000 triplets, made known by the warm-up).
load() {
	local name=$1 addr=$2 seed=$3 kind=$4 dur=${5:-$DURATION}
	shift 5 || shift $#
	local pools=(-clients 65536 -senders 1000000 -recipients 1000000)
	[[ $kind == known ]] && pools=(-clients 10 -senders 10 -recipients 10)
	"$BIN/mxpolicyd-load" -addr "$addr" -conns "$CONNS" -duration "${dur}s" -seed "$seed" "${pools[@]}" \
		-summary "$@" >"$tmp/$name.sum" 2>>"$tmp/load.log" || true
	[[ -s $tmp/$name.sum ]] || die "$name: mxpolicyd-load printed nothing (see $tmp/load.log)"
}

# warm ADDR: makes the 1,000 known triplets pass: first attempts, the
# 1 s delay (scripts/bench/greylist.yaml; decisions count whole seconds),
# retries that pass and fill the pass cache; again until a whole run is
# answered without a deferral (a server slower than the draws needs more
# rounds to have seen every triplet twice).
warm() {
	local round
	load warm "$1" 2 known "$WARM"
	for ((round = 3; round < 13; round++)); do
		sleep 2.2
		load warm "$1" "$round" known "$WARM"
		(($(kv "$tmp/warm.sum" defer_if_permit) == 0)) && return 0
	done
	notes+=("warm-up of $1: still deferring after 10 rounds, so its known case includes first attempts")
}

# quiesce: what the earlier cases left to write (PostgreSQL's dirty
# buffers, which its checkpointer would otherwise flush with fsyncs during
# a later case; the files of a SQLite case) is written before a case is
# measured, not during it.
quiesce() {
	"$PSQL" -qX "$DSN" -c CHECKPOINT >/dev/null || say "CHECKPOINT failed"
	sync
}

# measure_start PIDS pg|-: CPU counters before a run, of the processes
# and (pg) of PostgreSQL.
declare -A T0 US
measure_start() {
	local p
	quiesce
	for p in $1; do T0[$p]=$(ticks "$p"); done
	PG0=0
	[[ $2 == pg ]] && PG0=$(pg_ticks)
	return 0
}

# measure_end PIDS pg|- ANSWERED: CPU per answered request in µs, of each
# process (US[pid]), of them all (CPU_US) and of PostgreSQL (PG_US); and
# the largest peak RSS among the processes (RSS, MiB).
measure_end() {
	local p n=$3 all=0
	((n > 0)) || n=1
	[[ $2 == pg ]] && sleep 0.3 # exiting backends get reaped into the postmaster's cutime
	RSS=0
	for p in $1; do
		US[$p]=$(calc %.0f "($(ticks "$p") - ${T0[$p]}) * 1e6 / $CLK_TCK / $n")
		all=$((all + US[$p]))
		RSS=$(awk -v a="$RSS" -v b="$(hwm "$p")" 'BEGIN {print (b > a) ? b : a}')
	done
	CPU_US=$all
	PG_US=""
	[[ $2 == pg ]] && PG_US=$(calc %.0f "($(pg_ticks) - $PG0) * 1e6 / $CLK_TCK / $n")
	return 0
}

cpu_cell() {
	if [[ -n $PG_US ]]; then
		if [[ $CPU_US == 0 && $1 == pg-only ]]; then echo "postgres $PG_US µs"; else echo "$CPU_US µs + postgres $PG_US µs"; fi
	else
		echo "$CPU_US µs"
	fi
}

# ---- the ceilings -------------------------------------------------------

# bare NAME [PG IDLE]: one run of the bare responder; its rate in
# RPS[NAME], its row's cells in BARE_CELLS[NAME]. With PG "pg" and IDLE
# the pids of processes that should be idle meanwhile, what they and
# PostgreSQL used anyway, in µs per bare request, is in OTHERS_US.
declare -A BARE_CELLS
bare() {
	local with=${2:--} idle=${3:-} p
	say "protocol ceiling: bare responder ($1)"
	new_port
	spawn "$1" "$BIN/bareresponder" -listen "127.0.0.1:$PORT"
	local pid=$SPAWNED f=$tmp/$1.sum
	wait_tcp "$PORT" || die "bareresponder did not start"
	measure_start "$pid $idle" "$with"
	load "$1" "127.0.0.1:$PORT" 1 known
	measure_end "$pid $idle" "$with" "$(kv "$f" answered)"
	OTHERS_US=${PG_US:-0}
	for p in $idle; do OTHERS_US=$((OTHERS_US + US[$p])); done
	CPU_US=${US[$pid]}
	PG_US=""
	RSS=$(hwm "$pid")
	stop "$pid"
	RPS[$1]=$(kv "$f" req_per_s)
	BARE_CELLS[$1]="$(kv "$f" p50_ms) ms|$(kv "$f" p99_ms) ms|$(cpu_cell)|$RSS MiB|$(kv "$f" errors)|$(answers "$f")"
}

# The protocol ceiling is measured at the start and again at the end, and
# the higher rate is the one the known cases are compared with: the
# machine's speed drifts within a run (other tenants, the page cache), and
# a ceiling measured in a slow moment would flatter every ratio. The two
# known cases with a target are judged against ceiling runs of their own,
# beside them (measure_pairs), and show this ratio too. Until the end, the
# ratio cells hold their figures (@R:rate@) and the ceiling's row is
# @BARE@; ceiling_cells fills them in.
bare bare
row "@BARE@"

say "database ceiling: pgbench with greylist's statement"
new_db
measure_start "" pg
"$PGBENCH" -n -M prepared -c "$CONNS" -j "$(nproc)" -T "$DURATION" -f "$tmp/greylist-upsert.sql" \
	-l --log-prefix="$tmp/pgblog" "$DB" >"$tmp/pgbench.out" 2>&1 || die "pgbench failed: $(tail -5 "$tmp/pgbench.out")"
TXNS=$(awk '/^number of transactions actually processed/ {print $NF}' "$tmp/pgbench.out")
FAILED=$(awk '/^number of failed transactions/ {print $5}' "$tmp/pgbench.out")
measure_end "" pg "$TXNS"
RPS[pgbench]=$(awk '/^tps = / {print $3}' "$tmp/pgbench.out")
# Per-transaction log: the third field is the latency in µs (pgbench docs,
# "Per-Transaction Logging").
cat "$tmp"/pgblog.* | awk '{print $3}' | sort -n >"$tmp/pgbench.lat"
nlat=$(wc -l <"$tmp/pgbench.lat")
pct() { sed -n "$(((nlat * $1 + 99) / 100))p" "$tmp/pgbench.lat" | awk '{printf "%.3f", $1 / 1000}'; }
row "database ceiling: pgbench, greylist's statement, $CONNS clients, -M prepared" "$(calc %.0f "${RPS[pgbench]}")" \
	"$(pct 50) ms" "$(pct 99) ms" "$(cpu_cell pg-only)" "–" "${FAILED:-0}" "new triplet" "1.00×" "–" "–"
rm -f "$tmp"/pgblog.* "$tmp/pgbench.lat"

# ---- fake DNS for the SPF + lists cases -------------------------------------

spawn fakedns "$BIN/fakedns" -zone scripts/bench/bench.zone -addr-file "$tmp/dns.addr"
DNS_PID=$SPAWNED
for ((i = 0; i < 100; i++)); do [[ -s $tmp/dns.addr ]] && break; sleep 0.1; done
DNS_ADDR=$(cat "$tmp/dns.addr" 2>/dev/null) || die "fakedns did not start: $(cat "$tmp/fakedns.log")"

# ---- mxpolicyd --------------------------------------------------------------

# daemon NAME CONFIG DATABASE [flags]: starts mxpolicyd, waits until it is
# ready; its pid in $DPID, its address in $DADDR.
daemon() {
	local name=$1 config=$2 database=$3
	shift 3
	new_port
	local port=$PORT
	new_port
	local mport=$PORT
	spawn "$name" "$BIN/mxpolicyd" serve --config "$config" --database "$database" \
		--listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" "$@"
	DPID=$SPAWNED
	DADDR=127.0.0.1:$port
	wait_ready "$mport" || die "$name: mxpolicyd not ready: $(tail -5 "$tmp/$name.log")"
	wait_tcp "$port" || die "$name: mxpolicyd does not listen"
	LOGSKIP[$name]=$(wc -l <"$tmp/$name.log") # what it logged waiting for its store
}
declare -A LOGSKIP

# finish NAME PID: stops a daemon and drops its log (a line per decision),
# keeping the warnings and errors.
finish() {
	stop "$2"
	awk -v skip="${LOGSKIP[$1]}" 'NR > skip && /level=(WARN|ERROR)/ && n++ < 20' "$tmp/$1.log" >"$tmp/$1.warnings"
	if [[ -s $tmp/$1.warnings ]]; then
		notes+=("$1: the daemon logged warnings or errors, first: \`$(head -1 "$tmp/$1.warnings" | cut -c1-200)\`")
	fi
	((KEEP)) || rm -f "$tmp/$1.log"
}

# mx STORE KIND CONFIG: one mxpolicyd case; records a row.
mx() {
	local store=$1 kind=$2 config=$3 label database with=pg name
	name=mx-$store-$kind-$(basename "$config" .yaml)
	if [[ $store == pg ]]; then
		new_db
		database=$DB
		label="PostgreSQL"
	else
		database=$tmp/$name.db
		label="SQLite"
		with=-
	fi
	local extra=()
	[[ $config == *dns.yaml ]] && extra=(--dns "$DNS_ADDR") && label="$label, SPF + 3 lists"
	local measured=1 # a case with a target of its own
	[[ $config == *replies.yaml ]] && label="$label, greylisting + replies" && measured=0
	local recorded=row+line # what the case records of each decision
	[[ $config == *unrecorded.yaml ]] && recorded=none
	[[ $config == *lineonly.yaml ]] && recorded=line
	local paired=0 # judged against bare runs beside its own (measure_pairs)
	[[ $kind == known && $recorded == row+line && ${#extra[@]} -eq 0 ]] && paired=1
	say "$name"
	daemon "$name" "$config" "$database" "${extra[@]}"
	[[ $kind == known ]] && warm "$DADDR"
	local f=$tmp/$name.sum pairs=""
	if ((paired)); then
		measure_pairs "$name" "$with"
		pairs=$PAIRS_OUT
		median_pair "$name" "$pairs"
		f=$tmp/$name-$MID.sum
	else
		measure_start "$DPID $DNS_PID" "$with"
		load "$name" "$DADDR" 4 "$kind"
		measure_end "$DPID $DNS_PID" "$with" "$(kv "$f" answered)"
		CPU_D[$name]=${US[$DPID]}
		PG_D[$name]=$PG_US
	fi
	local cpu_d="${CPU_D[$name]} µs"
	PG_US=${PG_D[$name]}
	[[ ${#extra[@]} -gt 0 ]] && cpu_d="$cpu_d (+ fakedns ${US[$DNS_PID]} µs)"
	RSS=$(hwm "$DPID")
	finish "$name" "$DPID"
	rm -f "$tmp/$name.db" "$tmp/$name.db"-*
	local rps p99 cell ratio target ok
	rps=$(kv "$f" req_per_s)
	p99=$(kv "$f" p99_ms)
	RPS[$name]=$rps
	cell=$cpu_d
	[[ -n $PG_US ]] && cell="$cpu_d + postgres $PG_US µs"
	if [[ $kind == new ]]; then
		ratio=$(ratio "$rps" "${RPS[pgbench]}")
		label="$label, new triplets"
		if [[ ${#extra[@]} -gt 0 ]] || ((!measured)); then
			target="–" ok="–"
		elif [[ $store == pg ]]; then
			target="≥ 1.0× database ceiling"
			ok=$(verdict "$(calc %d "$rps >= ${RPS[pgbench]}")")
		else
			target="≥ 0.5× database ceiling, p99 ≤ 20 ms"
			ok=$(verdict "$(calc %d "$rps >= 0.5 * ${RPS[pgbench]} && $p99 <= 20")")
		fi
	else
		ratio="@R:$rps@"
		label="$label, known passing (cached)"
		if [[ $recorded != row+line ]]; then
			# What recording costs: the recorded case's rate against this one's.
			local full=${RPS[mx-$store-known-greylist]}
			if [[ $recorded == none ]]; then
				label="$label, not recorded (decision log off, decision line at warn)"
			else
				label="$label, decision line only (decision log off)"
			fi
			ratio="$ratio (recorded: $(calc %.2f "$full / $rps")× this rate)"
			target="–" ok="–"
		elif [[ ${#extra[@]} -gt 0 ]]; then
			local base=${RPS[mx-$store-known-greylist]}
			ratio="$ratio ($(calc %.2f "$rps / $base")× greylisting only)"
			target="≥ 1/1.5 of greylisting only ($(calc %.0f "$base / 1.5") req/s), p99 ≤ 10 ms"
			ok=$(verdict "$(calc %d "$rps * 1.5 >= $base && $p99 <= 10")")
		else
			local i median worst
			median=$(pair_ratio "$pairs" "$MID")
			worst=$(for ((i = 1; i <= PAIRS; i++)); do kv "$tmp/$name-$i.sum" p99_ms; done | sort -g | tail -1)
			ratio="$median of the ceiling beside it (runs: $(pair_list "$name" "$pairs")); $ratio of the higher lone ceiling"
			target="≥ 0.6× protocol ceiling (median of $PAIRS runs), p99 ≤ 10 ms (each)"
			ok=$(verdict "$(calc %d "${median%×} >= 0.6 && $worst <= 10")")
			[[ $worst == "$p99" ]] || ok="$ok (p99 at most $worst ms)"
		fi
	fi
	row "$label" "$(calc %.0f "$rps")" "$(kv "$f" p50_ms) ms" "$p99 ms" "$cell" "$RSS MiB" "$(kv "$f" errors)" \
		"$(answers "$f")" "$ratio" "$target" "$ok"
}

# measure_pairs NAME PG: the known case NAME, PAIRS times (NAME-I), the
# bare responder run before the first and after each (NAME-bareI), so
# that each known run is judged against the mean of the two ceiling runs
# beside it, seconds away: the ceiling runs at the start and end of the
# whole run are ten or more minutes apart, and on a shared machine the
# CPU a request costs drifts by a fifth and more within minutes
# (docs/PERFORMANCE.md, "Ceiling runs beside the known cases"); a drift
# steady across three runs cancels out of the mean. Sets PAIRS_OUT to
# "I:RATIO" per run and CEIL[NAME-I] to its ceiling.
declare -A CPU_D PG_D CEIL
measure_pairs() {
	local name=$1 with=$2 i f others=0
	PAIRS_OUT=""
	bare "$name-bare1" "$with" "$DPID $DNS_PID"
	others=$OTHERS_US
	for ((i = 1; i <= PAIRS; i++)); do
		f=$tmp/$name-$i.sum
		measure_start "$DPID $DNS_PID" "$with"
		load "$name-$i" "$DADDR" $((3 + i)) known
		measure_end "$DPID $DNS_PID" "$with" "$(kv "$f" answered)"
		CPU_D[$name-$i]=${US[$DPID]}
		PG_D[$name-$i]=$PG_US
		bare "$name-bare$((i + 1))" "$with" "$DPID $DNS_PID"
		others=$((OTHERS_US > others ? OTHERS_US : others))
		CEIL[$name-$i]=$(calc %.1f "(${RPS[$name-bare$i]} + ${RPS[$name-bare$((i + 1))]}) / 2")
		PAIRS_OUT="$PAIRS_OUT $i:$(calc %.4f "$(kv "$f" req_per_s) / ${CEIL[$name-$i]}")"
	done
	local who="the waiting daemon and fakedns"
	[[ $with == pg ]] && who="the waiting daemon, fakedns and PostgreSQL"
	notes+=("$name: in the ceiling runs beside it, $who used at most $others µs of CPU per bare request")
}

# median_pair NAME PAIRS: sets MID to the index of the run with the
# median ratio (of an even number, the lower middle one), whose figures
# mx's row shows; its CPU cells become NAME's.
median_pair() {
	MID=$(tr ' ' '\n' <<<"$2" | grep . | sort -t: -k2 -g | sed -n "$(((PAIRS + 1) / 2))p" | cut -d: -f1)
	CPU_D[$1]=${CPU_D[$1-$MID]}
	PG_D[$1]=${PG_D[$1-$MID]}
}

# pair_ratio PAIRS I: run I's ratio ("0.62×"); pair_list NAME PAIRS: all
# of them, in the order run, each with its ceiling.
pair_ratio() { tr ' ' '\n' <<<"$1" | awk -F: -v i="$2" '$1 == i {printf "%.2f×", $2}'; }
pair_list() {
	local p i out=""
	for p in $2; do
		i=${p%%:*}
		out="$out, $(calc %.2f× "${p#*:}") of $(calc %.0f "${CEIL[$1-$i]}")"
	done
	echo "${out:2}"
}

# The known case again with nothing recorded: no decision-log row, no
# decision line. Not a configuration to run (the reports need the log), but
# the measure of what recording adds to deciding.
{
	cat scripts/bench/greylist.yaml
	echo "decision_log: {enabled: false}"
	echo "log: {level: warn}"
} >"$tmp/unrecorded.yaml"
# Between the two, the decision line without the row: the recorded case's
# CPU per request less this one's is the row's, this one's less the case
# not recorded is the line's.
{
	cat scripts/bench/greylist.yaml
	echo "decision_log: {enabled: false}"
} >"$tmp/lineonly.yaml"

for store in pg sqlite; do
	mx "$store" new scripts/bench/greylist.yaml
	mx "$store" known scripts/bench/greylist.yaml
	mx "$store" known "$tmp/lineonly.yaml"
	mx "$store" known "$tmp/unrecorded.yaml"
	mx "$store" new scripts/bench/dns.yaml
	mx "$store" known scripts/bench/dns.yaml
done
mx pg new scripts/bench/replies.yaml
stop "$DNS_PID"

# ---- memory with many connections ----------------------------------------

# Twice: as shipped, and with memory_limit_mib (docs/configuration.md),
# the soft limit a site holding this many connections would set.
for limit in 0 72; do
	say "memory: $RSS_CONNS connections open, memory_limit_mib $limit"
	new_db
	# Connections that never send would be closed after read_timeout (10 s)
	# and over max_connections (docs/configuration.md): raise both.
	{
		cat scripts/bench/greylist.yaml
		echo "max_connections: $((RSS_CONNS + 100))"
		echo "read_timeout: 10m"
		echo "memory_limit_mib: $limit"
	} >"$tmp/rss.yaml"
	daemon mx-rss "$tmp/rss.yaml" "$DB"
	measure_start "$DPID" pg
	load mx-rss "$DADDR" 5 new "$DURATION" -idle-conns $((RSS_CONNS - CONNS))
	f=$tmp/mx-rss.sum
	measure_end "$DPID" pg "$(kv "$f" answered)"
	finish mx-rss "$DPID"
	opened=$(($(kv "$f" idle_opened) + CONNS))
	label="PostgreSQL, new triplets, $opened connections open ($CONNS busy)"
	[ "$limit" = 0 ] || label="$label, memory_limit_mib: $limit"
	row "$label" "$(calc %.0f "$(kv "$f" req_per_s)")" \
		"$(kv "$f" p50_ms) ms" "$(kv "$f" p99_ms) ms" "$CPU_US µs + postgres $PG_US µs" "$RSS MiB" \
		"$(($(kv "$f" errors) + $(kv "$f" idle_dial_failed) + $(kv "$f" idle_closed_by_server)))" "$(answers "$f")" \
		"$(ratio "$(kv "$f" req_per_s)" "${RPS[pgbench]}")" "RSS ≤ 100 MiB with $RSS_CONNS open" \
		"$(verdict "$(calc %d "$RSS <= 100 && $opened >= $RSS_CONNS")")"
done

# ---- scale-out: daemons sharing one PostgreSQL ------------------------------

for n in 1 2 4; do
	say "scale-out: $n daemon(s)"
	new_db
	dpids=()
	addrs=()
	for ((k = 0; k < n; k++)); do
		daemon "mx-scale$n-$k" scripts/bench/greylist.yaml "$DB"
		dpids+=("$DPID")
		addrs+=("$DADDR")
	done
	measure_start "${dpids[*]}" pg
	lpids=()
	for ((k = 0; k < n; k++)); do
		"$BIN/mxpolicyd-load" -addr "${addrs[k]}" -conns $((CONNS / n)) -duration "${DURATION}s" -seed $((10 + k)) \
			-clients 65536 -senders 1000000 -recipients 1000000 -summary >"$tmp/scale$n-$k.sum" 2>>"$tmp/load.log" &
		lpids+=($!)
	done
	for p in "${lpids[@]}"; do wait "$p" || true; done
	answered=0 rps=0 p50=0 p99=0 errs=0
	for ((k = 0; k < n; k++)); do
		f=$tmp/scale$n-$k.sum
		answered=$((answered + $(kv "$f" answered)))
		errs=$((errs + $(kv "$f" errors)))
		rps=$(calc %.1f "$rps + $(kv "$f" req_per_s)")
		p50=$(calc %.3f "$p50 > $(kv "$f" p50_ms) ? $p50 : $(kv "$f" p50_ms)")
		p99=$(calc %.3f "$p99 > $(kv "$f" p99_ms) ? $p99 : $(kv "$f" p99_ms)")
	done
	measure_end "${dpids[*]}" pg "$answered"
	for ((k = 0; k < n; k++)); do finish "mx-scale$n-$k" "${dpids[k]}"; done
	row "scale-out: $n daemon(s) on one PostgreSQL, new triplets, $((CONNS / n)) connections each" \
		"$(calc %.0f "$rps")" "≤ $p50 ms" "≤ $p99 ms" "$CPU_US µs + postgres $PG_US µs" "$RSS MiB (largest)" \
		"$errs" "$(answers "$tmp/scale$n-0.sum")" "$(ratio "$rps" "${RPS[pgbench]}")" "–" "–"
done

# ---- postgrey ----------------------------------------------------------------

if [[ -n $POSTGREY ]]; then
	PGREY_VER=$("$POSTGREY" --version 2>&1 | head -1)
	for kind in new known; do
		say "postgrey, $kind triplets"
		mkdir -p "$tmp/postgrey-$kind"
		user=(--user="$(id -un)" --group="$(id -gn)")
		if (($(id -u) == 0)); then
			chown postgrey: "$tmp/postgrey-$kind"
			user=(--user=postgrey --group=postgrey) # it drops root after binding
		fi
		new_port
		spawn "postgrey-$kind" "$POSTGREY" --inet="127.0.0.1:$PORT" --delay=1 --dbdir="$tmp/postgrey-$kind" "${user[@]}"
		PG_PID=$SPAWNED
		wait_tcp "$PORT" || die "postgrey did not start: $(tail -5 "$tmp/postgrey-$kind.log")"
		[[ $kind == known ]] && warm "127.0.0.1:$PORT"
		measure_start "$PG_PID" -
		load "postgrey-$kind" "127.0.0.1:$PORT" 4 "$kind"
		f=$tmp/postgrey-$kind.sum
		measure_end "$PG_PID" - "$(kv "$f" answered)"
		stop "$PG_PID"
		ratio=$(ratio "$(kv "$f" req_per_s)" "${RPS[pgbench]}")
		[[ $kind == known ]] && ratio="@R:$(kv "$f" req_per_s)@"
		row "postgrey (Debian), $kind triplets$([[ $kind == known ]] && echo " passing")" \
			"$(calc %.0f "$(kv "$f" req_per_s)")" "$(kv "$f" p50_ms) ms" "$(kv "$f" p99_ms) ms" "$CPU_US µs" \
			"$RSS MiB" "$(kv "$f" errors)" "$(answers "$f")" "$ratio" "–" "–"
	done
fi

# ---- the protocol ceiling again ----------------------------------------------

bare bare-end
ceiling_of=bare
(($(calc %d "${RPS[bare-end]} > ${RPS[bare]}"))) && ceiling_of=bare-end
notes+=("protocol ceiling: $(calc %.0f "${RPS[bare]}") req/s at the start of the run, $(calc %.0f "${RPS[bare-end]}") at its end; the known cases' ratios are to the higher, and the two with a target are also to the ceiling runs beside them")
RPS[bare]=${RPS[$ceiling_of]}
ceiling_cells() {
	local r=$1 m
	if [[ $r == *@BARE@* ]]; then
		IFS='|' read -r p50 p99 cpu rss errs answers <<<"${BARE_CELLS[$ceiling_of]}"
		r="| protocol ceiling: bare responder (policy.ReadRequest, answers DUNNO), the higher of two runs | $(calc %.0f "${RPS[bare]}") | $p50 | $p99 | $cpu | $rss | $errs | $answers | 1.00× | – | – |"
	fi
	while [[ $r =~ @R:([0-9.]+)@ ]]; do
		m=${BASH_REMATCH[0]}
		r=${r/"$m"/$(ratio "${BASH_REMATCH[1]}" "${RPS[bare]}")}
	done
	printf '%s\n' "$r"
}

# ---- the report --------------------------------------------------------------

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cat <<EOF
### Benchmark: \`scripts/bench.sh\`

Machine: $(nproc) CPUs ($MODEL), $MEM, Linux $(uname -r), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"),
$GOVER, PostgreSQL $PGVER$([[ -n $POSTGREY ]] && echo ", $PGREY_VER").
Commit $COMMIT. Load average $LOAD_START at the start, $LOAD_END at the end.

Command: \`$COMMAND\`

Every case: $CONNS persistent connections from \`mxpolicyd-load\` on the same
machine, ${DURATION} s. mxpolicyd: scripts/bench/greylist.yaml (greylisting
only, decision log on, one info-level log line per decision, to a file),
scripts/bench/dns.yaml (plus SPF and three DNS lists against fakedns) or
scripts/bench/replies.yaml (greylisting with the replies check, on by default).
PostgreSQL: $PGMODE.

| case | req/s | p50 | p99 | CPU per request | peak RSS | errors | replies | vs ceiling | target | |
|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|
EOF
for r in "${rows[@]}"; do ceiling_cells "$r"; done
cat <<EOF

- **Ceilings.** New-triplet cases are compared with the database ceiling,
  known (cached) cases with the protocol ceiling. "CPU per request" is the
  measured process's user+system time over the run (/proc/PID/stat) divided
  by the requests answered; "+ postgres" adds the whole PostgreSQL server's
  (postmaster and every backend); "+ fakedns" is the test DNS server's,
  which a real deployment pays in its local resolver. "peak RSS" is VmHWM.
- **Known passing** triplets: 10 clients x 10 senders x 10 recipients made
  to pass by a warm-up (first attempts, the 1 s delay, retries) before the
  measured run, so replies come from the pass cache. The greylisting-only
  case on each store is run $PAIRS times, with a run of the bare responder
  before the first and after each, while the warmed daemon waits; each run
  is judged against the mean of the two ceiling runs beside it, and the
  row shows the run with the median ratio, its target met when that ratio
  is ≥ 0.6 and every run's p99 ≤ 10 ms. With SPF on, each
  message's first reply is the Received-SPF PREPEND (spf.header).
- **SPF + 3 lists**: the lists' answers are cached by the list cache
  (dnsbl.min_ttl); SPF is evaluated for each new sender, one TXT lookup
  to fakedns, and its verdict reused for 30 s (spf/cache.go).
- **Not recorded**: the known case with the decision log off and the
  log at warn, so no row and no decision line: what deciding costs
  alone, and (in its ratio cell) how much of that rate the recorded case
  keeps. **Decision line only**: the decision log off, the line on. The
  recorded case's CPU per request less this one's is what the row costs,
  this one's less the case not recorded's what the line costs.
- **Greylisting + replies**: the replies check asks the store whether
  each new (sender, recipient) pair answers a local user's mail, before
  greylisting; the greylisting-only rows turn it off.
- **Scale-out**: the load split evenly, each share against its own daemon;
  req/s is the sum, latencies the worst of the daemons', CPU is all
  daemons' plus PostgreSQL's per request.
EOF
for n in "${notes[@]}"; do echo "- $n"; done
