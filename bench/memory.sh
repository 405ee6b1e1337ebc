#!/usr/bin/env bash
# Memory of tandem-server builds side by side: idle RSS, peak RSS of a connect storm
# (1,000 connections to 100 documents at once) and peak RSS and p99 of scenario B
# (100 documents x 10 clients, one writer per document at 5 edits/s, 20 s). Builds run
# interleaved, a fresh server and SQLite file for every measurement, so two builds are
# compared within one run of this noisy 2-core machine.
#
#   bench/memory.sh [--rounds N] BIN[@VAR=value] ...
#   e.g. bench/memory.sh --rounds 3 /tmp/before target/release/tandem-server@TANDEM_READ_BUFFER_BYTES=4096
#
# yload is built as ../shared/bench/run-peers.sh builds it (CARGO_TARGET_DIR, default
# /tmp/yload-target). Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/yload-target}"
ROUNDS=3
if [ "${1:-}" = --rounds ]; then ROUNDS="$2"; shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [--rounds N] BIN[@VAR=value] ..." >&2; exit 2; }
(cd "$SHARED/yload" && cargo build --release --quiet -j 2)
YLOAD="$CARGO_TARGET_DIR/release/yload"
PORT="${PORT:-24990}"

server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

# Starts BIN (with its optional VAR=value) on $PORT with a fresh SQLite file.
start() {
  local bin="${1%%@*}" env=()
  case "$1" in *@*) env=("${1#*@}") ;; esac
  env "${env[@]}" RUST_LOG=warn "$bin" --listen "127.0.0.1:$PORT" \
    --database-url "sqlite://$(mktemp -d /tmp/tandem-memory.XXXXXX)/t.db" \
    --max-connections-per-ip 0 >/dev/null 2>&1 &
  server=$!
  sleep 1.5
}

field() { grep -oE "$1" | head -1 | awk '{ print $NF }'; }

printf '| round | build | idle RSS MB | storm peak RSS MB | B peak RSS MB | B p99 ms | result |\n|---|---|--:|--:|--:|--:|---|\n'
for round in $(seq "$ROUNDS"); do
  for build in "$@"; do
    start "$build"
    idle=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status")
    storm=$("$YLOAD" --url "ws://127.0.0.1:$PORT/ws" --docs 100 --clients 10 --writers 0 \
      --duration 3 --warmup 0 --quiet 0 --connect-rate 0 --server-pid "$server" 2>&1 || true)
    stop
    start "$build"
    b=$("$YLOAD" --url "ws://127.0.0.1:$PORT/ws" --docs 100 --clients 10 --writers 1 --rate 5 \
      --duration 20 --warmup 2 --server-pid "$server" 2>&1 || true)
    stop
    result=$(echo "$storm$b" | grep -oE 'DIVERGED|CONVERGED' | sort -u | tr '\n' ' ')
    printf '| %s | %s | %s | %s | %s | %s | %s|\n' "$round" "$build" "$idle" \
      "$(echo "$storm" | field 'peak RSS [0-9.]+')" "$(echo "$b" | field 'peak RSS [0-9.]+')" \
      "$(echo "$b" | grep -E '^\s+latency' | field 'p99 [0-9.]+')" "$result"
  done
done
