#!/usr/bin/env bash
# Side-by-side benchmark of Mayfly against Debian's redis-server, on the
# same machine, in alternating rounds (A B A B A B); prints medians and the
# Mayfly/Redis ratios. Starts both servers itself and stops them by pid.
#
#   bench/compare.sh [ROUNDS]        (default 3)
#   SECTIONS="scripts memory" bench/compare.sh   (a subset: pinned 2t scripts memory)
#   MAYFLY_ARGS="--proactor_affinity_mode off" bench/compare.sh   (extra Mayfly flags)
#
# Configurations:
#   pinned: each server on CPU 0 (Mayfly --proactor_threads 1), load
#           generator on CPU 1: per-core efficiency.
#   2t:     Mayfly with 2 threads, nothing pinned.
# Figures: redis-benchmark -t set,get (P1, P16), mayfly-bench workloads,
# the servers' CPU time per operation (utime+stime from /proc), memtier if
# installed, and memory per key.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
PORT_R=${PORT_R:-7702}
PORT_M=${PORT_M:-7701}
OUT=${OUT:-$ROOT/bench/last-run}
SECTIONS=${SECTIONS:-pinned 2t scripts memory}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT"
: >"$OUT/raw.txt"

command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; }
(cd "$ROOT" && cargo build --release --quiet --bins)
MAYFLY="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
MAYFLY_ARGS=${MAYFLY_ARGS:-}
BENCH="$ROOT/target/release/mayfly-bench"
TCK=$(getconf CLK_TCK)

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_redis() { # cpu-list
    taskset -c "$1" redis-server --port "$PORT_R" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    echo $!
}
start_mayfly() { # cpu-list threads
    # shellcheck disable=SC2086 # MAYFLY_ARGS is a list of flags
    taskset -c "$1" "$MAYFLY" --port "$PORT_M" --proactor_threads "$2" --loglevel warning $MAYFLY_ARGS >/dev/null 2>&1 &
    echo $!
}

# record CONFIG SERVER METRIC VALUE
record() { echo "$1 $2 $3 $4" >>"$OUT/raw.txt"; }

# One redis-benchmark run: records ops/s per test and CPU us/op.
run_rb() { # config server port pid P n client-cpus
    local cfg=$1 srv=$2 port=$3 pid=$4 P=$5 n=$6 ccpu=$7 t0 t1 out
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$ccpu" redis-benchmark -p "$port" -t set,get -r 100000 -n "$n" -c 50 -P "$P" --csv 2>/dev/null | grep -v '^"test')
    t1=$(cpu_ticks "$pid")
    while IFS=, read -r test rps _ _ _ _ p99 _; do
        test=${test//\"/}; rps=${rps//\"/}; p99=${p99//\"/}
        record "$cfg" "$srv" "rb-$test-P$P-ops" "$rps"
        record "$cfg" "$srv" "rb-$test-P$P-p99ms" "$p99"
    done <<<"$out"
    record "$cfg" "$srv" "rb-P$P-cpu_us_per_op" "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" -v n="$n" 'BEGIN{printf "%.3f", (b-a)/t*1e6/(2*n)}')"
}

# One mayfly-bench run: records total ops/s and p99.
run_mb() { # config server port pid workload P seconds client-cpus
    local cfg=$1 srv=$2 port=$3 pid=$4 w=$5 P=$6 secs=$7 ccpu=$8 t0 t1 out ops p99 n
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$ccpu" "$BENCH" -p "$port" -w "$w" -P "$P" -t 1 -c 50 --test-time "$secs" --quiet)
    t1=$(cpu_ticks "$pid")
    ops=$(echo "$out" | awk '$1=="TOTAL"{print $2}')
    p99=$(echo "$out" | awk '$1=="TOTAL"{print $4}')
    record "$cfg" "$srv" "mb-$w-P$P-ops" "$ops"
    record "$cfg" "$srv" "mb-$w-P$P-p99ms" "$p99"
    n=$(awk -v o="$ops" -v s="$secs" 'BEGIN{print o*s}')
    record "$cfg" "$srv" "mb-$w-P$P-cpu_us_per_op" "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" -v n="$n" 'BEGIN{printf "%.3f", (b-a)/t*1e6/n}')"
}

