#!/usr/bin/env bash
# Builds Mayfly in release mode and runs it with the defaults
# (127.0.0.1:6379, one shard per CPU). Extra flags pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --bin mayfly -- "$@"
