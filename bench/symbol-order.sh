#!/usr/bin/env bash
# Regenerates server/symbol-order.txt: the functions of the release tandem-server that a
# running server executes, which server/build.rs hands to the linker so they are laid out
# together at the front of .text (see the file's header for why).
#
#   bench/symbol-order.sh
#
# The release binary is built and run under valgrind's callgrind, which records every
# function that executes by its symbol name, then natively under perf (pass 2 below); each
# run is driven by yload through what a server does: a connect storm, many small
# documents, one busy document with presence, a fan-out, 53-bit client ids, documents
# unloaded and loaded back, compactions, pings, the HTTP routes, then SIGTERM. The
# functions are listed in the order they were first met. Needs valgrind, perf and
# python3; about 9 minutes. Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
OUT="$ROOT/server/symbol-order.txt"
PORT="${PORT:-24991}"
for tool in valgrind perf python3; do
  command -v $tool >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
(cd "$SHARED/yload" && CARGO_TARGET_DIR="${YLOAD_TARGET_DIR:-/tmp/yload-target}" cargo build --release --quiet -j 2)
YLOAD="${YLOAD_TARGET_DIR:-/tmp/yload-target}/release/yload"
(cd "$ROOT" && cargo build --release --quiet -p tandem-server)
BIN="$ROOT/target/release/tandem-server"

WORK="$(mktemp -d /tmp/tandem-order.XXXXXX)"
server=""
trap '[ -z "$server" ] || kill $server 2>/dev/null || true' EXIT

# Starts the server under the wrapper command given ($@), waits until it answers. With the
# default log filter, as deployed: info lines format their fields through code that a
# quieter filter never runs, and each such function left out costs 64 KiB resident.
serve() {
  rm -f "$WORK"/t.db*
  env -u RUST_LOG "$@" "$BIN" --listen "127.0.0.1:$PORT" --database-url "sqlite://$WORK/t.db" \
    --max-connections-per-ip 0 --compact-after-updates 100 --idle-unload-ms 1000 \
    --ping-interval-ms 1000 >>"$WORK/server.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.2; done
  echo "the server did not start: $WORK/server.log" >&2; exit 1
}

# What a server does, then SIGTERM to the server process ($1: its pid).
drive() {
  local url="ws://127.0.0.1:$PORT/ws"
  load() { "$YLOAD" --url "$url" --connect-timeout 60 --settle-timeout 60 "$@" >>"$WORK/yload.log" 2>&1 || true; }
  load --docs 20 --clients 10 --writers 0 --duration 2 --warmup 0 --connect-rate 0 --doc-prefix storm-
  load --docs 20 --clients 4 --writers 1 --rate 5 --duration 5 --warmup 1 --doc-prefix many-
  load --docs 1 --clients 10 --writers 5 --rate 20 --awareness-rate 5 --duration 5 --warmup 1 --doc-prefix busy-
  load --docs 1 --clients 60 --writers 2 --rate 10 --duration 5 --warmup 1 --doc-prefix fan-
  load --docs 2 --clients 4 --writers 2 --rate 10 --duration 3 --warmup 1 --wide-client-ids --doc-prefix wide-
  sleep 3 # documents unload; the next round loads them back from the store
  load --docs 1 --clients 10 --writers 5 --rate 20 --awareness-rate 5 --duration 3 --warmup 1 --doc-prefix busy-
  load --docs 20 --clients 2 --writers 1 --rate 5 --duration 2 --warmup 0 --doc-prefix many-
  for path in /healthz /readyz /metrics /api/docs /api/docs/many-0 /; do
    curl -fs "http://127.0.0.1:$PORT$path" >/dev/null || true
  done
  sleep 2 # idle upkeep: metrics, awareness expiry, unloads
  kill -TERM "$1"
  wait "$server" || true
  server=""
}

# Pass 1: every function that executes under callgrind (fn= and cfn= lines define the
# names, compressed as "(id) name"), in first-seen order. A local name the binary holds
# twice is reported once with a ".N" suffix, so both spellings are kept.
serve valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=yes \
  --callgrind-out-file="$WORK/callgrind.out"
drive "$server"
nm --defined-only "$BIN" | awk '{ print $3 }' | sort -u >"$WORK/defined"
sed -nE 's/^c?fn=\([0-9]+\) (.+)$/\1/p' "$WORK/callgrind.out" |
  awk '{ print; if (sub(/\.[0-9]+$/, "")) print }' | awk '!seen[$0]++' | grep -Fxf "$WORK/defined" >"$WORK/ran"

# Passes 2+: valgrind runs on a CPU of its own, so code chosen by CPU feature (SHA, SIMD)
# differs natively. The native server is run under `perf record` of page faults; a fault
# whose address is the instruction pointer is code touched first, and when its function
# is not listed yet it is added, then relinked and run again until none is new.
write_list() {
  {
    cat <<'HEAD'
# Functions a running tandem-server executes, in the order they were first met; generated
# by bench/symbol-order.sh, read by server/build.rs (release builds only).
#
# Why: each page of machine code a process touches stays resident for its life, and the
# kernel maps code 64 KiB around every fault. With the linker's default layout, what a
# server runs is spread over nearly all of its 5.7 MB of .text, so nearly all of it is
# resident. Placed together, it fits in a fraction. BENCHMARKS.md has the figures.
# Names that no longer exist (after a dependency or compiler upgrade) are skipped by the
# linker; regenerate then.
HEAD
    cat "$WORK/ran"
  } >"$OUT"
}
write_list
for pass in 2 3 4; do
  (cd "$ROOT" && cargo build --release --quiet -p tandem-server)
  serve perf record -q -e page-faults -c 1 -d -o "$WORK/faults.data"
  child=""
  for _ in $(seq 50); do child=$(pgrep -P "$server" | head -1) && [ -n "$child" ] && break; sleep 0.1; done
  drive "$child"
  perf script -i "$WORK/faults.data" -F addr,ip,dso --show-mmap-events 2>/dev/null |
    python3 "$ROOT/bench/unlisted-faults.py" "$BIN" "$WORK/ran" | grep -v '^$' >"$WORK/new" || true
  echo "native pass $pass: $(wc -l <"$WORK/new") functions not listed yet" >&2
  [ -s "$WORK/new" ] || break
  cat "$WORK/new" >>"$WORK/ran"
  write_list
done
trap - EXIT
echo "$(wc -l <"$WORK/ran") functions -> $OUT (work files in $WORK)"
