#!/usr/bin/env bash
# Cluster mode on this machine: tandem-server nodes sharing Redis (127.0.0.1:6379) and one
# fresh Postgres database, behind HAProxy on loopback (TCP, so yload's one --url reaches
# several nodes), driven by ../shared/bench/yload.
#
#   bench/cluster.sh [--duration 20] [--rates "16 64"]
#
# 1. Propagation, same node vs across nodes: 1 document, 30 clients, 5 writers x 20
#    edits/s. "same": every client on node A. "cross": HAProxy's `balance first` with
#    maxconn 5 on node A puts the 5 writers (they connect first) on A and the 25 readers
#    on B, so every reader's delivery crosses Redis. Both go through the same proxy.
# 2. Throughput of 1, 2 and 3 nodes: 10 documents x 10 clients, 5 writers per document,
#    round-robin over the nodes (each document's clients spread over every node), at each
#    rate of --rates.
# Prints a markdown table; raw yload JSON stays in the results directory it names.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
DURATION=20
RATES="16 64"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="$(mktemp -d /tmp/tandem-cluster-bench.XXXXXX)"
log() { echo "[cluster-bench] $*" >&2; }

command -v haproxy >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null
redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --port 6379 --save ""
pg_isready -q -h 127.0.0.1 -p 5432
log "building tandem-server and yload (release)"
(cd "$ROOT" && cargo build --locked --release -q -p tandem-server)
export CARGO_TARGET_DIR="${YLOAD_TARGET_DIR:-/tmp/yload-target}"
(cd "$SHARED/yload" && cargo build --release -q -j 2)
YLOAD="$CARGO_TARGET_DIR/release/yload"
BIN="$ROOT/target/release/tandem-server"
BASE=26100
PROXY=26099

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# start_nodes N: N nodes on a new database and channel prefix; sets NODE_PIDS.
start_nodes() {
  local n=$1 db="tandem_bench_$RANDOM$RANDOM" prefix="bench-$RANDOM$RANDOM"
  createdb -h 127.0.0.1 -U postgres "$db"
  NODE_PIDS=()
  for i in $(seq 0 $((n - 1))); do
    RUST_LOG=warn "$BIN" --listen "127.0.0.1:$((BASE + i))" \
      --database-url "postgres://postgres@127.0.0.1:5432/$db" \
      --redis-url redis://127.0.0.1:6379 --redis-prefix "$prefix" \
      --max-connections-per-ip 0 > "$OUT/node$i.log" 2>&1 &
    NODE_PIDS+=($!); PIDS+=($!)
    wait_port $((BASE + i))
  done
}

stop_nodes() {
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# proxy MODE N: HAProxy on $PROXY in front of nodes 0..N-1 (MODE roundrobin | first).
proxy() {
  local mode=$1 n=$2 cfg="$OUT/haproxy.cfg"
  {
    echo "global"; echo "  maxconn 4000"
    echo "defaults"; echo "  mode tcp"; echo "  timeout connect 5s"; echo "  timeout client 1h"; echo "  timeout server 1h"
    echo "frontend f"; echo "  bind 127.0.0.1:$PROXY"; echo "  default_backend b"
    echo "backend b"; echo "  balance $mode"
    for i in $(seq 0 $((n - 1))); do
      if [ "$mode" = first ] && [ "$i" = 0 ]; then extra="maxconn 5"; else extra="maxconn 10000"; fi
      echo "  server n$i 127.0.0.1:$((BASE + i)) $extra"
    done
  } > "$cfg"
  haproxy -f "$cfg" > "$OUT/haproxy.log" 2>&1 &
  PROXY_PID=$!; PIDS+=($!)
  wait_port $PROXY
}

stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }

run_yload() { # name, yload flags...
  local name=$1; shift
  log "$name"
  "$YLOAD" --url "ws://127.0.0.1:$PROXY/ws" --label "$name" --json "$@" \
    > "$OUT/$name.json" 2> "$OUT/$name.stderr" || log "yload exited $? for $name"
}

LAT="--docs 1 --clients 30 --writers 5 --rate 20 --duration $DURATION --warmup 2 --connect-rate 200"
start_nodes 2
proxy roundrobin 1; run_yload same-node $LAT; stop_proxy
proxy first 2; run_yload cross-node $LAT; stop_proxy
stop_nodes

for n in 1 2 3; do
  for rate in $RATES; do
    start_nodes "$n"
    proxy roundrobin "$n"
    run_yload "nodes$n-rate$rate" --docs 10 --clients 10 --writers 5 --rate "$rate" \
      --duration "$DURATION" --warmup 2 --connect-rate 500
    stop_proxy
    stop_nodes
  done
done

python3 - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| run | synced | p50 ms | p99 ms | delivered/s | delivery | converged |")
print("|---|---|---|---|---|---|---|")
for f in sorted(out.glob("*.json"), key=lambda p: (not p.stem.endswith("node"), p.stem)):
    s = json.loads(f.read_text())
    c, e = s["connections"], s["edits"]
    lat = e["latency_ms"]
    conv = s["convergence"]
    print(f"| {f.stem} | {c['synced']}/{c['attempted']} | {lat['p50']:.2f} | {lat['p99']:.2f} | "
          f"{e['delivered_per_s']:.0f} | {e['delivery_ratio']:.4f} | {conv['converged']} |")
print(f"\n(raw: {out})")
EOF
