#!/usr/bin/env bash
# idflow's hot paths over real HTTP, side by side with a bare net/http
# handler (bench/bare) on the same machine, in the same run. Usage, from the
# repository root:
#
#   bench/http.sh                        # 3 interleaved rounds of 10 s per endpoint
#   ROUNDS=5 DURATION=5s bench/http.sh
#   PROFILE=validate-rot bench/http.sh   # also a CPU profile of idflow under that load
#
# It builds idflow and bench/bare, starts `idflow serve --dev` (SQLite) and,
# when PostgreSQL's server binaries are installed, a second `idflow serve
# --dev` on a PostgreSQL cluster of its own, mints bearer tokens from the dev
# issuer, and runs wrk (2 threads, 32 connections, loopback) against each
# endpoint in turn, round after round, so that whatever else loads the
# machine loads every endpoint alike. It prints, per endpoint, the medians
# over the rounds of requests/s, p50 and p99 latency, and of the ratio of
# its requests/s to the bare handler's in the same round. Any non-2xx answer
# or socket error fails the run: a fast 401 is not a result.
#
# Endpoints: bare (the yardstick), healthz, me (GET /api/v1/me, one token),
# validate (GET /auth/validate, one token), validate-rot (the same, 1,000
# distinct valid tokens in rotation), sessions-sqlite (GET /api/v1/sessions,
# 20 sessions), sessions-pg (the same on PostgreSQL).
set -euo pipefail

# Load generators are one user's flood by design: the per-user rate
# limits (docs/LIMITS.md) are off unless RATE_LIMITS says otherwise.
RATE_LIMITS=${RATE_LIMITS:-read=off,write=off,turn=off,ingest=off,mcp=off,ws=off}
export IDFLOW_RATE_LIMITS=$RATE_LIMITS

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
TOKENS=${TOKENS:-1000}
SESSIONS=${SESSIONS:-20}
PROFILE=${PROFILE:-}        # an endpoint name: profile idflow's CPU under its load
PROFILE_OUT=${PROFILE_OUT:-bench-http-cpu.pprof}
ADDR=${ADDR:-127.0.0.1:39080}
BARE_ADDR=${BARE_ADDR:-127.0.0.1:39081}
PG_ADDR=${PG_ADDR:-127.0.0.1:39082}   # idflow on PostgreSQL
PPROF_ADDR=${PPROF_ADDR:-127.0.0.1:39083}
PG_PORT=${PG_PORT:-39084}
ENDPOINTS=${ENDPOINTS:-bare healthz me validate validate-rot sessions-sqlite sessions-pg}

cd "$(dirname "$0")/.."
root=$PWD

if ! command -v wrk >/dev/null; then
	echo "installing wrk (Debian package)" >&2
	apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

work=$(mktemp -d)
chmod 755 "$work" # the PostgreSQL cluster below runs as the postgres user
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${pgbin:-}" ] && [ -d "$work/pg/data" ]; then
		runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

tags=()
[ -n "$PROFILE" ] && tags=(-tags pprof) # cmd/idflow/pprof.go
go build "${tags[@]}" -o "$work/idflow" ./cmd/idflow
go build -o "$work/bare" ./bench/bare

wait_up() { # url
	for _ in $(seq 200); do
		curl -fsS "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "not up: $1" >&2
	return 1
}

"$work/bare" -addr "$BARE_ADDR" &
pids+=($!)

# The server logs at its default level (info: one access-log line per
# request), to a file, as a deployment would.
IDFLOW_LISTEN=$ADDR IDFLOW_DATA_DIR=$work/data IDFLOW_PPROF_ADDR=$PPROF_ADDR \
	"$work/idflow" serve --dev >"$work/idflow.out" 2>"$work/idflow.log" &
pids+=($!)
wait_up "http://$BARE_ADDR/"
wait_up "http://$ADDR/healthz"

pgbin=
if [[ " $ENDPOINTS " == *" sessions-pg "* ]]; then
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$pgbin" ] || ! id postgres >/dev/null 2>&1; then
		echo "PostgreSQL server binaries or the postgres user not found: skipping sessions-pg" >&2
		pgbin=
		ENDPOINTS=${ENDPOINTS/sessions-pg/}
	fi
fi
if [ -n "$pgbin" ]; then
	mkdir -p "$work/pg" && chown postgres: "$work/pg"
	runuser -u postgres -- "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
		-o "-k $work/pg -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=100" start >/dev/null
	psql=("$pgbin/psql" -h "$work/pg" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q)
	runuser -u postgres -- "${psql[@]}" -d postgres <<-'SQL'
		CREATE ROLE idflow_owner LOGIN PASSWORD 'owner' NOSUPERUSER NOBYPASSRLS;
		CREATE ROLE idflow_app LOGIN PASSWORD 'app' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
		CREATE DATABASE idflow OWNER idflow_owner;
		REVOKE ALL ON DATABASE idflow FROM PUBLIC;
		GRANT CONNECT ON DATABASE idflow TO idflow_app;
	SQL
	IDFLOW_LISTEN=$PG_ADDR IDFLOW_DATA_DIR=$work/data-pg \
		IDFLOW_DATABASE_URL="postgres://idflow_app:app@127.0.0.1:$PG_PORT/idflow?sslmode=disable" \
		IDFLOW_MIGRATE_DATABASE_URL="postgres://idflow_owner:owner@127.0.0.1:$PG_PORT/idflow?sslmode=disable" \
		"$work/idflow" serve --dev >"$work/idflow-pg.out" 2>"$work/idflow-pg.log" &
	pids+=($!)
	wait_up "http://$PG_ADDR/healthz"
