#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: installs what it needs,
# then runs the lints, the unit tests and the black-box tests over TCP.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages: redis-server for the differential tests, git for
# glommio's build.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The local redis-server service is not needed; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings

step "fetching django-cacheops 7.2's scripts for tests/cacheops.rs"
cacheops_lua=$(bash ci/cacheops.sh --fetch | tail -1)

step "cargo test"
CI=${CI:-true} MAYFLY_CACHEOPS_LUA="$cacheops_lua" cargo test --all-targets

step "django-cacheops 7.2's own test suite against Mayfly"
bash ci/cacheops.sh
