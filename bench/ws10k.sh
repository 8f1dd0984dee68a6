#!/usr/bin/env bash
# Hold many authenticated run WebSockets against `idflow serve --dev` and
# measure them with bench/wsload. Usage (from the repository root):
#
#   bench/ws10k.sh                       # 10,000 sockets, 1,000 of them on one fan-out run
#   CONNS=2000 FANOUT=1000 bench/ws10k.sh
#   SERVER_CPUS=0 LOAD_CPUS=1 CONNS=1000 FANOUT=1000 DURATION=10s bench/ws10k.sh
#                                        # server and load generator pinned apart
#   IDFLOW_BIN=/tmp/idflow-old bench/ws10k.sh   # another build of the server
#
# Everything else is passed to wsload, e.g. bench/ws10k.sh -json.
set -euo pipefail

# Load generators are one user's flood by design: the per-user rate
# limits (docs/LIMITS.md) are off unless RATE_LIMITS says otherwise.
RATE_LIMITS=${RATE_LIMITS:-read=off,write=off,turn=off,ingest=off,mcp=off,ws=off}
export IDFLOW_RATE_LIMITS=$RATE_LIMITS

CONNS=${CONNS:-10000}
FANOUT=${FANOUT:-1000}
RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
USERS=${USERS:-alice,bob,carol,admin}
ADDR=${ADDR:-127.0.0.1:18080}
# Each user holds CONNS/users sockets, and alice the fan-out ones too.
PER_USER=${PER_USER:-$(( CONNS / 2 + FANOUT ))}

# One descriptor per socket on each side, plus the database and slack.
want=$(( CONNS + 1024 ))
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$want" ]; then
	echo "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $want needed for $CONNS sockets" >&2
	exit 1
fi

# taskset -c <cpus>, or nothing.
pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -n "${IDFLOW_BIN:-}" ]; then
	cp "$IDFLOW_BIN" "$work/idflow"
else
	go build -o "$work/idflow" ./cmd/idflow
fi
go build -o "$work/wsload" ./bench/wsload

IDFLOW_WS_MAX_PER_USER=$PER_USER IDFLOW_LISTEN=$ADDR IDFLOW_DATA_DIR=$work/data IDFLOW_LOG_LEVEL=warn \
	$(pin "${SERVER_CPUS:-}") "$work/idflow" serve --dev >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	curl -fsS "http://$ADDR/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

$(pin "${LOAD_CPUS:-}") "$work/wsload" -server "http://$ADDR" -dev-users "$USERS" -conns "$CONNS" -fanout "$FANOUT" \
	-rate "$RATE" -duration "$DURATION" -server-pid "$server" "$@"
