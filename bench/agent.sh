#!/usr/bin/env bash
# Benchmarks of the agent runtime, each side by side with its baseline in
# one run, against real binaries on loopback (see bench/README.md):
#
#   1. time to first token of streamed turns through idflow (memory K=5,
#      the default, and K=0) vs the model server called directly;
#   2. MCP tools/call of a downstream tool through idflow's /mcp vs the
#      downstream server called directly (and a built-in tool for reference);
#   3. many streamed turns held open at once: idflow's RSS.
#
# Usage (from the repository root):
#
#   bench/agent.sh                 # all three
#   PARTS=ttft bench/agent.sh      # some: ttft, tools, hold (comma-separated)
#   STREAMS=50 ROUNDS=10 HOLD=1000 bench/agent.sh
set -euo pipefail

# Load generators are one user's flood by design: the per-user rate
# limits (docs/LIMITS.md) are off unless RATE_LIMITS says otherwise.
RATE_LIMITS=${RATE_LIMITS:-read=off,write=off,turn=off,ingest=off,mcp=off,ws=off}
export IDFLOW_RATE_LIMITS=$RATE_LIMITS
# ... and so are the turns and streams one user may have at once.
export IDFLOW_TURNS_PER_USER=${TURNS_PER_USER:-1000} IDFLOW_STREAMS_PER_USER=${STREAMS_PER_USER:-1000}

# All of it in a function: bash reads a function whole before it runs it.
main() {

	PARTS=${PARTS:-ttft,tools,hold}
	STREAMS=${STREAMS:-50}          # concurrent streams per side (TTFT)
	ROUNDS=${ROUNDS:-10}            # TTFT rounds; each runs every side once, in turn
	TURNS=${TURNS:-4}               # turns per stream per round
	CHUNKS=${CHUNKS:-20}            # the model's reply: chunks …
	INTERVAL=${INTERVAL:-50ms}      # … one every INTERVAL, the first at once
	TOOL_LEVELS=${TOOL_LEVELS:-1,8} # MCP client concurrency levels
	TOOL_CALLS=${TOOL_CALLS:-300}   # calls per client per series at each level
	TOOL_WORK=${TOOL_WORK:-0s}      # how long the downstream echo takes before answering
	HOLD=${HOLD:-1000}              # streamed turns held at once
	STEP=${STEP:-250}               # a memory reading every STEP streams
	AFTER=${AFTER:-5s,60s,150s}     # readings after the held turns are released
	USERS=${USERS:-alice,bob,carol,admin}
	HOST=${HOST:-127.0.0.1}

	# Each held turn is two sockets in idflow (client, model) and one in each
	# other process.
	want=$(( 2 * HOLD + 1024 ))
	ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	if [ "$(ulimit -n)" -lt "$want" ]; then
		echo "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $want needed to hold $HOLD turns" >&2
		exit 1
	fi

	work=$(mktemp -d)
	pids=()
	stop() { # stop the processes this script started, by id
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
		pids=()
	}
	trap 'stop; rm -rf "$work"' EXIT

	echo "building idflow and agentload …" >&2
	go build -o "$work/idflow" ./cmd/idflow
	go build -o "$work/agentload" ./bench/agentload

	waitfor() { # url: until it answers anything over HTTP
		for _ in $(seq 200); do
			curl -sS -o /dev/null "$1" 2>/dev/null && return 0
			sleep 0.1
		done
		echo "$1 did not answer" >&2
		return 1
	}

	# The stand-in model and downstream MCP servers.
	"$work/agentload" model -listen "$HOST:18181" -chunks "$CHUNKS" -interval "$INTERVAL" >"$work/model.log" 2>&1 &
	pids+=($!)
	"$work/agentload" mcp -listen "$HOST:18191" -work "$TOOL_WORK" >"$work/mcp.log" 2>&1 &
	pids+=($!)
	mcp_pid=$!
	cat >"$work/servers.json" <<-EOF
	{"servers": [{"name": "bench", "url": "http://$HOST:18191/mcp", "auth": {"type": "assertion"}}]}
	EOF

	idflow() { # name port [VAR=value …]: start idflow serve --dev; its pid is last in pids
		local name=$1 port=$2
		shift 2
		env IDFLOW_LISTEN="$HOST:$port" IDFLOW_DATA_DIR="$work/$name" IDFLOW_LLM_URL="http://$HOST:18181/v1" \
			IDFLOW_LLM_MODEL=bench IDFLOW_MCP_SERVERS_FILE="$work/servers.json" "$@" \
			"$work/idflow" serve --dev >"$work/$name.log" 2>&1 &
		pids+=($!)
		waitfor "http://$HOST:$port/healthz"
	}

	has() { [[ ",$PARTS," == *",$1,"* ]]; }

	echo "machine: $(nproc) CPUs; $(uptime)"
	if has ttft || has tools; then
		idflow k5 18080
		k5_pid=${pids[-1]}
		idflow k0 18082 IDFLOW_AGENT_MEMORY_K=0
		waitfor "http://$HOST:18181/bench/stats"
		waitfor "http://$HOST:18191/mcp"
	fi
	if has ttft; then
		echo
		echo "== 1. time to first token: idflow vs the model server, $STREAMS streams per side"
		"$work/agentload" ttft -model "http://$HOST:18181/v1" -idflow "k5=http://$HOST:18080,k0=http://$HOST:18082" \
			-dev-users "$USERS" -streams "$STREAMS" -rounds "$ROUNDS" -turns "$TURNS"
	fi
	if has tools; then
		echo
		echo "== 2. MCP tools/call: through idflow's /mcp vs the downstream server (echo answers after $TOOL_WORK)"
		"$work/agentload" tools -idflow "http://$HOST:18080" -downstream "http://$HOST:18191/mcp" -tool bench__echo \
			-dev-users "$USERS" -concurrency "$TOOL_LEVELS" -calls "$TOOL_CALLS" -server-pid "$k5_pid" -downstream-pid "$mcp_pid"
	fi
	if has hold; then
		# A fresh server of its own, the others stopped: its memory is the turns'.
		stop
		"$work/agentload" model -listen "$HOST:18181" -chunks "$CHUNKS" -interval "$INTERVAL" >"$work/model.log" 2>&1 &
		pids+=($!)
		"$work/agentload" mcp -listen "$HOST:18191" >"$work/mcp.log" 2>&1 &
		pids+=($!)
		waitfor "http://$HOST:18181/bench/stats"
		idflow hold 18084 IDFLOW_METRICS_LISTEN="$HOST:18089"
		server=${pids[-1]}
		echo
		echo "== 3. $HOLD streamed turns held at once: idflow's memory"
		"$work/agentload" hold -idflow "http://$HOST:18084" -model "http://$HOST:18181" -dev-users "$USERS" \
			-streams "$HOLD" -step "$STEP" -after "$AFTER" -server-pid "$server" -metrics "http://$HOST:18089/metrics"
	fi
	echo
	echo "machine: $(uptime)"
}

main "$@"
