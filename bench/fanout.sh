#!/usr/bin/env bash
# Builds of tandem-server side by side where one document has many clients: scenario C
# (500 clients, 2 writers x 10 edits/s), one writer with 1,500 observers (O), and the
# connect storm D (1,000 connections to 100 documents at once). For each: when the last
# client was synced, p99 propagation, server peak RSS, and the frames the server queued
# in all (`tandem_messages_out_total`, read from /metrics at the end: greetings, sync
# replies, updates and presence). Builds run interleaved, a fresh server and SQLite file
# for every measurement, so two builds are compared within one run of this noisy machine.
#
#   bench/fanout.sh [--rounds N] [--scenarios "C O D"] BIN[@VAR=value] ...
#   e.g. bench/fanout.sh --rounds 2 /tmp/before target/release/tandem-server
#        bench/fanout.sh target/release/tandem-server target/release/tandem-server@TANDEM_PRESENCE_BATCH_MS=0
#
# yload is built as ../shared/bench/run-peers.sh builds it (CARGO_TARGET_DIR, default
# /tmp/yload-target). Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/yload-target}"
ROUNDS=2
SCENARIOS="C O D"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--rounds N] [--scenarios \"C O D\"] BIN[@VAR=value] ..." >&2; exit 2; }
(cd "$SHARED/yload" && cargo build --release --quiet -j 2)
YLOAD="$CARGO_TARGET_DIR/release/yload"
PORT="${PORT:-24989}"

flags() {
  case "$1" in
    C) echo "--docs 1 --clients 500 --writers 2 --rate 10 --duration 20 --warmup 2" ;;
    O) echo "--docs 1 --clients 1501 --writers 1 --rate 10 --duration 20 --warmup 2" ;;
    D) echo "--docs 100 --clients 10 --writers 0 --duration 0 --warmup 0 --quiet 0 --connect-rate 0" ;;
    *) echo "unknown scenario $1 (C, O or D)" >&2; exit 2 ;;
  esac
}

server=""
stop() { [ -n "$server" ] && kill -INT "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

# Starts BIN (with its optional VAR=value) on $PORT with a fresh SQLite file.
start() {
  local bin="${1%%@*}" env=()
  case "$1" in *@*) env=("${1#*@}") ;; esac
  env "${env[@]}" RUST_LOG=warn "$bin" --listen "127.0.0.1:$PORT" \
    --database-url "sqlite://$(mktemp -d /tmp/tandem-fanout.XXXXXX)/t.db" \
    --max-connections-per-ip 0 >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.05; done
  echo "$1 did not start" >&2; exit 1
}

field() { grep -oE "$1" | head -1 | awk '{ print $NF }'; }

printf '| scenario | round | build | all synced s | p99 ms | peak RSS MB | frames sent | result |\n|---|---|---|--:|--:|--:|--:|---|\n'
for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    for build in "$@"; do
      start "$build"
      # shellcheck disable=SC2046
      out=$("$YLOAD" --url "ws://127.0.0.1:$PORT/ws" $(flags "$scenario") --server-pid "$server" 2>&1 || true)
      frames=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^tandem_messages_out_total / { print $2 }')
      stop
      p99=-  # D sends no edits
      [ "$scenario" = D ] || p99=$(echo "$out" | grep -E '^\s+latency' | field 'p99 [0-9.]+' || true)
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$scenario" "$round" "$build" \
        "$(echo "$out" | field 'all synced in [0-9.]+')" "${p99:--}" \
        "$(echo "$out" | field 'peak RSS [0-9.]+')" "$frames" \
        "$(echo "$out" | grep -oE 'DIVERGED|CONVERGED' | head -1)"
    done
  done
done
