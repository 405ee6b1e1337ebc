#!/usr/bin/env bash
# Side-by-side load test: tandem-server against the peer servers of
# ../shared/bench (read-only), through its own run-peers.sh, in one run.
#
#   bench/run.sh [run-peers.sh flags]     e.g. --peers "tandem y-websocket-server" --scenarios "A D"
#
# shared/bench is read-only, so this builds a scratch copy of its layout (symlinks to
# yload, table.py, the peer scripts and run-peers.sh) with bench/tandem-peer.sh added as
# peers/tandem.sh, and runs that. Our server's URL is ws://127.0.0.1:PORT/ws.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${TANDEM_SHARED:-$ROOT/../shared}/bench"
[ -x "$SHARED/run-peers.sh" ] || { echo "missing $SHARED/run-peers.sh" >&2; exit 2; }
WORK="$(mktemp -d /tmp/tandem-bench.XXXXXX)"
mkdir -p "$WORK/peers"
ln -s "$SHARED/yload" "$WORK/yload"
ln -s "$SHARED/table.py" "$WORK/table.py"
for p in "$SHARED"/peers/*.sh; do ln -s "$p" "$WORK/peers/"; done
ln -s "$ROOT/bench/tandem-peer.sh" "$WORK/peers/tandem.sh"
# run-peers.sh picks the URL per peer name; ours needs the /ws prefix.
sed 's#    y-websocket-server|yrs-warp) echo "--url ws://127.0.0.1:$2" ;;#    y-websocket-server|yrs-warp) echo "--url ws://127.0.0.1:$2" ;;\n    tandem) echo "--url ws://127.0.0.1:$2/ws" ;;#' \
  "$SHARED/run-peers.sh" > "$WORK/run-peers.sh"
chmod +x "$WORK/run-peers.sh"
grep -q 'tandem) echo' "$WORK/run-peers.sh" || { echo "could not add our URL to run-peers.sh" >&2; exit 2; }
exec "$WORK/run-peers.sh" "$@"
