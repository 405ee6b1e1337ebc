#!/usr/bin/env bash
# Saturation ladder: 10 documents x 10 clients, 5 writers per document, the edit rate
# doubled step by step; reports, per server, the highest total edits/s at which every edit
# still reached every client (delivery 1.000) with p99 propagation under 50 ms.
#
#   bench/saturation.sh [--peers "tandem y-websocket-server ..."] [--rates "4 8 16 32 64"] [--duration 10]
#
# Uses the same peer scripts and yload as bench/run.sh (builds them if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
PEERS="tandem y-websocket-server yrs-warp hocuspocus y-sweet"
RATES="4 8 16 32 64"
DURATION=10
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) PEERS="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/yload-target}"
(cd "$SHARED/yload" && cargo build --release --quiet -j 2)
YLOAD="$CARGO_TARGET_DIR/release/yload"
OUT="$(mktemp -d /tmp/tandem-saturation.XXXXXX)"
PORT="${BASE_PORT:-25100}"
script() { if [ "$1" = tandem ]; then echo "$ROOT/bench/tandem-peer.sh"; else echo "$SHARED/peers/$1.sh"; fi; }
url() {
  case "$1" in
    tandem) echo "--url ws://127.0.0.1:$2/ws" ;;
    hocuspocus) echo "--url ws://127.0.0.1:$2 --protocol hocuspocus" ;;
    y-sweet) echo "--url ws://127.0.0.1:$2/d/{doc}/ws/{doc}" ;;
    *) echo "--url ws://127.0.0.1:$2" ;;
  esac
}
echo "| server | edits/s offered | delivered/s | delivery | p50 ms | p99 ms | server CPU % | verdict |"
echo "|---|--:|--:|--:|--:|--:|--:|---|"
for peer in $PEERS; do
  "$(script "$peer")" install >/dev/null
  for rate in $RATES; do
    PORT=$((PORT + 1))
    "$(script "$peer")" "$PORT" > "$OUT/$peer-$rate.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    "$(script "$peer")" prepare "$PORT" 10 bench- >/dev/null 2>&1 || true
    # shellcheck disable=SC2046
    "$YLOAD" $(url "$peer" "$PORT") --docs 10 --clients 10 --writers 5 --rate "$rate" \
      --duration "$DURATION" --warmup 2 --server-pid "$pid" --json ${YLOAD_EXTRA:-} \
      > "$OUT/$peer-$rate.json" 2> "$OUT/$peer-$rate.stderr" || true
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    python3 - "$OUT/$peer-$rate.json" "$peer" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    print(f"| {sys.argv[2]} | (no result) | | | | | | |"); sys.exit()
e = s["edits"]; lat = e["latency_ms"]; c = s["config"]
offered = int(c["docs"] * c["writers"] * c["rate"])
res = s.get("server") or {}
cpu = res.get("mean_cpu_pct")
ok = e["delivery_ratio"] >= 0.9995 and (lat["p99"] if lat["n"] else 1e9) < 50 and s["convergence"]["converged"]
print(f"| {sys.argv[2]} | {offered} | {e['delivered_per_s']:.0f} | {e['delivery_ratio']:.4f} | {lat.get('p50', 0):.2f} | {lat.get('p99', 0):.2f} | {cpu if cpu is None else round(cpu)} | {'ok' if ok else 'SATURATED'} |")
PY
  done
done
echo "raw results: $OUT" >&2