one_round() { # config server port pid client-cpus
    local cfg=$1 srv=$2 port=$3 pid=$4 ccpu=$5
    redis-cli -p "$port" flushall >/dev/null
    run_rb "$cfg" "$srv" "$port" "$pid" 1 200000 "$ccpu"
    run_rb "$cfg" "$srv" "$port" "$pid" 16 2000000 "$ccpu"
    run_mb "$cfg" "$srv" "$port" "$pid" cacheops 1 5 "$ccpu"
    run_mb "$cfg" "$srv" "$port" "$pid" script-declared 1 3 "$ccpu"
    run_mb "$cfg" "$srv" "$port" "$pid" multi 1 3 "$ccpu"
    if command -v memtier_benchmark >/dev/null; then
        local ops
        ops=$(taskset -c "$ccpu" memtier_benchmark -p "$port" -t 1 -c 50 --test-time 5 --hide-histogram 2>/dev/null | awk '/^Totals/{print $2}')
        record "$cfg" "$srv" "memtier-ops" "$ops"
    fi
}

# memory_load SERVER PORT PID LOAD: RSS growth per item of one load into a
# freshly started server (a heap that served an earlier load would hand
# its freed blocks to the next one and hide its cost).
memory_load() {
    local srv=$1 port=$2 pid=$3 rss0 rss1 used
    case $4 in
    strings) memory_per_key "$srv" "$port" "$pid" ;;
    set) memory_of_load "$srv" "$port" "$pid" set-bytes-per-member 1000000 \
        'BEGIN{for(i=0;i<1000000;i++){m="member:" i; printf "*3\r\n$4\r\nSADD\r\n$3\r\nset\r\n$%d\r\n%s\r\n", length(m), m}}' ;;
    hash) memory_of_load "$srv" "$port" "$pid" hash-bytes-per-field 1000000 \
        'BEGIN{for(i=0;i<100000;i++){k="hash:" i; printf "*22\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n", length(k), k; for(f=0;f<10;f++){printf "$6\r\nfield%d\r\n$6\r\nvalue%d\r\n", f, f}}}' ;;
    esac
}

memory_per_key() { # server port pid
    local srv=$1 port=$2 pid=$3 rss0 rss1 used
    sleep 0.5
    rss0=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    "$BENCH" -p "$port" -w getset --ratio 1:0 --key-pattern s --key-maximum 1000000 -n 1000000 -d 32 -t 2 -c 8 -P 32 --quiet >/dev/null
    sleep 0.5
    rss1=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
    record mem "$srv" "rss-bytes-per-key" "$(( (rss1 - rss0) * 1024 / 1000000 ))"
    record mem "$srv" "used_memory-bytes-per-key" "$(( used / 1000000 ))"
}

# memory_of_load SERVER PORT PID METRIC ITEMS AWK-PROGRAM: RSS growth per
# item after piping the RESP that the awk program prints into a flushed server.
memory_of_load() {
    local srv=$1 port=$2 pid=$3 metric=$4 items=$5 prog=$6 rss0 rss1
    sleep 0.5
    rss0=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    awk "$prog" /dev/null | redis-cli -p "$port" --pipe >/dev/null
    sleep 0.5
    rss1=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    record mem "$srv" "$metric" "$(awk -v a="$rss0" -v b="$rss1" -v n="$items" 'BEGIN{printf "%.1f", (b-a)*1024/n}')"
}

want pinned && echo "== pinned: servers on CPU 0, load generator on CPU 1 ($ROUNDS rounds, alternating)"
want pinned && for round in $(seq 1 "$ROUNDS"); do
    rp=$(start_redis 0); PIDS+=("$rp"); wait_port "$PORT_R"
    one_round pinned redis "$PORT_R" "$rp" 1
    kill "$rp"; wait "$rp" 2>/dev/null || true
    mp=$(start_mayfly 0 1); PIDS+=("$mp"); wait_port "$PORT_M"
    one_round pinned mayfly "$PORT_M" "$mp" 1
    kill "$mp"; wait "$mp" 2>/dev/null || true
    echo "   round $round done"
done

want 2t && echo "== 2t: Mayfly with 2 threads, unpinned, against unpinned redis-server"
want 2t && for round in $(seq 1 "$ROUNDS"); do
    rp=$(start_redis 0-1); PIDS+=("$rp"); wait_port "$PORT_R"
    one_round 2t redis "$PORT_R" "$rp" 0-1
    kill "$rp"; wait "$rp" 2>/dev/null || true
    mp=$(start_mayfly 0-1 2); PIDS+=("$mp"); wait_port "$PORT_M"
    one_round 2t mayfly "$PORT_M" "$mp" 0-1
    kill "$mp"; wait "$mp" 2>/dev/null || true
    echo "   round $round done"
done

