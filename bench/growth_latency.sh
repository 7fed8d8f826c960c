#!/usr/bin/env bash
# Latency while a server's tables grow: loads KEYS random string keys with
# redis-benchmark (SET, pipeline 32, 4 clients) twice, with a FLUSHALL in
# between (the second load reuses memory the first one touched), then adds
# KEYS/3 members to one set, while `redis-cli --latency-history -i 1` pings
# the server over its own connection. Prints, per load, how long it took and
# the five largest distinct one-second maxima of the ping's latency, for Debian's
# redis-server and for Mayfly, each pinned to CPU 0 (clients on CPU 1).
#
#   bench/growth_latency.sh [KEYS]        (default 6000000)
#   MAYFLY_BIN=... MAYFLY_ARGS="..." bench/growth_latency.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${1:-6000000}
PORT=${PORT:-7703}
command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; }
(cd "$ROOT" && cargo build --release --quiet --bins)
MAYFLY="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
MAYFLY_ARGS=${MAYFLY_ARGS:-}
LAT=$(mktemp)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; rm -f "$LAT"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.05; done; echo "port $PORT not up" >&2; exit 1; }

# load NAME COMMAND...: runs redis-benchmark with the ping beside it.
load() {
    local name=$1 t0 t1 lp
    shift
    # Line-buffered: redis-cli is killed, and a short load's lines would
    # otherwise still sit in its stdio buffer.
    stdbuf -oL taskset -c 1 redis-cli -p "$PORT" --latency-history -i 1 >"$LAT" 2>&1 &
    lp=$!
    sleep 0.3
    t0=$(date +%s.%N)
    taskset -c 1 redis-benchmark -p "$PORT" -r 100000000 -P 32 -c 4 -q "$@" >/dev/null
    t1=$(date +%s.%N)
    sleep 1.2
    kill "$lp"; wait "$lp" 2>/dev/null || true
    # Each line of the history is: min max avg samples (ms) of one second.
    printf '  %-22s %5.1f s   largest one-second max latencies (ms): %s\n' "$name" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
        "$(awk '{print $2}' "$LAT" | sort -n | uniq | tail -5 | tr '\n' ' ')"
}

for server in redis mayfly; do
    if [ "$server" = redis ]; then
        taskset -c 0 redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    else
        # shellcheck disable=SC2086 # MAYFLY_ARGS is a list of flags
        taskset -c 0 "$MAYFLY" --port "$PORT" --proactor_threads 1 --loglevel warning $MAYFLY_ARGS >/dev/null 2>&1 &
    fi
    PID=$!
    wait_port
    echo "$server:"
    load "SET, first load" -t set -n "$KEYS"
    echo "  ($(redis-cli -p "$PORT" dbsize) keys)"
    redis-cli -p "$PORT" flushall >/dev/null
    sleep 1
    load "SET, after FLUSHALL" -t set -n "$KEYS"
    redis-cli -p "$PORT" flushall >/dev/null
    sleep 1
    load "SADD to one set" -n $((KEYS / 3)) sadd growing "member:__rand_int__"
    echo "  ($(redis-cli -p "$PORT" scard growing) members)"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    PID=""
done