fi

# Tokens: the dev issuer's, through `idflow dev-token` (authorization code +
# PKCE). Each carries its own jti, so the 1,000 are distinct even though the
# dev issuer has five users.
token() { "$work/idflow" dev-token "$1" --server "http://$2"; }
tok=$(token alice "$ADDR")
users=(alice bob carol admin platform)
: >"$work/tokens"
for i in $(seq 1 "$TOKENS"); do echo "${users[$((i % 5))]}"; done |
	xargs -P 4 -I{} "$work/idflow" dev-token {} --server "http://$ADDR" >>"$work/tokens"
if [ "$(sort -u "$work/tokens" | grep -c .)" -ne "$TOKENS" ]; then
	echo "minted $(sort -u "$work/tokens" | grep -c .) distinct tokens, wanted $TOKENS" >&2
	exit 1
fi

seed_sessions() { # addr token
	for i in $(seq 1 "$SESSIONS"); do
		curl -fsS -o /dev/null -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
			-d "{\"title\":\"session $i\"}" "http://$1/api/v1/sessions"
	done
}
seed_sessions "$ADDR" "$tok"
pgtok=
if [ -n "$pgbin" ]; then
	pgtok=$(token alice "$PG_ADDR")
	seed_sessions "$PG_ADDR" "$pgtok"
fi

# run <endpoint> <duration>: one wrk run; prints "rps p50µs p99µs".
run() {
	local ep=$1 d=$2 url hdr=() toks=
	case $ep in
	bare) url=http://$BARE_ADDR/ ;;
	healthz) url=http://$ADDR/healthz ;;
	me) url=http://$ADDR/api/v1/me hdr=(-H "Authorization: Bearer $tok") ;;
	validate) url=http://$ADDR/auth/validate hdr=(-H "Authorization: Bearer $tok") ;;
	validate-rot) url=http://$ADDR/auth/validate toks=$work/tokens ;;
	sessions-sqlite) url=http://$ADDR/api/v1/sessions hdr=(-H "Authorization: Bearer $tok") ;;
	sessions-pg) url=http://$PG_ADDR/api/v1/sessions hdr=(-H "Authorization: Bearer $pgtok") ;;
	*) echo "unknown endpoint $ep" >&2; return 1 ;;
	esac
	local out
	out=$(TOKENS_FILE=$toks wrk -t"$THREADS" -c"$CONNS" -d"$d" "${hdr[@]}" -s "$root/bench/http.lua" "$url")
	local line
	line=$(grep '^RESULT ' <<<"$out") || { echo "$out" >&2; return 1; }
	read -r _ rps p50 p99 bad errs <<<"$line"
	if [ "$bad" != 0 ] || [ "$errs" != 0 ]; then
		echo "$ep: $bad non-2xx answers, $errs socket errors" >&2
		return 1
	fi
	echo "$rps $p50 $p99"
}

echo "load before: $(uptime)"
for ep in $ENDPOINTS; do run "$ep" 2s >/dev/null; done # warm: caches, connections, the JIT of nothing

if [ -n "$PROFILE" ]; then
	secs=$(( ${DURATION%s} - 2 ))
	run "$PROFILE" "$DURATION" >/dev/null &
	sleep 1
	curl -fsS -o "$PROFILE_OUT" "http://$PPROF_ADDR/debug/pprof/profile?seconds=$secs"
	wait $!
	echo "CPU profile of idflow under $PROFILE: $PROFILE_OUT (go tool pprof -top $work/idflow $PROFILE_OUT)"
	go tool pprof -top -nodecount=40 "$work/idflow" "$PROFILE_OUT" 2>/dev/null | head -50
	cp "$work/idflow" "${PROFILE_OUT%.pprof}.bin"
fi

results=$work/results
: >"$results"
for r in $(seq 1 "$ROUNDS"); do
	for ep in $ENDPOINTS; do
		echo "$r $ep $(run "$ep" "$DURATION")" >>"$results"
	done
	echo "round $r done: $(uptime)" >&2
done
echo "load after:  $(uptime)"

# Medians over the rounds; the ratio is taken per round, then its median.
awk -v eps="$ENDPOINTS" '
	{ rps[$2, $1] = $3; p50[$2, $1] = $4; p99[$2, $1] = $5; rounds[$1] = 1 }
	function median(a, n,   i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	END {
		n = 0; for (r in rounds) n++
		printf "%-16s %10s %9s %9s %8s   %s\n", "endpoint", "req/s", "p50 ms", "p99 ms", "× bare", "(medians of " n " rounds)"
		split(eps, list, " ")
		for (k = 1; k in list; k++) {
			ep = list[k]
			for (r = 1; r <= n; r++) { a[r] = rps[ep, r]; b[r] = p50[ep, r]; c[r] = p99[ep, r]; d[r] = rps[ep, r] / rps["bare", r] }
			printf "%-16s %10.0f %9.3f %9.3f %8.2f\n", ep, median(a, n), median(b, n) / 1000, median(c, n) / 1000, median(d, n)
		}
	}' "$results"
