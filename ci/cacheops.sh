#!/usr/bin/env bash
# Runs django-cacheops 7.2's own test suite against a Mayfly that this
# script builds and starts itself (and stops by pid afterwards).
#
#   ci/cacheops.sh [PORT]
#   ci/cacheops.sh --fetch    only fetch and check the sdist, unpack it,
#                             and print the directory of its Lua scripts
#                             (tests/cacheops.rs reads them from there)
#
# Configurations: Mayfly with 2 threads (cacheops's keys spread over both
# shards) and with 1 thread, default flags only, each in upstream's four
# sqlite modes (plain, CACHEOPS_PREFIX=1, CACHEOPS_INSIDEOUT=1, and
# `manage.py invalidate`); then the plain mode once more with redis-py 8,
# which speaks RESP3 (HELLO 3).
#
# With MAYFLY_CACHEOPS_COMPARE=1 it also times the plain suite against
# Debian's redis-server, for the record.
#
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any
# failure, crash or timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FETCH_ONLY=0
if [ "${1:-}" = --fetch ]; then FETCH_ONLY=1; shift; fi
PORT=${1:-6390}
WORK=${CACHEOPS_WORK:-${TMPDIR:-/tmp}/mayfly-cacheops}
SDIST_SHA256=cbc11cc0321295a3644e27bcb26940f08cb9c2e71d3ee506cbcff0bdda1a9f33
RUN_TIMEOUT=${CACHEOPS_RUN_TIMEOUT:-900}

say() { printf '==> %s\n' "$*"; }

mkdir -p "$WORK"
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    say "installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

# Two environments with the same pins: redis-py 5.2.1 (RESP2) and 8.x (RESP3).
make_venv() {
    local dir=$1 redis_pin=$2
    if [ ! -x "$dir/bin/pytest" ] || ! "$dir/bin/python" -c "import redis, sys; sys.exit(redis.__version__ != '${redis_pin#redis==}')" 2>/dev/null; then
        say "creating $dir ($redis_pin)"
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install -q --disable-pip-version-check -r "$ROOT/ci/cacheops-requirements.txt"
        "$dir/bin/pip" install -q --disable-pip-version-check "$redis_pin"
    fi
}
make_venv "$WORK/venv" "redis==5.2.1"
make_venv "$WORK/venv8" "redis==8.1.0"

# The suite itself: upstream's sdist, checked against its known sha256.
SDIST="$WORK/django_cacheops-7.2.tar.gz"
if [ ! -f "$SDIST" ]; then
    say "downloading django-cacheops 7.2"
    "$WORK/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        django-cacheops==7.2 -d "$WORK"
fi
echo "$SDIST_SHA256  $SDIST" | sha256sum -c --quiet - || { echo "sdist checksum mismatch" >&2; exit 1; }

if [ "$FETCH_ONLY" = 1 ]; then
    rm -rf "$WORK/src" && mkdir -p "$WORK/src"
    tar xzf "$SDIST" -C "$WORK/src" --strip-components=1
    echo "$WORK/src/cacheops/lua"
    exit 0
fi

say "building mayfly"
(cd "$ROOT" && cargo build --release --quiet)
MAYFLY="$ROOT/target/release/mayfly"

TOTAL_PASSED=0 TOTAL_FAILED=0 TOTAL_SKIPPED=0 PROBLEMS=0
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

