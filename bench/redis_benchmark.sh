#!/usr/bin/env bash
# The first-look figures of the server-core issue: redis-benchmark
# -t set,get -r 100000 -n 1000000 -c 50 at -P 1 and -P 16, against
# redis-server, Mayfly with 1 thread and Mayfly with 2 threads, all
# unpinned, in alternating rounds. Prints one line per run (rps per test and
# the server's CPU microseconds per request from /proc).
#
#   bench/redis_benchmark.sh [ROUNDS]   (default 3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
PORT=${PORT:-7703}
(cd "$ROOT" && cargo build --release --quiet --bins)
TCK=$(getconf CLK_TCK)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null || true' EXIT

start() {
    case $1 in
        redis) redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
        mayfly-1t) "$ROOT/target/release/mayfly" --port "$PORT" --proactor_threads 1 --loglevel warning 2>/dev/null & ;;
        mayfly-2t) "$ROOT/target/release/mayfly" --port "$PORT" --proactor_threads 2 --loglevel warning 2>/dev/null & ;;
    esac
    PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return; sleep 0.05; done
    echo "server $1 did not start" >&2; exit 1
}

for round in $(seq 1 "$ROUNDS"); do
    for server in redis mayfly-1t mayfly-2t; do
        start "$server"
        for P in 1 16; do
            t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
            out=$(redis-benchmark -p "$PORT" -t set,get -r 100000 -n 1000000 -c 50 -P "$P" --csv 2>/dev/null | grep -v '^"test' | cut -d, -f1,2 | tr -d '"' | tr '\n' ' ')
            t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
            cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TCK" 'BEGIN{printf "%.3f", (b-a)/t*1e6/2000000}')
            echo "round $round $server P$P $out cpu_us_per_req=$cpu"
        done
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    done
done