# EVALSHA through redis-benchmark: a script on one shard's keys, one whose
# declared keys span both shards, and a global (undeclared-key) script.
tag_on() { # shard -> a hash tag whose keys live on that shard (2 shards)
    for t in a b c d e f g h; do
        [ "$("$BENCH" --shard-of "{$t}")" = "$1" ] && { echo "$t"; return; }
    done
}
T0=$(tag_on 0); T1=$(tag_on 1)
ONE="return redis.call('incr', KEYS[1])"
TWO="redis.call('incr', KEYS[1]) return redis.call('incr', KEYS[2])"
GLOBAL="--!df flags=allow-undeclared-keys
redis.call('incr', '{$T0}g:' .. ARGV[1]) return redis.call('incr', '{$T1}g:' .. ARGV[1])"
run_scripts() { # config server port pid client-cpus
    local cfg=$1 srv=$2 port=$3 pid=$4 ccpu=$5 name body sha t0 t1 ops n=200000
    for name in one-shard two-shards global; do
        case $name in
            one-shard) body=$ONE; args=(1 "{$T0}k:__rand_int__") ;;
            two-shards) body=$TWO; args=(2 "{$T0}k:__rand_int__" "{$T1}k:__rand_int__") ;;
            global) body=$GLOBAL; args=(0 "__rand_int__") ;;
        esac
        sha=$(redis-cli -p "$port" script load "$body")
        t0=$(cpu_ticks "$pid")
        ops=$(taskset -c "$ccpu" redis-benchmark -p "$port" -n "$n" -c 50 -r 100000 --csv EVALSHA "$sha" "${args[@]}" 2>/dev/null | grep -v '^"test' | head -1 | cut -d, -f2 | tr -d '"')
        t1=$(cpu_ticks "$pid")
        record "$cfg" "$srv" "evalsha-$name-ops" "$ops"
        record "$cfg" "$srv" "evalsha-$name-cpu_us_per_op" "$(awk -v a="$t0" -v b="$t1" -v t="$TCK" -v n="$n" 'BEGIN{printf "%.3f", (b-a)/t*1e6/n}')"
    done
}
want scripts && echo "== EVALSHA: one shard, two shards, global ($ROUNDS rounds each, alternating)"
want scripts && for round in $(seq 1 "$ROUNDS"); do
    rp=$(start_redis 0); PIDS+=("$rp"); wait_port "$PORT_R"
    run_scripts pinned redis "$PORT_R" "$rp" 1
    kill "$rp"; wait "$rp" 2>/dev/null || true
    mp=$(start_mayfly 0 1); PIDS+=("$mp"); wait_port "$PORT_M"
    run_scripts pinned mayfly "$PORT_M" "$mp" 1
    kill "$mp"; wait "$mp" 2>/dev/null || true
    rp=$(start_redis 0-1); PIDS+=("$rp"); wait_port "$PORT_R"
    run_scripts 2t redis "$PORT_R" "$rp" 0-1
    kill "$rp"; wait "$rp" 2>/dev/null || true
    mp=$(start_mayfly 0-1 2); PIDS+=("$mp"); wait_port "$PORT_M"
    run_scripts 2t mayfly "$PORT_M" "$mp" 0-1
    kill "$mp"; wait "$mp" 2>/dev/null || true
done

if want memory; then
    echo "== memory: 1,000,000 keys of 32-byte values; a set of 1,000,000 members; 100,000 hashes of 10 fields"
    for load in strings set hash; do
        rp=$(start_redis 0); PIDS+=("$rp"); wait_port "$PORT_R"; memory_load redis "$PORT_R" "$rp" "$load"
        kill "$rp"; wait "$rp" 2>/dev/null || true
        mp=$(start_mayfly 0 1); PIDS+=("$mp"); wait_port "$PORT_M"; memory_load mayfly "$PORT_M" "$mp" "$load"
        kill "$mp"; wait "$mp" 2>/dev/null || true
    done
fi
command -v memtier_benchmark >/dev/null || echo "(memtier_benchmark is not installed: skipped; it is not in Debian)"

# Medians and ratios.
python3 - "$OUT/raw.txt" <<'PY' | tee "$OUT/table.md"
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    cfg, srv, metric, value = line.split()
    try:
        rows[(cfg, metric, srv)].append(float(value))
    except ValueError:
        pass
metrics = sorted({(c, m) for c, m, _ in rows})
print("| config | metric | redis | mayfly | mayfly/redis |")
print("|---|---|---|---|---|")
for cfg, metric in metrics:
    r = rows.get((cfg, metric, "redis")); m = rows.get((cfg, metric, "mayfly"))
    if not r or not m:
        continue
    rm, mm = statistics.median(r), statistics.median(m)
    ratio = f"{mm / rm:.2f}" if rm else "-"
    print(f"| {cfg} | {metric} | {rm:,.3f} | {mm:,.3f} | {ratio} |")
PY