start_server() {
    stop_server
    "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "server did not start: $*" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

# A fresh copy of the suite per run: Django writes its sqlite file into
# the working directory, and the settings module points at our port.
fresh_tree() {
    local dir="$WORK/run"
    rm -rf "$dir" && mkdir -p "$dir"
    tar xzf "$SDIST" -C "$dir" --strip-components=1
    cat >"$dir/mayfly_settings.py" <<PY
import os
from tests.settings import *  # noqa: F401,F403 (upstream's settings, unedited)

CACHEOPS_REDIS = dict(CACHEOPS_REDIS, port=int(os.environ["MAYFLY_PORT"]))
PY
    echo "$dir"
}

# Runs pytest in one mode and adds its counts to the totals.
run_suite() {
    local label=$1 venv=$2; shift 2
    local dir log started elapsed
    dir=$(fresh_tree)
    log="$WORK/last-run.log"
    started=$(date +%s%N)
    set +e
    (cd "$dir" && env MAYFLY_PORT="$PORT" "$@" timeout "$RUN_TIMEOUT" "$venv/bin/python" -m pytest \
        -q -p no:cacheprovider --ds=mayfly_settings >"$log" 2>&1)
    local rc=$?
    set -e
    elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
    local summary passed failed skipped errors xfailed
    summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ passed' "$log" | tail -1 || true)
    passed=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
    failed=$(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
    errors=$(echo "$summary" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+' || echo 0)
    skipped=$(echo "$summary" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
    xfailed=$(echo "$summary" | grep -oE '[0-9]+ xfailed' | grep -oE '[0-9]+' || echo 0)
    # Upstream's expected failures count as skips, as in the issue's baseline.
    skipped=$(( ${skipped:-0} + ${xfailed:-0} ))
    failed=$((failed + errors))
    printf '%-42s %4s passed %3s failed %3s skipped  %6s ms  (exit %s)\n' \
        "$label" "${passed:-0}" "$failed" "${skipped:-0}" "$elapsed" "$rc"
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "${passed:-0}" -eq 0 ]; then
        PROBLEMS=$((PROBLEMS + 1))
        grep -E '^(FAILED|ERROR)|Error|error' "$log" | head -40 || true
        tail -5 "$log"
        [ "$failed" -eq 0 ] && failed=1
    fi
    TOTAL_PASSED=$((TOTAL_PASSED + ${passed:-0}))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + ${skipped:-0}))
}

# Runs `manage.py invalidate <what>` and counts it as one test.
run_invalidate() {
    local label=$1 what=$2 dir rc
    dir=$(fresh_tree)
    set +e
    (cd "$dir" && env MAYFLY_PORT="$PORT" DJANGO_SETTINGS_MODULE=mayfly_settings \
        timeout 120 "$WORK/venv/bin/python" manage.py invalidate "$what" >"$WORK/last-run.log" 2>&1)
    rc=$?
    set -e
    printf '%-42s %s\n' "$label invalidate $what" "$([ $rc -eq 0 ] && echo ok || echo FAILED)"
    if [ $rc -eq 0 ]; then
        TOTAL_PASSED=$((TOTAL_PASSED + 1))
    else
        TOTAL_FAILED=$((TOTAL_FAILED + 1)); PROBLEMS=$((PROBLEMS + 1))
        tail -20 "$WORK/last-run.log"
    fi
}

for threads in 2 1; do
    start_server "$MAYFLY" --port "$PORT" --proactor_threads "$threads" --loglevel warning
    cfg="mayfly $threads thread(s):"
    run_suite "$cfg plain" "$WORK/venv"
    run_suite "$cfg CACHEOPS_PREFIX=1" "$WORK/venv" CACHEOPS_PREFIX=1
    run_suite "$cfg CACHEOPS_INSIDEOUT=1" "$WORK/venv" CACHEOPS_INSIDEOUT=1
    for what in tests.post tests all; do
        run_invalidate "$cfg" "$what"
    done
    if [ "$threads" = 2 ]; then
        run_suite "$cfg plain, redis-py 8 (RESP3)" "$WORK/venv8"
    fi
    stop_server
done

if [ "${MAYFLY_CACHEOPS_COMPARE:-0}" = 1 ] && command -v redis-server >/dev/null; then
    say "for comparison: the plain suite against redis-server (not counted)"
    saved=("$TOTAL_PASSED" "$TOTAL_FAILED" "$TOTAL_SKIPPED" "$PROBLEMS")
    start_server redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no
    run_suite "redis-server: plain" "$WORK/venv"
    stop_server
    TOTAL_PASSED=${saved[0]} TOTAL_FAILED=${saved[1]} TOTAL_SKIPPED=${saved[2]} PROBLEMS=${saved[3]}
fi

echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
[ "$PROBLEMS" -eq 0 ]
